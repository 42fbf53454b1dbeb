"""A job attempt under a hung stage and a failing store: it never runs past its time
limit, never holds the worker forever, and two attempts of one job never run at once.

The stage is the scripted stand-in (tests/chaos/stages.py) run by the real ``run_job``;
the store is a real SQLite file, wrapped to raise where a test says so.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from contracts.jobs import JobState
from jobs.lifecycle import reap_stale_jobs
from jobs.store import RedisJobStore, SqliteJobStore
from tests.chaos.conftest import LOCKED, SCRIPTED, Background, FaultyStore, MakeJob
from tests.chaos.stages import read_steps, write_plan
from worker.runner import run_job
from worker.settings import WorkerSettings


def _wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


def _run_dir(settings: WorkerSettings, job_id: str) -> Path:
    return settings.artifacts_dir / "runs" / job_id


def test_a_hung_stage_is_failed_at_the_time_limit_and_frees_the_worker(
    settings: WorkerSettings, sqlite_store: SqliteJobStore, make_job: MakeJob
) -> None:
    """Weakness: job_timeout_s was checked only when a stage reported progress, so a stage
    blocked in a model load or a deadlock stayed "running" forever and held the worker."""
    settings = settings.model_copy(update={"job_timeout_s": 3.0})
    job_id = make_job(sqlite_store, steps=2, then="hang")
    attempt = Background(
        lambda: run_job(sqlite_store, job_id, settings, worker="w", stages=SCRIPTED)
    )
    assert attempt.join(60), "run_job is still waiting for a stage that hangs"
    rec = sqlite_store.get(job_id)
    assert rec.state is JobState.FAILED, rec
    assert rec.error is not None and "time limit" in rec.error
    assert sqlite_store.lock_holder(job_id) is None  # the worker let go of the job
    steps = read_steps(_run_dir(settings, job_id))
    assert len(steps) == 2  # the stage did run, then hung


def test_a_heartbeat_error_of_an_unexpected_kind_is_retried(
    settings: WorkerSettings, sqlite_store: SqliteJobStore, make_job: MakeJob
) -> None:
    """Weakness: the heartbeat thread caught only the errors it knew and died silently on
    any other (sqlite3.OperationalError here): the lock expired while the job ran, so the
    reaper would re-queue a job that was still running."""
    faulty = FaultyStore(sqlite_store, {"refresh_lock"}, LOCKED)
    job_id = make_job(sqlite_store, steps=120, interval=0.05)
    attempt = Background(lambda: run_job(faulty, job_id, settings, worker="w", stages=SCRIPTED))
    run_dir = _run_dir(settings, job_id)
    _wait_for(lambda: read_steps(run_dir), 60, "the stage started")
    faulty.failing.set()
    _wait_for(lambda: faulty.raised >= 3, 10, "the heartbeat met the errors")
    faulty.failing.clear()  # a blip shorter than the lock's TTL
    time.sleep(settings.stale_after_s + 0.5)  # past the TTL of the last refresh before it
    assert sqlite_store.lock_holder(job_id) is not None, "the heartbeat stopped refreshing"
    reaped = reap_stale_jobs(
        sqlite_store, stale_after=settings.stale_after_s, max_attempts=3, requeue=None
    )
    assert reaped == []
    assert attempt.join(120) and attempt.error is None, attempt.error
    rec = sqlite_store.get(job_id)
    assert rec.state is JobState.SUCCEEDED and rec.attempts == 1, rec


def test_an_attempt_that_loses_its_lock_stops_before_another_starts(
    settings: WorkerSettings, sqlite_store: SqliteJobStore, make_job: MakeJob
) -> None:
    """Weakness: when the heartbeat could no longer refresh the lock, the attempt kept
    running; once the lock expired, the reaper handed the job to a second attempt and two
    processes trained in the same run directory at once."""
    faulty = FaultyStore(sqlite_store, {"refresh_lock"}, LOCKED)
    job_id = make_job(sqlite_store, steps=600, interval=0.05)  # 30 s if nothing stops it
    first = Background(lambda: run_job(faulty, job_id, settings, worker="a", stages=SCRIPTED))
    run_dir = _run_dir(settings, job_id)
    _wait_for(lambda: read_steps(run_dir), 60, "the first attempt started")
    faulty.failing.set()  # from now on the first attempt can never refresh its lock
    assert first.join(15), "the attempt kept running after it lost its lock"
    assert first.error is None and first.result is None, first.error

    # The lock expires, the heartbeat goes stale, the reaper re-queues, a second attempt runs.
    _wait_for(
        lambda: reap_stale_jobs(
            sqlite_store, stale_after=settings.stale_after_s, max_attempts=3, requeue=None
        ),
        30,
        "the reaper re-queued the job",
    )
    write_plan(run_dir, steps=5, interval=0.05)
    second = run_job(sqlite_store, job_id, settings, worker="b", stages=SCRIPTED)
    assert second is JobState.SUCCEEDED
    assert sqlite_store.get(job_id).attempts == 2

    steps = read_steps(run_dir)
    pids = list(dict.fromkeys(pid for pid, _ in steps))
    assert len(pids) == 2, steps
    last_of_first = max(t for pid, t in steps if pid == pids[0])
    first_of_second = min(t for pid, t in steps if pid == pids[1])
    assert last_of_first < first_of_second  # never both at once


@pytest.mark.redis
def test_a_redis_failover_blip_in_the_heartbeat_is_retried(
    settings: WorkerSettings,
    redis_url: str,
    make_job: MakeJob,
) -> None:
    """Weakness: the same on Redis: a replica that turned read-only during a failover
    raised ReadOnlyError, which the heartbeat did not expect, and its thread died."""
    import redis

    settings = settings.model_copy(update={"redis_url": redis_url})
    store = RedisJobStore(redis_url)  # the attempt process opens the same (prefix and DB)
    readonly = redis.exceptions.ReadOnlyError("You can't write against a read only replica.")
    faulty = FaultyStore(store, {"refresh_lock"}, readonly)
    try:
        job_id = make_job(store, steps=120, interval=0.05)
        attempt = Background(lambda: run_job(faulty, job_id, settings, worker="w", stages=SCRIPTED))
        _wait_for(lambda: read_steps(_run_dir(settings, job_id)), 60, "the stage started")
        faulty.failing.set()
        _wait_for(lambda: faulty.raised >= 3, 10, "the heartbeat met the errors")
        faulty.failing.clear()
        time.sleep(settings.stale_after_s + 0.5)
        assert store.lock_holder(job_id) is not None, "the heartbeat stopped refreshing"
        assert attempt.join(120) and attempt.error is None, attempt.error
        rec = store.get(job_id)
        assert rec.state is JobState.SUCCEEDED and rec.attempts == 1, rec
    finally:
        store.close()
