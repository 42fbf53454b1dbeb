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

Only the app's configuration lives here; the tasks and the worker's start/stop hooks are
in worker/tasks.py (which the app includes), so this module imports nothing of them.
"""

from __future__ import annotations

from celery import Celery

from jobs.lifecycle import (
    QUEUE_JOBS,
    QUEUE_SHARDS,
    QUEUE_TEACHER,
    TASK_CLASSIFY_TEACHER,
    TASK_GENERATE_SHARD,
    TASK_RUN_JOB,
)
from worker.settings import WorkerSettings

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
