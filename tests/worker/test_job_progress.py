"""What GET /jobs/{id} says while a job runs: an overall fraction that never goes back
(stages weighted by their usual cost; a stage that changes units, like the teacher's image
tokens then its training steps, continues where it was), the elapsed time and an ETA.

The run is real (the smoke preset's stages on RANDOM-weight tiny models and 40 CWI
sentences) and reports through the worker's own reporter into a real SQLite job store:
every write is read back from the store."""

from __future__ import annotations

import json
import time
from itertools import islice, pairwise
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import ApiSettings
from contracts.config import load_config
from contracts.jobs import JobState, Stage
from contracts.layout import RunLayout
from jobs.lifecycle import ProgressMeter, finish_attempt, start_attempt
from jobs.store import SqliteJobStore
from tests.training.test_pipeline_cli import tiny_vit  # noqa: F401  (a fixture)
from training.pipeline import resolve_paths, run_pipeline
from worker.job_context import JobReporter


def test_a_stage_that_changes_units_continues_where_it_was() -> None:
    """The sequence the teacher stage reports: image tokens to 100 % (the part of the stage
    train_teacher declares for them), then 0 of N training steps; then a resumed run's
    re-report of an earlier stage, and a count without a part that starts over."""
    clock = [0.0]
    meter = ProgressMeter(clock=lambda: clock[0])
    tokens, steps, whole = (0.0, 0.15), (0.15, 1.0), (0.0, 1.0)
    seen = []
    for stage, done, total, part in [
        (Stage.PREPARE, 1, 1, whole), (Stage.GENERATE, 4, 4, whole),
        (Stage.TEACHER, 0, 10, tokens), (Stage.TEACHER, 10, 10, tokens),
        (Stage.TEACHER, 0, 60, steps), (Stage.TEACHER, 30, 60, steps),
        (Stage.TEACHER, 60, 60, steps), (Stage.DISTILL, 5, 10, whole),
        (Stage.TEACHER, 1, 1, whole), (Stage.DISTILL, 1, 10, whole), (Stage.DISTILL, 6, 10, whole),
    ]:  # fmt: skip
        clock[0] += 10.0
        seen.append(meter.update(stage, done, total, part))
    fractions = [e.fraction for e in seen]
    assert fractions == sorted(fractions), fractions
    assert fractions[3] < fractions[5] < fractions[6]  # the training steps move it on
    assert fractions[8] == fractions[7]  # an earlier stage re-reported: no change
    # A new count (done went back) goes on from 50 % over what is left: 1/10 -> 55 %,
    # 6/10 -> 80 % of the stage.
    gained = fractions[9] - fractions[7]
    assert gained > 0 and fractions[10] - fractions[7] == pytest.approx(6 * gained)
    assert [e.elapsed_s for e in seen] == [10.0 * (i + 1) for i in range(len(seen))]
    # Steady rate: the ETA is the time so far times what is left over what was done.
    last = seen[-1]
    first_fraction = fractions[0]
    expected = 100.0 * (1 - last.fraction) / (last.fraction - first_fraction)
    assert last.eta_s is not None and abs(last.eta_s - expected) < 1e-9


