"""Teacher Guided Training as a method (training/methods.py), behind ``tgt.enabled``: the
tgt stage (generated neighbours of the training texts, filtered, with their images;
training/tgt/texts.py) and one student per ``tgt.modes`` mode (training/tgt/distill.py)
learning from every LUGPI teacher on the labelled and the generated texts.

    [prepare -> generate -> teacher(s), shared with LUGPI] -> tgt -> tgt-student-<mode>

Its students are scored as ``tgt:<mode>``; with ``tgt.export_best`` they are exported
(``export/tgt-<mode>/``) and may be the one published. ``tgt.teacher`` names their
teacher: the run's own (``pipeline``) or one made elsewhere (training/tgt/teacher_source.py);
with ``tgt.student_train_samples`` every student sees only that many labelled texts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from contracts.config import TGT_PIPELINE_TEACHER, PipelineConfig, TgtMode
from contracts.jobs import Stage
from training.data.prepare import student_train_record
from training.evaluation.evaluate import tgt_counts_markdown
from training.generation.texts import plan_texts, resolve_text_cache, run_text_shard
from training.lugpi.method import teacher_steps
from training.methods import MethodReport, MethodStudent, Run, Step, data_steps
from training.tgt.distill import train_tgt_student
from training.tgt.teacher_source import tgt_teacher_dirs
from training.tgt.texts import load_generated, neighbour_requests, run_tgt

STUDENTS_COMMAND = "tgt-distill"  # the `lugpi` command that trains the TGT students alone


class Tgt:
    """The TGT method: its generation stage and its students."""

    name = "tgt"

    def enabled(self, cfg: PipelineConfig) -> bool:
        return cfg.tgt.enabled and not cfg.strata.enabled

    def steps(self, run: Run) -> list[Step]:
        cfg, layout = run.cfg, run.layout

        def generate() -> None:
            reads_images = any(t.modality != "text" for t in cfg.teachers)
            images = layout.image_cache(cfg.generator.cache_dir) if reads_images else None
            run_tgt(
                cfg,
                run.student_data,
                layout.tgt,
                run.ctx,
                text_cache=resolve_text_cache(cfg, layout.root),
                image_cache=images,
                strategy=run.shards,
                extra=student_train_record(cfg, run.data),
            )

        steps = [
            *data_steps(run),
            *teacher_steps(run),
            Step(Stage.TGT, layout.tgt, generate, main_only=True),
        ]
        generated: dict[str, list[Any]] = {}  # the generated texts, read once for all students
        for mode in cfg.tgt.modes:
            out = layout.tgt_student(mode)
            make = _student(run, mode, out, generated)
            steps.append(Step(Stage.DISTILL, out, make, command=STUDENTS_COMMAND))
        return steps

    def students(self, run: Run) -> list[MethodStudent]:
        cfg = run.cfg
        own = cfg.tgt.teacher == TGT_PIPELINE_TEACHER
        names = [t.name for t in cfg.teachers] if own else [cfg.tgt.teacher]
        export = cfg.tgt.export_best
        return [
            MethodStudent(f"tgt-{m}", run.layout.tgt_student(m), names, f"tgt:{m}", export)
            for m in run.cfg.tgt.modes
        ]

    def report(self, run: Run) -> MethodReport:
        cfg = run.cfg
        return MethodReport(
            notes=[tgt_counts_markdown(load_generated(run.layout.tgt)[1])],
            provenance={
                "text_generator": cfg.text_generator.model,
                "tgt": cfg.tgt.model_dump(mode="json"),
            },
        )


def _student(
    run: Run, mode: TgtMode, out: Path, generated: dict[str, list[Any]]
) -> Callable[[], None]:
    def make() -> None:
        if "rows" not in generated:
            generated["rows"] = load_generated(run.layout.tgt)[0]
        teachers = tgt_teacher_dirs(run.cfg, run.layout)
        train_tgt_student(
            run.cfg,
            run.student_data,
            run.student_images,
            teachers,
            generated["rows"],
            mode,
            out,
            run.ctx,
            token_store=run.token_store,
        )

    return make


def text_shard(run: Run, shard: int) -> None:
    """One shard of the tgt stage's text generation, into the text cache (one worker's or
    machine's share; `lugpi tgt --shard`)."""
    cfg = run.cfg
    cache = resolve_text_cache(cfg, run.layout.root)
    plan = plan_texts(cfg, neighbour_requests(cfg, run.student_data), cache)
    run_text_shard(cfg, plan, shard, run.ctx)
