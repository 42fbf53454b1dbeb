"""TGT's setting (issue 24 item 4) as a job: POST /jobs/train takes the same config as
the pipeline (tests/training/test_tgt_setting.py); a worker attempt (a child process, as a
worker runs it) against the real Redis DB of ``LUGPI_TEST_REDIS_URL`` runs it. Tiny
models (conftest)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from support.tgt_setting import N_STUDENT, check_the_split, raw_config, write_data

from api.main import create_app
from api.settings import ApiSettings
from contracts.config import parse_config
from contracts.jobs import JobState
from jobs.store import open_jobstore
from worker.runner import run_job
from worker.settings import WorkerSettings

pytestmark = pytest.mark.slow


def test_the_setting_round_trips_through_a_job(
    tmp_path: Path, tiny_text_model: Path, tiny_latent_generator: Path, redis_url: str
) -> None:
    """POST /jobs/train takes the same config: a tgt.teacher outside the artifacts root is a
    422 naming the field; the job with 'pipeline' runs in a worker attempt against Redis and
    its students saw N_STUDENT rows, its teacher all."""
    data_root, artifacts = tmp_path / "data", tmp_path / "artifacts"
    files = write_data(data_root)
    models = [str(tiny_text_model), str(tiny_latent_generator)]
    api = ApiSettings(
        model_repository=tmp_path / "repo",
        artifacts_dir=artifacts,
        data_roots=[data_root],
        allowed_models=models,
        redis_url=redis_url,
        allow_unauthenticated_admin=True,
    )
    raw = raw_config(files, tiny_text_model, tiny_latent_generator)
    with TestClient(create_app(api)) as client:
        bad = {**raw, "tgt": {**raw["tgt"], "teacher": "/etc"}}
        r = client.post("/jobs/train", json=bad)
        assert r.status_code == 422
        assert [tuple(e["loc"]) for e in r.json()["detail"]] == [("body", "tgt", "teacher")]
        r = client.post("/jobs/train", json=raw)
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        stored = client.get(r.json()["status_url"]).json()["config"]["tgt"]
        assert stored["student_train_samples"] == N_STUDENT and stored["teacher"] == "pipeline"

    store = open_jobstore(redis_url, artifacts)
    settings = WorkerSettings(
        artifacts_dir=artifacts, model_repository=tmp_path / "repo", redis_url=redis_url
    )
    state = run_job(store, job_id, settings, worker="w1")
    record = store.get(job_id)
    assert state == JobState.SUCCEEDED, record.error
    cfg = parse_config(record.config)
    check_the_split(settings.run_dir(job_id), cfg)
    store.close()
