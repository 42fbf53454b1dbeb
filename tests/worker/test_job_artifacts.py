"""Jobs' artifacts (their run directories) can be deleted, through the admin route and the
CLI, and those of jobs finished longer ago than LUGPI_JOB_ARTIFACTS_KEEP_DAYS are pruned by
the reaper. A running job's are refused; the job record and the published model stay."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.main import create_app
from api.settings import ApiSettings
from contracts.jobs import JobState
from contracts.layout import RunLayout
from jobs.artifacts import delete_job_artifacts, prune_job_artifacts
from jobs.lifecycle import finish_attempt, start_attempt
from jobs.store import JobStore, SqliteJobStore, now_utc
from training.cli import app as cli


def _job(store: JobStore, artifacts: Path, state: JobState | None) -> str:
    """A job with a run directory of some files; finished in ``state`` (None: running)."""
    job = store.create({}).job_id
    assert start_attempt(store, job, "w") is not None
    root = RunLayout.for_job(artifacts, job).root
    (root / "student-x").mkdir(parents=True)
    (root / "student-x" / "model.safetensors").write_bytes(b"\0" * 50_000)
    (root / "job.log").write_text("log\n")
    if state is not None:
        finish_attempt(store, job, 1, state)
    return job


def _age(store: JobStore, job: str, days: float) -> None:
    def older(rec):  # type: ignore[no-untyped-def]
        rec.finished_at = now_utc() - timedelta(days=days)
        return rec

    store.update(job, older)


def test_delete_and_prune_in_the_store(tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    store = SqliteJobStore(artifacts / SqliteJobStore.FILE_NAME)
    done = _job(store, artifacts, JobState.SUCCEEDED)
    running = _job(store, artifacts, None)
    assert delete_job_artifacts(store, artifacts, done) >= 50_000
    assert not RunLayout.for_job(artifacts, done).root.exists()
    assert store.get(done).state is JobState.SUCCEEDED  # the record stays
    assert delete_job_artifacts(store, artifacts, done) == 0  # again: nothing left
    from contracts.errors import Conflict

    with pytest.raises(Conflict, match="running"):
        delete_job_artifacts(store, artifacts, running)
    assert RunLayout.for_job(artifacts, running).root.is_dir()

    states = (JobState.SUCCEEDED, JobState.SUCCEEDED, JobState.FAILED)
    old, recent, failed_old = (_job(store, artifacts, s) for s in states)
    _age(store, old, 10)
    _age(store, failed_old, 8)
    _age(store, recent, 2)
    _age(store, running, 30)  # not finished: its finished_at means nothing
    pruned = prune_job_artifacts(store, artifacts, keep_days=7)
    assert sorted(pruned) == sorted([old, failed_old])
    for job, kept in ((old, False), (failed_old, False), (recent, True), (running, True)):
        assert RunLayout.for_job(artifacts, job).root.exists() is kept
    store.close()


def test_admin_route_and_cli_delete_a_jobs_artifacts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    artifacts = tmp_path / "artifacts"
    store = SqliteJobStore(artifacts / SqliteJobStore.FILE_NAME)
    first, second = (_job(store, artifacts, JobState.SUCCEEDED) for _ in range(2))
    running = _job(store, artifacts, None)
    store.close()
    settings = ApiSettings(
        model_repository=tmp_path / "repo",
        artifacts_dir=artifacts,
        admin_keys=["admin-key"],  # type: ignore[list-item]
        api_keys=["user-key"],  # type: ignore[list-item]
        poll_interval_s=0,
    )
    with TestClient(create_app(settings)) as client:
        path = f"/jobs/{first}/artifacts"
        assert client.delete(path, headers={"X-API-Key": "user-key"}).status_code == 403
        r = client.delete(path, headers={"X-API-Key": "admin-key"})
        assert r.status_code == 200, r.text
        assert r.json()["freed_bytes"] >= 50_000
        assert not RunLayout.for_job(artifacts, first).root.exists()
        r = client.delete(f"/jobs/{running}/artifacts", headers={"X-API-Key": "admin-key"})
        assert r.status_code == 409 and "running" in r.json()["detail"]
        assert client.get(f"/jobs/{first}", headers={"X-API-Key": "admin-key"}).status_code == 200

    monkeypatch.setenv("LUGPI_ARTIFACTS_DIR", str(artifacts))
    monkeypatch.delenv("LUGPI_REDIS_URL", raising=False)
    runner = CliRunner()
    asked = runner.invoke(cli, ["jobs", "delete-artifacts", second], input="n\n")
    assert asked.exit_code != 0 and RunLayout.for_job(artifacts, second).root.exists()
    gone = runner.invoke(cli, ["jobs", "delete-artifacts", second, "--yes"])
    assert gone.exit_code == 0, gone.output
    assert not RunLayout.for_job(artifacts, second).root.exists()
    refused = runner.invoke(cli, ["jobs", "delete-artifacts", running, "--yes"])
    assert refused.exit_code == 2 and "running" in refused.output
    store = SqliteJobStore(artifacts / SqliteJobStore.FILE_NAME)
    _age(store, running, 1)
    finish_attempt(store, running, 1, JobState.FAILED, error="x")
    _age(store, running, 9)
    store.close()
    pruned = runner.invoke(cli, ["jobs", "prune-artifacts", "--keep-days", "7", "--yes"])
    assert pruned.exit_code == 0 and running in pruned.output
    assert not RunLayout.for_job(artifacts, running).root.exists()


def test_the_api_prunes_old_artifacts_by_its_setting(tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    store = SqliteJobStore(artifacts / SqliteJobStore.FILE_NAME)
    old, recent = (_job(store, artifacts, JobState.SUCCEEDED) for _ in range(2))
    _age(store, old, 8)
    _age(store, recent, 6)
    store.close()
    settings = ApiSettings(
        model_repository=tmp_path / "repo",
        artifacts_dir=artifacts,
        poll_interval_s=0,
        stale_after_s=1,  # the embedded runner's loop (and its reaper) turns every 0.5 s
        job_artifacts_keep_days=7,
    )
    with TestClient(create_app(settings)):
        deadline = time.monotonic() + 20
        while RunLayout.for_job(artifacts, old).root.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
    assert not RunLayout.for_job(artifacts, old).root.exists()
    assert RunLayout.for_job(artifacts, recent).root.is_dir()
