"""A method added through the public extension point only (docs/adding-a-method.md).

Plain self-distillation as a unit of its own: the CE baseline is the teacher, and a second
student of the same architecture learns from its soft labels (KD, no embeddings). It
imports nothing private and touches no pipeline code: it registers a ``Method``, reads its
options from ``cfg.methods``, trains through ``train_text_classifier``, and the pipeline
evaluates, reports, exports and publishes its student with the others.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from contracts.artifacts import is_complete, read_stage
from contracts.config import load_config
from contracts.jobs import Stage
from models.text import load_text_classifier, predict_logits
from training.methods import MethodStudent, Run, Step, registered
from training.pipeline import resolve_paths, run_pipeline
from training.students.train_loop import select_runtime
from training.students.trainer import StudentOptions, TeacherTargets, train_text_classifier
from training.tracking.progress import RunContext


class SelfDistillation:
    """cfg.methods["self-distill"] = {"key": ...}: a student taught by the baseline."""

    name = "self-distill"

    def enabled(self, cfg: object) -> bool:
        return self.name in getattr(cfg, "methods", {})

    def _key(self, run: Run) -> str:
        return str(run.cfg.methods[self.name].get("key", "self"))

    def students(self, run: Run) -> list[MethodStudent]:
        key = self._key(run)
        return [MethodStudent(key, run.layout.student(key), teachers=["baseline"])]

    def steps(self, run: Run) -> list[Step]:
        out = run.layout.student(self._key(run))

        def make() -> None:
            started = time.perf_counter()
            cfg, data = run.cfg, run.data
            runtime = select_runtime(cfg.device, cfg.mixed_precision)
            teacher, tokenizer, meta = load_text_classifier(run.layout.baseline, runtime.device)
            logits = predict_logits(
                teacher,
                tokenizer,
                data.texts("train"),
                data.pairs("train"),
                max_length=meta.max_length,
                batch_size=cfg.student.batch_size,
                device=runtime.device,
            )
            targets = TeacherTargets(torch.from_numpy(logits)[None], [], ["baseline"])
            options = StudentOptions(
                extra_meta={"method": self.name, "report_label": "Student (self-distillation)"}
            )
            train_text_classifier(
                cfg, data, "student", targets, ["train"], runtime, out, run.ctx, started, options
            )

        return [Step(Stage.DISTILL, out, make)]


def test_a_method_added_through_the_extension_point_is_evaluated_exported_and_reported(
    shared_datasets: Path, tmp_path: Path, tiny_text_model: Path
) -> None:
    d = shared_datasets / "cwi2018"
    overrides: dict[str, object] = {
        "data.train": str(d / "News_Train.tsv"),
        "data.dev": str(d / "News_Dev.tsv"),
        "data.test": str(d / "News_Test.tsv"),
        "data.max_train_samples": 40,
        "data.max_eval_samples": 20,
        "teachers.0.modality": "text",  # no images: the test is about the method's plumbing
        "teachers.0.text_model": str(tiny_text_model),
        "student.text_model": str(tiny_text_model),
        "methods": {"self-distill": {"key": "self"}},
    }
    cfg = resolve_paths(load_config("smoke", overrides), tmp_path)
    run_dir, repo = tmp_path / "run", tmp_path / "repo"
    with registered(SelfDistillation()):
        result = run_pipeline(cfg, run_dir, RunContext(), repository=repo)
        student = run_dir / "student-self"
        assert is_complete(student)
        assert read_stage(student).stage == Stage.DISTILL.value
        # Evaluated and reported with the others, under the method's own row name.
        results = json.loads((run_dir / "evaluate" / "results.json").read_text())
        assert results["models"]["student:self"]["test"]["n"] == 20
        assert results["models"]["student:self"]["teachers"] == ["baseline"]
        assert "Student (self-distillation)" in (run_dir / "evaluate" / "results.md").read_text()
        # Exported beside the LUGPI student, and a candidate for publishing.
        manifest = json.loads((run_dir / "export" / "self" / "bundle.json").read_text())
        assert manifest["provenance"]["student"] == "self"
        assert manifest["provenance"]["teachers"] == ["baseline"]
        assert "self" in read_stage(run_dir / "export").summary["students"]
        assert "student-self" in result.metrics
        assert result.published is not None and result.published[0] == "smoke"
        # A rerun resumes: the method's step is complete, so it is not made again.
        stamp = (student / "stage.json").read_text()
        run_pipeline(cfg, run_dir, RunContext(), repository=repo)
        assert (student / "stage.json").read_text() == stamp
