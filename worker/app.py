"""The Celery app of the GPU workers: ``celery -A worker.app worker`` or ``lugpi-worker``.

Redis is broker and result backend (``LUGPI_REDIS_URL``). Long tasks shape the config:

- ``task_acks_late`` + ``task_reject_on_worker_lost``: a job's message is acknowledged
  when the job ends, so a worker that dies mid-job does not lose it.
- Redis redelivers an unacknowledged message after ``visibility_timeout``; it is set
  beyond the job time limit so a healthy long job is not handed to a second worker.
  A dead worker's job does not wait that long: the reaper (heartbeat + lock, see
  jobs/lifecycle.py) re-queues it within ``stale_after_s``, and a late redelivery is
  harmless (the job is finished, or locked by the worker that resumed it).
- ``worker_prefetch_multiplier=1``: a worker holds only the message it runs, so the
  other workers take the queued jobs and generation shards.
- Task events on, so Flower (or ``celery events``) can watch the workers.
"""

from __future__ import annotations

import logging
import threading
import time

from celery import Celery
from celery.signals import worker_ready, worker_shutdown, worker_shutting_down

from jobs.lifecycle import (
    QUEUE_JOBS,
    QUEUE_SHARDS,
    QUEUE_TEACHER,
    TASK_CLASSIFY_TEACHER,
    TASK_GENERATE_SHARD,
    TASK_RUN_JOB,
)
from worker.settings import WorkerSettings

log = logging.getLogger(__name__)

# Without LUGPI_REDIS_URL a worker has nothing to connect to; this default only lets the
# module import (tests, `--help`); `lugpi-worker` refuses to start without a URL.
_FALLBACK_URL = "redis://127.0.0.1:6379/0"


def create_app(settings: WorkerSettings) -> Celery:
    url = settings.redis_url or _FALLBACK_URL
    app = Celery("lugpi", broker=url, backend=url, include=["worker.tasks"])
    transport = {"visibility_timeout": settings.visibility_timeout_s}
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        broker_connection_retry_on_startup=True,
        # A broker blip must not abort hours of training; the job lock prevents doubles.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_track_started=True,
        result_expires=3600,
        task_default_queue=QUEUE_JOBS,
        task_routes={
            TASK_RUN_JOB: {"queue": QUEUE_JOBS},
            TASK_GENERATE_SHARD: {"queue": QUEUE_SHARDS},
            TASK_CLASSIFY_TEACHER: {"queue": QUEUE_TEACHER},
        },
        worker_hijack_root_logger=False,
    )
    return app


settings = WorkerSettings()
app = create_app(settings)

_reaper_stop = threading.Event()


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


_preloading: threading.Thread | None = None


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
    from worker.tasks import reap_once

    def loop() -> None:
        while True:
            reap_once()
            if _reaper_stop.wait(settings.stale_after_s / 2):
                return

    threading.Thread(target=loop, name="lugpi-reaper", daemon=True).start()


@worker_shutting_down.connect
def _stop_running_job(**_: object) -> None:
    """Warm shutdown (SIGTERM, a deploy): the running job stops at its next step and goes
    back to the queue for another worker, instead of making the shutdown wait for hours."""
    from worker.runner import STOPPING

    STOPPING.set()


@worker_shutdown.connect
def _stop_reaper(**_: object) -> None:
    _reaper_stop.set()
