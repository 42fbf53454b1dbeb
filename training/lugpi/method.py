"""LUGPI as a method (training/methods.py): the shared data stages, the teacher(s) (and
their cross-fitted fold teachers), the baseline and the distilled students.

    prepare -> generate -> teacher(s) -> baseline -> distill

One student per teacher (``student-<teacher name>``, the paper's Table 1), and/or the
amalgamated one (``student-amalgamated``), as ``distill.students`` says
(``PipelineConfig.student_plan``). The baseline (labels only) is scored beside them and
never exported. Teachers train on the prepared train split; the baseline and the students
on ``run.student_data`` (the same, or ``tgt.student_train_samples`` of it). LUGPI runs
whenever the StrataNet mode is off.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from contracts.config import PipelineConfig, TeacherConfig
from contracts.jobs import Stage
from training.lugpi.cross_fit import fold_teacher_dir, train_fold_teacher
from training.lugpi.distill import distill_student, train_baseline
from training.methods import MethodReport, MethodStudent, Run, Step, data_steps
from training.teachers.train_teacher import train_teacher


def teacher_steps(run: Run) -> list[Step]:
    """Every teacher of ``cfg.teachers``, each followed by its fold teachers when
    ``distill.cross_fit_folds >= 2`` (shared with TGT, whose students learn from them)."""
    cfg = run.cfg
    steps: list[Step] = []
    n = len(cfg.teachers)
    for i, t in enumerate(cfg.teachers):
        part = (i / n, (i + 1) / n)  # job progress: the teachers share the stage
        out = run.layout.teacher(t.name)
        steps.append(Step(Stage.TEACHER, out, _teacher(run, t, out), label=t.name, part=part))
        k = cfg.distill.cross_fit_folds
        for f in range(k) if k >= 2 else ():
            make = _fold_teacher(run, t, out, f)
            fold = fold_teacher_dir(out, f, k)
            steps.append(Step(Stage.TEACHER, fold, make, label=t.name, part=part))
    return steps


def _teacher(run: Run, t: TeacherConfig, out: Path) -> Callable[[], None]:
    def make() -> None:
        train_teacher(run.cfg, t, run.data, run.images, out, run.ctx, token_store=run.token_store)

    return make


def _fold_teacher(run: Run, t: TeacherConfig, teacher_dir: Path, i: int) -> Callable[[], None]:
    def make() -> None:
        data, images, store = run.data, run.images, run.token_store
        train_fold_teacher(run.cfg, t, data, images, teacher_dir, i, run.ctx, store)

    return make


class Lugpi:
    """The LUGPI method: its teachers, its baseline and its students."""

    name = "lugpi"

    def enabled(self, cfg: PipelineConfig) -> bool:
        return not cfg.strata.enabled

    def steps(self, run: Run) -> list[Step]:
        cfg, layout = run.cfg, run.layout
        steps = [*data_steps(run), *teacher_steps(run)]
        if cfg.baseline:

            def baseline() -> None:
                train_baseline(cfg, run.student_data, layout.baseline, run.ctx)

            steps.append(Step(Stage.BASELINE, layout.baseline, baseline))
        plan = cfg.student_plan()
        for i, (key, names) in enumerate(plan.items()):
            out = layout.student(key)
            part = (i / len(plan), (i + 1) / len(plan))  # job progress
            steps.append(Step(Stage.DISTILL, out, _student(run, names, out), part=part))
        return steps

    def students(self, run: Run) -> list[MethodStudent]:
        layout = run.layout
        out = [
            MethodStudent(key, layout.student(key), names)
            for key, names in run.cfg.student_plan().items()
        ]
        if run.cfg.baseline:
            out.append(MethodStudent("baseline", layout.baseline, [], "baseline", exported=False))
        return out

    def report(self, run: Run) -> MethodReport:
        return MethodReport(teachers=[run.layout.teacher(t.name) for t in run.cfg.teachers])


def _student(run: Run, names: list[str], out: Path) -> Callable[[], None]:
    def make() -> None:
        teachers = [run.layout.teacher(n) for n in names]
        data, images, store = run.student_data, run.student_images, run.token_store
        distill_student(run.cfg, data, images, teachers, out, run.ctx, token_store=store)

    return make
