"""The embedded (SQLite) job store when SQLite fails: a failed COMMIT is rolled back, and
every store error reaches HTTP callers as 503 "jobs unavailable", never as a 500 or as a
connection stuck inside a transaction. Real SQLite files; errors injected at the
connection, where the real ones (a locked or full disk, a corrupt file) come from."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import ApiSettings
from contracts.jobs import JobRecord
from jobs.lifecycle import request_cancel
from jobs.store import JobStoreUnavailable, SqliteJobStore

JOBQUEUE_THREAD = "lugpi-jobqueue"  # api/jobqueue.py's runner thread


class FlakyConnection:
    """A real sqlite3 connection whose statements starting with ``verb`` fail ``times``
    times with ``error`` before they reach SQLite (so SQLite's own state is as a refused
    COMMIT leaves it: still inside the transaction).

    Statements from the thread named ``spare`` never fail: the API's embedded job runner
    polls the same store from its own thread, and when it ran its SELECT between the
    injection and the request it took the one failure meant for the request (CI, at load
    average 6: GET /jobs answered 200 and the runner said "retrying")."""

    def __init__(
        self, conn: sqlite3.Connection, verb: str, times: int, error: str, spare: str | None
    ) -> None:
        self.conn, self.verb, self.times, self.error = conn, verb.upper(), times, error
        self.spare = spare

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        spared = threading.current_thread().name == self.spare
        if self.times > 0 and not spared and sql.strip().upper().startswith(self.verb):
            self.times -= 1
            raise sqlite3.OperationalError(self.error)
        return self.conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


def _flaky(
    store: SqliteJobStore, verb: str, times: int, error: str, spare: str | None = None
) -> None:
    conn = FlakyConnection(store._conn, verb, times, error, spare)
    store._conn = conn  # type: ignore[assignment]


def test_a_failed_commit_is_rolled_back_and_later_writes_work(tmp_path: Path) -> None:
    """Weakness: a COMMIT that failed (SQLITE_BUSY) left the one shared connection inside
    its transaction, so every later write failed ("cannot start a transaction within a
    transaction") until the API was restarted."""
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    job = store.create({}).job_id
    _flaky(store, "COMMIT", 1, "database is locked")
    with pytest.raises(JobStoreUnavailable, match="database is locked"):
        request_cancel(store, job)
    assert not store.get(job).cancel_requested  # the failed write left nothing behind
    assert request_cancel(store, job).cancel_requested  # and the next one works
    other = SqliteJobStore(tmp_path / "jobs.sqlite3")  # another process sees it committed
    assert other.get(job).cancel_requested
    other.close()
    store.close()


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = ApiSettings(
        allow_unauthenticated_admin=True,  # loopback test client, no keys
        artifacts_dir=tmp_path / "artifacts",
        model_repository=tmp_path / "repo",
        data_roots=[tmp_path],
        poll_interval_s=0,
    )
    with TestClient(create_app(settings)) as c:
        yield c


def test_store_errors_answer_503_not_500(client: TestClient) -> None:
    """Weakness: SQLite errors were not mapped, so a locked or failing store file made
    /jobs answer 500 (an unexplained internal error) instead of 503 with the reason."""
    assert client.get("/jobs").status_code == 200  # opens the embedded store
    store = client.app.state.jobqueue.store  # type: ignore[attr-defined]
    _flaky(store, "SELECT", 1, "disk I/O error", spare=JOBQUEUE_THREAD)
    r = client.get("/jobs")
    assert r.status_code == 503, r.text
    assert "disk I/O error" in r.json()["detail"]
    _flaky(store, "BEGIN", 1, "database is locked", spare=JOBQUEUE_THREAD)
    job = "0" * 32
    r = client.post(f"/jobs/{job}/cancel")
    assert r.status_code == 503, r.text
    page = client.get("/jobs")
    assert page.status_code == 200 and JobRecord.model_fields  # and it recovers


def test_a_corrupt_store_file_answers_503_and_classify_still_starts(tmp_path: Path) -> None:
    """Weakness: a job store file that SQLite cannot read (corrupt, or not a database)
    raised sqlite3.DatabaseError unmapped: a 500 on /jobs, or an API that did not start."""
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    (artifacts / SqliteJobStore.FILE_NAME).write_bytes(b"this is not a database" * 100)
    settings = ApiSettings(
        allow_unauthenticated_admin=True,  # loopback test client, no keys
        artifacts_dir=artifacts,
        model_repository=tmp_path / "repo",
        poll_interval_s=0,
    )
    with TestClient(create_app(settings)) as c:
        assert c.get("/healthz").status_code == 200
        r = c.get("/jobs")
        assert r.status_code == 503, r.text
        assert SqliteJobStore.FILE_NAME in r.json()["detail"]
