"""Celery tasks: thin shells over worker/runner.py and training/.

The API sends these by name (jobs.lifecycle.TASK_*), never importing this module.
Each task is safe to deliver twice: the job lock and the terminal states turn a
duplicate into a no-op.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

from celery import Task
from celery.signals import worker_ready, worker_shutdown, worker_shutting_down

from jobs.lifecycle import (
    TASK_CLASSIFY_TEACHER,
    TASK_GENERATE_SHARD,
    TASK_RUN_JOB,
    reap_queued_jobs,
    reap_stale_jobs,
)
from jobs.store import JobStore, JobStoreUnavailable, RedisJobStore
from worker.app import app, settings
from worker.job_context import STOPPING
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


def requeue(job_id: str) -> None:
    app.send_task(TASK_RUN_JOB, args=[job_id])


@app.task(name=TASK_RUN_JOB, bind=True, ignore_result=True)
def run_job_task(self: Task, job_id: str) -> str | None:
    """The whole pipeline of one job; generation fans out into shard tasks."""
    wait_for_preload()
    state = run_job(
        store(), job_id, settings, worker=_hostname(self), fan_out=True, requeue=requeue
    )
    return state.value if state else None


@app.task(name=TASK_GENERATE_SHARD, bind=True, ignore_result=True)
def generate_shard_task(self: Task, job_id: str, shard: int, kind: str = "images") -> bool:
    """One piece of a job's generation (``kind``: images, TGT texts or their images); any
    worker takes it (see worker/shards.py). A message without ``kind`` is an image shard,
    as every message was before texts were sharded."""
    wait_for_preload()
    from training.sharding import SHARD_KINDS
    from worker.shards import run_shard_for_job

    if kind not in SHARD_KINDS:
        log.error("job %s: shard task of unknown kind %r dropped", job_id, kind)
        return False
    worker = _hostname(self)
    return run_shard_for_job(store(), job_id, shard, settings, worker=worker, kind=kind)


@app.task(name=TASK_CLASSIFY_TEACHER, bind=True)
def classify_teacher_task(self: Task, payload: dict[str, Any]) -> dict[str, Any]:
    """Generate image(s) and run the teacher; models stay loaded between calls."""
    wait_for_preload()
    from worker.teacher_service import classify_with_teacher

    return classify_with_teacher(payload, settings)


def reap_once() -> None:
    """Re-queue (or fail) jobs whose worker died, send again (or fail) queued jobs that no
    worker took; called by every worker, periodically, so it works with no API running."""
    try:
        reap_stale_jobs(
            store(),
            stale_after=settings.stale_after_s,
            max_attempts=settings.max_attempts,
            requeue=requeue,
        )
        reap_queued_jobs(
            store(),
            resend_after=settings.queued_resend_s,
            fail_after=settings.queued_timeout_s,
            requeue=requeue,
        )
    except JobStoreUnavailable as e:
        log.warning("reaper: %s", e)
    except Exception:  # the reaper thread must survive anything
        log.exception("reaper failed")


# ------------------------------------------------------------ worker start-up and shutdown

_reaper_stop = threading.Event()
_preloading: threading.Thread | None = None


def _preload() -> None:
    """Import the training stack (torch, transformers, diffusers: seconds to tens of
    seconds) right after start-up, so that a worker that says "ready" takes its first
    generation shard at full speed instead of spending it on imports."""
    started = time.perf_counter()
    try:
        # The libraries import lazily; touch the classes the stages use to really load them.
        import torch  # noqa: F401
        from diffusers import AutoPipelineForText2Image, StableDiffusionPipeline  # noqa: F401
        from transformers import AutoModel, AutoModelForSequenceClassification  # noqa: F401

        import models.teacher  # noqa: F401
        import worker.execute  # noqa: F401
    except Exception:  # the task that needs them will report the problem as its error
        log.exception("preloading the training libraries failed")
        return
    log.info("preloaded the training libraries in %.1f s", time.perf_counter() - started)


def wait_for_preload() -> None:
    """Tasks call this first: two threads importing diffusers' lazy modules at once can
    fail with ImportError, so a task waits until the preload thread is done."""
    if _preloading is not None:
        _preloading.join()


@worker_ready.connect
def _start_background_threads(**_: object) -> None:
    global _preloading
    if settings.preload:
        _preloading = threading.Thread(target=_preload, name="lugpi-preload", daemon=True)
        _preloading.start()
    _start_reaper()


def _start_reaper() -> None:
    """Every worker reaps: on start (a restarted worker finds its predecessor's job) and
    every half ``stale_after_s`` after, so a dead worker's job is re-queued even while the
    other workers are busy."""

    def loop() -> None:
        while True:
            reap_once()
            if _reaper_stop.wait(settings.stale_after_s / 2):
                return

    threading.Thread(target=loop, name="lugpi-reaper", daemon=True).start()


@worker_shutting_down.connect
def _stop_running_job(**_: object) -> None:
    """Warm shutdown (SIGTERM, a deploy): the running job stops at its next step and goes
    back to the queue for another worker, instead of making the shutdown wait for hours;
    a shard being drawn stops at its next batch and is left to the job's own task."""
    STOPPING.set()


@worker_shutdown.connect
def _stop_reaper(**_: object) -> None:
    _reaper_stop.set()
