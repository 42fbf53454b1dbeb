"""The job store and the lifecycle transitions, on SQLite and on a real Redis."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from contracts.jobs import JobRecord, JobState, Progress, Stage
from jobs.lifecycle import (
    AttemptLost,
    abandon_attempt,
    beat,
    finish_attempt,
    overall_fraction,
    reap_stale_jobs,
    report_progress,
    request_cancel,
    start_attempt,
)
from jobs.store import JobNotFound, JobStore, JobStoreUnavailable, RedisJobStore, now_utc


def test_create_get_and_page_newest_first(store: JobStore) -> None:
    ids = [store.create({"n": i}).job_id for i in range(5)]
    assert store.get(ids[2]).config == {"n": 2}
    page, total = store.list_jobs(offset=0, limit=2)
    assert total == 5
    assert [r.job_id for r in page] == [ids[4], ids[3]]
    page, _ = store.list_jobs(offset=4, limit=2)
    assert [r.job_id for r in page] == [ids[0]]
    assert store.ids_in_state(JobState.QUEUED) == ids  # oldest first
    with pytest.raises(JobNotFound):
        store.get("0" * 32)
    with pytest.raises(JobNotFound):
        store.get("../../etc/passwd")  # never reaches a key or a path


def test_concurrent_updates_lose_nothing(store: JobStore) -> None:
    """Progress writes and a cancel request race on one record; both survive."""
    job = store.create({}).job_id
    start_attempt(store, job, "w")

    def bump() -> None:
        for i in range(25):
            p = Progress(stage=Stage.TEACHER, done=i, total=25)
            store.update(job, lambda r, p=p: r.model_copy(update={"progress": p}))

    threads = [threading.Thread(target=bump) for _ in range(2)]
    for t in threads:
        t.start()
    request_cancel(store, job)
    for t in threads:
        t.join()
    rec = store.get(job)
    assert rec.cancel_requested and rec.state is JobState.RUNNING
    assert rec.progress is not None and rec.progress.stage is Stage.TEACHER


def test_locks_are_exclusive_refreshable_and_expire(store: JobStore) -> None:
    assert store.acquire_lock("j", "a", ttl=0.5)
    assert not store.acquire_lock("j", "b", ttl=0.5)
    assert store.lock_holder("j") == "a"
    assert store.refresh_lock("j", "a", ttl=0.5)
    assert not store.refresh_lock("j", "b", ttl=0.5)
    store.release_lock("j", "b")  # not b's: stays
    assert store.lock_holder("j") == "a"
    time.sleep(0.7)
    assert store.lock_holder("j") is None
    assert not store.refresh_lock("j", "a", ttl=0.5)  # expired: a must not silently regain it
    assert store.acquire_lock("j", "b", ttl=5)
    store.release_lock("j", "b")
    assert store.lock_holder("j") is None


def test_queued_job_cancelled_never_starts(store: JobStore) -> None:
    job = store.create({}).job_id
    rec = request_cancel(store, job)
    assert rec.state is JobState.CANCELLED and rec.finished_at is not None
    assert start_attempt(store, job, "w") is None
    assert store.get(job).state is JobState.CANCELLED


def test_running_attempt_reports_and_finishes(store: JobStore) -> None:
    job = store.create({}).job_id
    rec = start_attempt(store, job, "w1")
    assert rec is not None and rec.state is JobState.RUNNING and rec.attempts == 1
    p = Progress(
        stage=Stage.GENERATE, done=3, total=10, fraction=overall_fraction(Stage.GENERATE, 3, 10)
    )
    report_progress(store, job, 1, p, finished_stage=("prepare", 1.5))
    request_cancel(store, job)
    assert beat(store, job, 1).cancel_requested  # the worker learns it from its heartbeat
    done = finish_attempt(store, job, 1, JobState.CANCELLED, finished_stage=("generate", 2.0))
    assert done.state is JobState.CANCELLED
    assert done.stage_seconds == {"prepare": 1.5, "generate": 2.0}
    # Terminal is final: a late duplicate cannot restart or rewrite it.
    assert start_attempt(store, job, "w2") is None
    with pytest.raises(AttemptLost):
        finish_attempt(store, job, 1, JobState.SUCCEEDED)


def _make_stale(store: JobStore, job: str, seconds: float = 120) -> None:
    def mutate(r: JobRecord) -> JobRecord:
        r.heartbeat_at = now_utc() - timedelta(seconds=seconds)
        return r

    store.update(job, mutate)


def test_reaper_requeues_then_fails_a_job_whose_worker_died(store: JobStore) -> None:
    job = store.create({}).job_id
    sent: list[str] = []
    start_attempt(store, job, "w1")
    # Live: the lock is held, so even an old heartbeat is not reaped.
    assert store.acquire_lock(job, "w1", ttl=30)
    _make_stale(store, job)
    assert reap_stale_jobs(store, stale_after=60, max_attempts=2, requeue=sent.append) == []
    store.release_lock(job, "w1")  # the worker died: its lock expired

    (rec,) = reap_stale_jobs(store, stale_after=60, max_attempts=2, requeue=sent.append)
    assert rec.state is JobState.QUEUED and sent == [job]
    # The old attempt learns it lost the job at its next heartbeat.
    with pytest.raises(AttemptLost):
        beat(store, job, 1)

    rec2 = start_attempt(store, job, "w2")
    assert rec2 is not None and rec2.attempts == 2
    _make_stale(store, job)
    (rec,) = reap_stale_jobs(store, stale_after=60, max_attempts=2, requeue=sent.append)
    assert rec.state is JobState.FAILED and rec.error is not None
    assert "worker lost" in rec.error and sent == [job]


def test_reaper_leaves_fresh_jobs_and_fails_when_requeue_fails(store: JobStore) -> None:
    job = store.create({}).job_id
    start_attempt(store, job, "w1")
    assert reap_stale_jobs(store, stale_after=60, max_attempts=3, requeue=None) == []

    def broken(job_id: str) -> None:
        raise ConnectionError("broker down")

    _make_stale(store, job)
    (rec,) = reap_stale_jobs(store, stale_after=60, max_attempts=3, requeue=broken)
    assert rec.state is JobState.FAILED and "could not be re-queued" in (rec.error or "")


def test_abandon_after_known_crash(store: JobStore) -> None:
    job = store.create({}).job_id
    start_attempt(store, job, "w1")
    rec = abandon_attempt(store, job, "job process exited with code -9", max_attempts=1)
    assert rec.state is JobState.FAILED and "code -9" in (rec.error or "")


def test_sqlite_state_survives_reopen(tmp_path: Path) -> None:
    from jobs.store import SqliteJobStore

    a = SqliteJobStore(tmp_path / "j.sqlite3")
    job = a.create({"x": 1}).job_id
    request_cancel(a, job)
    a.close()
    b = SqliteJobStore(tmp_path / "j.sqlite3")
    assert b.get(job).state is JobState.CANCELLED
    b.close()


def test_unreachable_redis_raises_a_clear_error() -> None:
    store = RedisJobStore("redis://:hunter2@127.0.0.1:1/0", connect_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(JobStoreUnavailable) as err:
        store.list_jobs()
    assert time.monotonic() - started < 5
    assert "127.0.0.1:1" in str(err.value) and "hunter2" not in str(err.value)
