"""StrataNet as a method (training/methods.py), behind ``strata.enabled``: the data-free
mode (training/strata/mode.py, docs/stratanet.md).

    strata (steered generation; stage strata-texts) -> student-strata (stage strata-student)

It trains on no prepared data, so it lists none of the shared data stages and brings
the texts its student is scored and checked on (``own_texts``: data.dev/test over the
union labels, else generated texts for export's checks) and the rows of its teachers,
hub classifiers with label sets of their own (``extra_results``). The pipeline's one
evaluation, export (provenance: ``report``) and publish do the rest.
"""

from __future__ import annotations

from contracts.config import PipelineConfig
from contracts.jobs import Stage
from training.data.prepare import PreparedData
from training.generation.texts import resolve_text_cache
from training.methods import MethodReport, MethodStudent, Run, Step
from training.strata.mode import (
    STUDENT_KEY,
    evaluation_texts,
    provenance,
    run_generation,
    score_teachers,
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

    def report(self, run: Run) -> MethodReport:
        return MethodReport(provenance=provenance(run.cfg, run.layout))

    def own_texts(self, run: Run) -> PreparedData:
        return evaluation_texts(run.cfg, run.layout)

    def extra_results(self, run: Run, data: PreparedData) -> dict[str, dict[str, object]]:
        return score_teachers(run.cfg, data)