@pytest.mark.slow
def test_a_real_run_reports_a_monotonic_fraction_elapsed_and_eta(
    shared_datasets: Path,
    tmp_path: Path,
    tiny_text_model: Path,
    tiny_vit: Path,  # noqa: F811
) -> None:
    sets: dict[str, object] = {}
    for split, n in (("train", 200), ("dev", 60), ("test", 60)):
        src = shared_datasets / "cwi2018" / f"News_{split.capitalize()}.tsv"
        with src.open(encoding="utf-8") as f:
            (tmp_path / f"{split}.tsv").write_text("".join(islice(f, n)), encoding="utf-8")
        sets[f"data.{split}"] = str(tmp_path / f"{split}.tsv")
    sets |= {"data.max_train_samples": 40, "data.max_eval_samples": 20}
    sets |= {
        "teachers.0.text_model": str(tiny_text_model),
        "student.text_model": str(tiny_text_model),
    }
    sets |= {"teachers.0.image_model": str(tiny_vit), "teachers.0.batch_size": 4}
    cfg = resolve_paths(load_config("smoke", sets), tmp_path)

    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    store = SqliteJobStore(artifacts / SqliteJobStore.FILE_NAME)
    job = store.create({}).job_id
    assert start_attempt(store, job, "w") is not None
    reporter = JobReporter(store, job, 1, min_interval=0.0, deadline=time.time() + 3600)
    ctx = reporter.context()
    report, seen = ctx.report, []

    def recording(stage: Stage, done: int, total: int, message: str) -> None:
        report(stage, done, total, message)
        progress = store.get(job).progress
        assert progress is not None
        seen.append((stage, done, total, progress))

    ctx.report = recording
    layout = RunLayout.for_job(artifacts, job)
    run_pipeline(cfg, layout.root, ctx, repository=None)
    finish_attempt(store, job, 1, JobState.SUCCEEDED)
    store.close()

    fractions = [p.fraction for *_, p in seen]
    back = [(a, b) for a, b in pairwise(seen) if b[3].fraction < a[3].fraction]
    assert not back, f"progress went back: {back[0]}"
    teacher_units = {total for stage, _, total, _ in seen if stage is Stage.TEACHER}
    assert len(teacher_units) >= 2  # the scenario: tokens, then training steps
    assert fractions[-1] > 0.8 and fractions[0] < 0.1
    elapsed = [p.elapsed_s for *_, p in seen]
    assert all(e is not None for e in elapsed) and elapsed == sorted(elapsed)  # type: ignore[type-var]
    assert any(p.eta_s is not None and p.eta_s > 0 for *_, p in seen[len(seen) // 2 :])

    # The same job over HTTP: timing, results (table, curves, confusion matrices), log tail.
    layout.job_log.write_text("".join(f"line {i}\n" for i in range(500)))
    settings = ApiSettings(
        model_repository=tmp_path / "repo",
        artifacts_dir=artifacts,
        admin_keys=["admin-key"],  # type: ignore[list-item]
        api_keys=["user-key"],  # type: ignore[list-item]
        poll_interval_s=0,
    )
    with TestClient(create_app(settings)) as client:
        admin = {"X-API-Key": "admin-key"}
        status = client.get(f"/jobs/{job}", headers=admin).json()
        assert status["progress"]["fraction"] == 1.0 and status["progress"]["eta_s"] == 0.0
        assert status["progress"]["elapsed_s"] >= elapsed[-1]  # type: ignore[operator]

        r = client.get(f"/jobs/{job}/results", headers=admin)
        assert r.status_code == 200, r.text
        body = r.json()
        written = json.loads((layout.evaluate / "results.json").read_text())
        assert body["labels"] == written["labels"] == ["complex", "simple"]
        student = body["models"]["student:effnet"]
        assert (
            student["test"]["confusion"] == written["models"]["student:effnet"]["test"]["confusion"]
        )
        assert "dir" not in student  # no server paths
        assert body["table_md"] == (layout.evaluate / "results.md").read_text()
        history = json.loads((layout.root / "student-effnet" / "history.json").read_text())
        assert body["curves"]["student-effnet"]["steps"] == history["steps"]
        assert {"teacher-effnet", "student-effnet", "baseline"} <= set(body["curves"])

        r = client.get(f"/jobs/{job}/logs", headers=admin, params={"tail": 3})
        assert r.status_code == 200, r.text
        assert r.json()["lines"] == ["line 497", "line 498", "line 499"]
        assert r.json()["truncated"] is True
        assert len(client.get(f"/jobs/{job}/logs", headers=admin).json()["lines"]) == 200

        for path in (f"/jobs/{job}/logs", f"/jobs/{job}/results"):
            assert client.get(path, headers={"X-API-Key": "user-key"}).status_code == 403
            assert client.get(path).status_code == 401
        other = SqliteJobStore(artifacts / SqliteJobStore.FILE_NAME)
        fresh = other.create({}).job_id
        other.close()
        r = client.get(f"/jobs/{fresh}/results", headers=admin)
        assert r.status_code == 404 and "no results yet" in r.json()["detail"]
        r = client.get(f"/jobs/{fresh}/logs", headers=admin)
        assert r.status_code == 404 and "no log" in r.json()["detail"]
        assert client.get(f"/jobs/{'0' * 32}/results", headers=admin).status_code == 404
