"""The embedded job runner (the API's thread that starts each queued job as a child
process) under errors: it survives every one, and when it is not running after all,
GET /jobs, /readyz and POST /jobs/train say so instead of accepting jobs nobody runs.
Real SQLite, real child processes; errors injected into the store and the filesystem."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.jobqueue import LocalProcessJobQueue
from api.main import create_app
from api.settings import ApiSettings
from contracts.jobs import JobState
from jobs.lifecycle import start_attempt
from tests.chaos.conftest import CONFIG, FaultyStore


def _wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


@pytest.fixture
def api_settings(tmp_path: Path, shared_datasets: Path) -> ApiSettings:
    return ApiSettings(
        allow_unauthenticated_admin=True,  # loopback test client, no keys
        artifacts_dir=tmp_path / "artifacts",
        model_repository=tmp_path / "repo",
        data_roots=[shared_datasets],
        poll_interval_s=0,
        stale_after_s=2,
    )


def test_the_runner_survives_store_and_filesystem_errors(api_settings: ApiSettings) -> None:
    """Weakness: an exception from the store, mkdir or Popen escaped the runner's loop;
    its thread died for good and no job ever ran again, while POST /jobs/train kept
    answering 202."""
    queue = LocalProcessJobQueue(api_settings)
    faulty = FaultyStore(queue.store, {"ids_in_state"}, sqlite3.OperationalError("disk I/O"))
    queue.store = faulty
    faulty.failing.set()
    queue.start()
    try:
        # A job whose data file does not exist: it fails in seconds once it runs.
        job = faulty.inner.create(dict(CONFIG)).job_id
        _wait_for(lambda: faulty.raised >= 4, 20, "the runner polled again after an error")
        runs = Path(api_settings.artifacts_dir) / "runs"
        runs.write_text("a file where the run directories go: mkdir fails")
        faulty.failing.clear()
        queue.submit(job)
        time.sleep(1.5)
        assert faulty.inner.get(job).state is JobState.QUEUED
        runs.unlink()  # the fault is gone: the same runner runs the job
        queue.submit(job)
        _wait_for(lambda: faulty.inner.get(job).state.terminal, 120, "the job ran")
        rec = faulty.inner.get(job)
        assert rec.state is JobState.FAILED and "data file not found" in (rec.error or ""), rec
    finally:
        queue.stop()


def _body() -> dict[str, Any]:
    return {
        "name": "runner-test",
        "data": {"train": "cwi2018/News_Train.tsv", "format": "cwi2018", "prompt_style": "cwi"},
        "generator": {"model": "tiny-random"},
        "teachers": [
            {"name": "t", "text_model": "all-minilm-l6-v2", "image_model": "efficientnet-lite0"}
        ],
        "student": {"text_model": "all-minilm-l6-v2"},
    }


@pytest.fixture
def client(api_settings: ApiSettings) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings)) as c:
        yield c


def test_a_dead_runner_is_reported_and_no_job_is_accepted(client: TestClient) -> None:
    """Weakness: nothing told an operator (or a client) that the runner thread was gone:
    /readyz said ready and POST /jobs/train accepted jobs that would never run."""
    r = client.get("/jobs")
    assert r.status_code == 200 and r.json()["runner"]["alive"] is True, r.text
    queue = client.app.state.jobqueue  # type: ignore[attr-defined]
    # Something no loop can survive (a library calling sys.exit in the runner's thread).
    queue.store = FaultyStore(queue.store, {"ids_in_state"}, SystemExit(3))
    queue.store.failing.set()
    queue.submit("")
    _wait_for(lambda: not queue._thread.is_alive(), 20, "the runner thread ended")

    runner = client.get("/jobs").json()["runner"]
    assert runner["alive"] is False and "not running" in runner["detail"], runner
    ready = client.get("/readyz")
    assert ready.status_code == 503 and "job runner" in ready.json()["detail"], ready.text
    r = client.post("/jobs/train", json=_body())
    assert r.status_code == 503 and "not running" in r.json()["detail"], r.text
    queue.store.failing.clear()
    assert client.get("/jobs").json()["total"] == 0  # the refused job left no record


def test_a_job_another_process_runs_is_left_to_it(api_settings: ApiSettings) -> None:
    """Weakness: when the embedded runner's job process exited because another process
    held the job (a second API on the same artifacts directory, as during a restart
    overlap), the runner took the job for dead: it freed the other's lock and re-queued
    the job while it ran, so a third process started it too (seen as a flaky failure of
    tests/worker/test_embedded_jobs.py::test_killed_job_process_is_resumed)."""
    queue = LocalProcessJobQueue(api_settings)  # its thread is not started: only the check
    try:
        store, log_file = queue.store, Path(api_settings.artifacts_dir) / "job.log"
        theirs = store.create(dict(CONFIG)).job_id
        assert store.acquire_lock(theirs, "local@host:424242:abcd1234", 60)
        assert start_attempt(store, theirs, "local@host") is not None
        queue.after_child(theirs, 4242, 0, 0, log_file)  # our child found it held and left
        assert store.get(theirs).state is JobState.RUNNING
        assert store.lock_holder(theirs) == "local@host:424242:abcd1234"

        mine = store.create(dict(CONFIG)).job_id  # our own child died mid-job: handed on
        assert store.acquire_lock(mine, "local@host:4242:abcd1234", 60)
        assert start_attempt(store, mine, "local@host") is not None
        queue.after_child(mine, 4242, -9, 0, log_file)
        assert store.get(mine).state is JobState.QUEUED
        assert store.lock_holder(mine) is None
    finally:
        queue.stop()
