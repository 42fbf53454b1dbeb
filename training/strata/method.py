"""StrataNet as a method (training/methods.py), behind ``strata.enabled``: the data-free
mode (training/strata/mode.py, docs/stratanet.md).

    strata (steered generation; stage strata-texts) -> student-strata (stage strata-student)

It trains on no prepared data, so it lists none of the shared data stages and it scores
and exports its student itself (``evaluate`` and ``export`` below: the union labels, the
teachers' own label sets, checks on generated texts).
"""

from __future__ import annotations

from pathlib import Path

from contracts.config import PipelineConfig
from contracts.jobs import Stage
from training.generation.texts import resolve_text_cache
from training.methods import MethodStudent, Run, Step
from training.strata.mode import (
    STUDENT_KEY,
    evaluate_strata,
    export_strata,
    run_generation,
    train_strata_student,
)


class StrataNet:
    """The StrataNet method: steered generation and the union-label student."""

    name = "strata"

    def enabled(self, cfg: PipelineConfig) -> bool:
        return cfg.strata.enabled

    def steps(self, run: Run) -> list[Step]:
        cfg, layout = run.cfg, run.layout
        student = layout.student(STUDENT_KEY)

        def generate() -> None:
            cache = resolve_text_cache(cfg, layout.root)
            run_generation(cfg, layout.strata, run.ctx, text_cache=cache, strategy=run.shards)

        def train() -> None:
            train_strata_student(cfg, layout.strata, student, run.ctx)

        return [
            Step(Stage.STRATA_TEXTS, layout.strata, generate, main_only=True),
            Step(Stage.STRATA_STUDENT, student, train),
        ]

    def students(self, run: Run) -> list[MethodStudent]:
        names = [t.name for t in run.cfg.strata.teachers]
        return [MethodStudent(STUDENT_KEY, run.layout.student(STUDENT_KEY), names)]

    def evaluate(self, run: Run, out: Path) -> bool:
        """Score the student and each teacher on data.dev/test over the union labels; False
        (nothing written) when neither is given."""
        cfg = run.cfg
        if not (cfg.data.dev or cfg.data.test):
            return False
        evaluate_strata(cfg, run.layout.student(STUDENT_KEY), out, run.ctx)
        return True

    def export(self, run: Run, job_id: str | None) -> None:
        export_strata(run.cfg, run.layout, job_id, run.ctx)
