"""Celery tasks: thin shells over worker/runner.py and training/.

The API sends these by name (jobs.lifecycle.TASK_*), never importing this module.
Each task is safe to deliver twice: the job lock and the terminal states turn a
duplicate into a no-op.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from celery import Task

from jobs.lifecycle import (
    TASK_CLASSIFY_TEACHER,
    TASK_GENERATE_SHARD,
    TASK_RUN_JOB,
    reap_stale_jobs,
)
from jobs.store import JobStore, JobStoreUnavailable, RedisJobStore
from worker.app import app, settings, wait_for_preload
from worker.runner import run_job

log = logging.getLogger(__name__)

_store: JobStore | None = None


def store() -> JobStore:
    """The job store of this worker process, opened on first use."""
    global _store
    if _store is None:
        if not settings.redis_url:
            raise RuntimeError("LUGPI_REDIS_URL is not set; a Celery worker needs Redis")
        _store = RedisJobStore(settings.redis_url)
    return _store


def _hostname(task: Task) -> str:
    return str(task.request.hostname or socket.gethostname())


def send_shard(job_id: str, shard: int) -> None:
    app.send_task(TASK_GENERATE_SHARD, args=[job_id, shard])


def requeue(job_id: str) -> None:
    app.send_task(TASK_RUN_JOB, args=[job_id])


@app.task(name=TASK_RUN_JOB, bind=True, ignore_result=True)
def run_job_task(self: Task, job_id: str) -> str | None:
    """The whole pipeline of one job; generation fans out into shard tasks."""
    wait_for_preload()
    state = run_job(
        store(), job_id, settings, worker=_hostname(self), fan_out=send_shard, requeue=requeue
    )
    return state.value if state else None


@app.task(name=TASK_GENERATE_SHARD, bind=True, ignore_result=True)
def generate_shard_task(self: Task, job_id: str, shard: int) -> bool:
    """One piece of a job's image generation; any worker takes it (see worker/shards.py)."""
    wait_for_preload()
    from worker.shards import run_shard_for_job

    return run_shard_for_job(store(), job_id, shard, settings, worker=_hostname(self))


@app.task(name=TASK_CLASSIFY_TEACHER, bind=True)
def classify_teacher_task(self: Task, payload: dict[str, Any]) -> dict[str, Any]:
    """Generate image(s) and run the teacher; models stay loaded between calls."""
    wait_for_preload()
    from worker.teacher_service import classify_with_teacher

    return classify_with_teacher(payload)


def reap_once() -> None:
    """Re-queue (or fail) jobs whose worker died; called by every worker, periodically."""
    try:
        reap_stale_jobs(
            store(),
            stale_after=settings.stale_after_s,
            max_attempts=settings.max_attempts,
            requeue=requeue,
        )
    except JobStoreUnavailable as e:
        log.warning("reaper: %s", e)
    except Exception:  # the reaper thread must survive anything
        log.exception("reaper failed")
