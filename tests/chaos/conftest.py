"""Fixtures of the chaos suite: real SQLite files and the test Redis DB, job records with
a scripted stage (tests/chaos/stages.py), stores that fail on purpose; for the service,
RANDOM-weight bundles (tests/api/conftest.py), broken or crafted ones beside them, and
real uvicorn servers (tests/chaos/servers.py)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts.jobs import JobState
from jobs.store import JobStore, SqliteJobStore
from tests.api.conftest import (  # noqa: F401  (fixtures of the service tests)
    make_client,
    random_bundles,
    repository,
)
from tests.chaos.bundles import export_minilm_bundle
from tests.chaos.stages import write_plan

# Fixtures of the job tests: the test Redis DB, both stores (``store``), and the module-
# scoped stacks of tiny random models, real datasets and worker processes.
from tests.worker.conftest import (  # noqa: F401
    embedded_stack,
    redis_available,
    redis_url,
    stack,
)
from tests.worker.conftest import store as store
from worker.settings import WorkerSettings

SCRIPTED = "tests.chaos.stages:scripted"


@pytest.fixture(scope="session")
def minilm512(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's graph (all-MiniLM-L6-v2, RANDOM head) as a bundle of max_length 512."""
    return export_minilm_bundle(tmp_path_factory.mktemp("minilm512") / "bundle", 512)


# A config the schema accepts; the scripted stage never reads its data paths.
CONFIG: dict[str, Any] = {"name": "chaos", "data": {"train": "unused.tsv"}}


class FaultyStore(JobStore):
    """A real store whose chosen methods raise ``error`` while ``failing`` is set: a
    backend that errs in a way the code may not expect (a locked SQLite file, a Redis
    replica that turned read-only during a failover)."""

    def __init__(self, inner: JobStore, methods: set[str], error: Exception) -> None:
        self.inner, self.methods, self.error = inner, methods, error
        self.failing = threading.Event()
        self.raised = 0

    def _maybe_fail(self, method: str) -> None:
        if method in self.methods and self.failing.is_set():
            self.raised += 1
            raise self.error

    def _insert(self, record: Any) -> None:
        self._maybe_fail("create")
        self.inner._insert(record)

    def get(self, job_id: str) -> Any:
        self._maybe_fail("get")
        return self.inner.get(job_id)

    def list_jobs(self, offset: int = 0, limit: int = 20) -> Any:
        self._maybe_fail("list_jobs")
        return self.inner.list_jobs(offset, limit)

    def ids_in_state(self, state: JobState) -> list[str]:
        self._maybe_fail("ids_in_state")
        return self.inner.ids_in_state(state)

    def update(self, job_id: str, mutate: Any) -> Any:
        self._maybe_fail("update")
        return self.inner.update(job_id, mutate)

    def acquire_lock(self, name: str, owner: str, ttl: float) -> bool:
        self._maybe_fail("acquire_lock")
        return self.inner.acquire_lock(name, owner, ttl)

    def refresh_lock(self, name: str, owner: str, ttl: float) -> bool:
        self._maybe_fail("refresh_lock")
        return self.inner.refresh_lock(name, owner, ttl)

    def release_lock(self, name: str, owner: str) -> None:
        self._maybe_fail("release_lock")
        self.inner.release_lock(name, owner)

    def lock_holder(self, name: str) -> str | None:
        self._maybe_fail("lock_holder")
        return self.inner.lock_holder(name)

    def close(self) -> None:
        self.inner.close()


LOCKED = sqlite3.OperationalError("database is locked")


@pytest.fixture
def settings(tmp_path: Path) -> WorkerSettings:
    """Short clocks: a lock lives 2 s, refreshed every 0.2 s."""
    return WorkerSettings(
        artifacts_dir=tmp_path / "artifacts",
        model_repository=tmp_path / "repo",
        heartbeat_s=0.2,
        stale_after_s=2.0,
        progress_interval_s=0.1,
        job_timeout_s=600.0,
        max_attempts=3,
    )


@pytest.fixture
def sqlite_store(settings: WorkerSettings) -> Iterator[SqliteJobStore]:
    s = SqliteJobStore(settings.artifacts_dir / SqliteJobStore.FILE_NAME)
    yield s
    s.close()


MakeJob = Callable[..., str]


@pytest.fixture
def make_job(settings: WorkerSettings) -> MakeJob:
    """A queued job whose stage follows a plan (see ``stages.write_plan``)."""

    def make(into: JobStore, **plan: Any) -> str:
        job_id = into.create(dict(CONFIG)).job_id
        write_plan(settings.artifacts_dir / "runs" / job_id, **plan)
        return job_id

    return make


class Background:
    """``run_job`` in a thread of the test process, so the test can watch and poke it."""

    def __init__(self, target: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None

        def run() -> None:
            try:
                self.result = target()
            except BaseException as e:  # reported by the test
                self.error = e

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self, timeout: float) -> bool:
        """Whether it ended within ``timeout`` s."""
        self.thread.join(timeout)
        return not self.thread.is_alive()


__all__ = ["redis_available"]
