"""Jobs' artifacts (their run directories) can be deleted, through the admin route and the
CLI, and those of jobs finished longer ago than LUGPI_JOB_ARTIFACTS_KEEP_DAYS are pruned by
the reaper. A running job's are refused; the job record and the published model stay."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import ApiSettings
from contracts.jobs import JobState
from contracts.layout import RunLayout
from jobs.artifacts import delete_job_artifacts, prune_job_artifacts
from jobs.lifecycle import finish_attempt, start_attempt
from jobs.store import JobStore, SqliteJobStore, now_utc

ROOT = Path(__file__).resolve().parents[2]


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

    # The command, as installed (python -m runs the same main), with the API's settings.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "LUGPI_"))}
    env |= {"PYTHONPATH": str(ROOT), "LUGPI_ARTIFACTS_DIR": str(artifacts)}

    def lugpi_jobs(*args: str, answer: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "jobs.cli", *args],
            input=answer, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    asked = lugpi_jobs("delete-artifacts", second, answer="n\n")
    assert asked.returncode == 1 and RunLayout.for_job(artifacts, second).root.exists()
    gone = lugpi_jobs("delete-artifacts", second, "--yes")
    assert gone.returncode == 0, gone.stderr
    assert not RunLayout.for_job(artifacts, second).root.exists() and "MB freed" in gone.stdout
    refused = lugpi_jobs("delete-artifacts", running, "--yes")
    assert refused.returncode == 2 and "running" in refused.stderr
    unknown = lugpi_jobs("delete-artifacts", "0" * 32, "--yes")
    assert unknown.returncode == 2 and "no job" in unknown.stderr
    store = SqliteJobStore(artifacts / SqliteJobStore.FILE_NAME)
    finish_attempt(store, running, 1, JobState.FAILED, error="x")
    _age(store, running, 9)
    store.close()
    pruned = lugpi_jobs("prune-artifacts", "--keep-days", "7", "--yes")
    assert pruned.returncode == 0 and running in pruned.stdout, pruned.stderr
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
