"""How the API hands jobs to workers, without importing torch or any worker code.

One interface, two implementations, picked by ``LUGPI_REDIS_URL``:

- ``CeleryJobQueue`` (Redis configured): job records in Redis; ``send_task`` *by name*
  to the Celery workers, which may run on other machines with GPUs.
- ``LocalProcessJobQueue`` (the embedded default: no Redis, no Docker, no GPU): records
  in a SQLite file under ``artifacts_dir``, and the *store is the queue*: a thread in the
  API runs the oldest queued job as a child process (``python -m worker.local <job_id>``),
  one at a time. A child process, not a thread, because the API must not import torch
  (a separate interpreter keeps the serving process small and its event loop free of
  training's GIL pressure), a crashed or killed job cannot take the API down, and
  cancellation or shutdown can always end it. One at a time, because a job already uses
  every core. Queued jobs survive an API restart: they are rows, not in-memory items.

Both run the reaper periodically: a running job whose worker died is re-queued (and
resumed from its finished stages) or failed, never left "running".
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from api.settings import ApiSettings
from contracts.errors import ConfigError, JobQueueUnavailable, TeacherUnavailable
from contracts.jobs import JobRecord, JobState
from contracts.layout import RunLayout
from jobs.artifacts import prune_job_artifacts
from jobs.lifecycle import (
    QUEUE_JOBS,
    QUEUE_TEACHER,
    TASK_CLASSIFY_TEACHER,
    TASK_RUN_JOB,
    abandon_attempt,
    fail_queued,
    reap_queued_jobs,
    reap_stale_jobs,
)
from jobs.store import (
    JobStore,
    JobStoreUnavailable,
    RedisJobStore,
    SqliteJobStore,
    redact_url,
)

log = logging.getLogger("lugpi.api.jobs")


class RunnerStatus(BaseModel):
    """Whether this API's background thread (the embedded runner, or the reaper in Celery
    mode) is running; GET /jobs and /readyz carry it."""

    mode: Literal["embedded", "celery"]
    alive: bool
    detail: str = Field(description="What the thread is doing, or why it is not running.")


class JobQueue(ABC):
    MODE: Literal["embedded", "celery"]

    def __init__(self, store: JobStore, settings: ApiSettings) -> None:
        self.store = store
        self.settings = settings
        # Jobs whose published model the API already tried to load (routes/jobs.py).
        self.reloaded: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # The last error the background loop survived, until an iteration succeeds.
        self.last_error: str | None = None
        self._pruned_at: float | None = None  # monotonic time of the last artifacts prune

    def status(self) -> RunnerStatus:
        thread = self._thread
        if thread is not None and thread.is_alive():
            detail = "running" if self.last_error is None else f"retrying: {self.last_error}"
            return RunnerStatus(mode=self.MODE, alive=True, detail=detail)
        why = "not started" if thread is None else "its thread ended; restart the API"
        if self.last_error:
            why += f" (last error: {self.last_error})"
        detail = f"the job runner is not running: {why}"
        return RunnerStatus(mode=self.MODE, alive=False, detail=detail)

    @abstractmethod
    def submit(self, job_id: str) -> None:
        """Hand a queued job to the workers."""

    @abstractmethod
    def classify_teacher(
        self, payload: dict[str, Any], timeout: float, cancel: threading.Event | None = None
    ) -> dict[str, Any]:
        """Run the teacher on a worker; ``TeacherUnavailable`` if none answers in time, or
        once ``cancel`` is set (the caller gave up)."""

    def reap(self) -> list[JobRecord]:
        return reap_stale_jobs(
            self.store,
            stale_after=self.settings.stale_after_s,
            max_attempts=self.settings.max_attempts,
            requeue=self._requeue,
        )

    def _requeue(self, job_id: str) -> None:
        self.submit(job_id)

    # Pruning old jobs' artifacts walks every finished job: hourly is often enough.
    PRUNE_EVERY_S = 3600.0

    def _prune_artifacts(self) -> None:
        keep = self.settings.job_artifacts_keep_days
        now = time.monotonic()
        if keep is None or (
            self._pruned_at is not None and now - self._pruned_at < self.PRUNE_EVERY_S
        ):
            return
        self._pruned_at = now
        pruned = prune_job_artifacts(self.store, Path(self.settings.artifacts_dir), keep)
        if pruned:
            log.info(
                "pruned the artifacts of %d job(s) finished over %g days ago", len(pruned), keep
            )

    def start(self) -> None:
        """Start the background thread (reaper; the embedded queue's runner)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="lugpi-jobqueue", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        self._thread_body(self._reap_only)

    def _reap_only(self) -> None:
        self._stop.wait(self.settings.stale_after_s / 2)
        if not self._stop.is_set():
            self._reap_quietly()

    def _thread_body(self, iteration: Callable[[], None]) -> None:
        """Run ``iteration`` until stopped, surviving any exception: a dead thread would
        leave every queued job waiting forever while the API still accepted new ones."""
        pause = min(5.0, self.settings.stale_after_s / 2)
        while not self._stop.is_set():
            try:
                iteration()
                self.last_error = None
            except Exception as e:
                self.last_error = f"{type(e).__name__}: {e}"
                log.exception("job runner: %s; retrying in %.0f s", self.last_error, pause)
                self._stop.wait(pause)
            except BaseException as e:  # the thread ends; status() says so
                self.last_error = f"{type(e).__name__}: {e}"
                log.critical("job runner stopped: %s", self.last_error)
                raise

    def _reap_quietly(self) -> None:
        try:
            self.reap()
            self._prune_artifacts()
        except JobStoreUnavailable as e:  # Redis down: /jobs says so; nothing to do here
            log.debug("reaper: %s", e)
        except Exception:
            log.exception("reaper failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.store.close()


class CeleryJobQueue(JobQueue):
    MODE = "celery"

    def __init__(self, settings: ApiSettings) -> None:
        assert settings.redis_url
        try:
            import redis  # noqa: F401  (RedisJobStore's; checked here to say it once)
            from celery import Celery  # only to send by name: no task is imported
        except ImportError as e:
            raise ConfigError(
                f"LUGPI_REDIS_URL is set but {e.name or 'celery'} is not installed: "
                "pip install 'lugpi[api,queue]' (or unset LUGPI_REDIS_URL for the embedded mode)"
            ) from e

        super().__init__(RedisJobStore(settings.redis_url), settings)
        url = settings.redis_url
        self.celery = Celery("lugpi-api", broker=url, backend=url, set_as_current=False)
        self.celery.conf.update(
            task_serializer="json",
            result_serializer="json",
            accept_content=["json"],
            # With Redis down, fail in about a second (503) instead of retrying for long.
            broker_connection_timeout=2,
            broker_connection_retry=False,
            broker_transport_options={"socket_connect_timeout": 2, "max_retries": 1},
            redis_socket_connect_timeout=2,
            redis_socket_timeout=5,
            task_publish_retry_policy={"max_retries": 1, "interval_start": 0.2},
        )

    def reap(self) -> list[JobRecord]:
        """Running jobs whose worker died, and queued jobs no worker took (a lost message)."""
        return super().reap() + reap_queued_jobs(
            self.store,
            resend_after=self.settings.queued_resend_s,
            fail_after=self.settings.queued_timeout_s,
            requeue=self.submit,
        )

    def submit(self, job_id: str) -> None:
        try:
            self.celery.send_task(TASK_RUN_JOB, args=[job_id], queue=QUEUE_JOBS)
        except Exception as e:  # kombu/redis errors of every kind mean "broker unreachable"
            raise JobQueueUnavailable(
                f"broker (Redis at {redact_url(self.settings.redis_url or '')}) unreachable: {e}"
            ) from e

    def classify_teacher(
        self, payload: dict[str, Any], timeout: float, cancel: threading.Event | None = None
    ) -> dict[str, Any]:
        from celery.exceptions import TimeoutError as CeleryTimeout

        try:
            # expires: a worker that comes up later drops the stale request unanswered.
            # sent_at: a worker drops a request that waited past its own teacher_timeout_s.
            stamped = {**payload, "sent_at": time.time()}
            result = self.celery.send_task(
                TASK_CLASSIFY_TEACHER, args=[stamped], queue=QUEUE_TEACHER, expires=timeout
            )
        except Exception as e:
            raise TeacherUnavailable(f"teacher unavailable: broker unreachable: {e}") from e
        deadline = time.monotonic() + timeout
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (cancel is not None and cancel.is_set()):
                    # The API gives up: a worker that has not started it drops it.
                    result.revoke()
                    raise TeacherUnavailable(
                        f"teacher unavailable: no worker answered within {timeout:.0f} s on "
                        f"queue {QUEUE_TEACHER!r}; start one: `lugpi-worker --queues "
                        f"{QUEUE_TEACHER}`"
                    )
                try:
                    answer: dict[str, Any] = result.get(timeout=min(remaining, 0.5))
                    return answer
                except CeleryTimeout:
                    continue
        finally:
            result.forget()


class LocalProcessJobQueue(JobQueue):
    """Embedded mode: runs queued jobs one at a time as ``python -m worker.local <id>``."""

    MODE = "embedded"

    def __init__(self, settings: ApiSettings) -> None:
        store = SqliteJobStore(Path(settings.artifacts_dir) / SqliteJobStore.FILE_NAME)
        super().__init__(store, settings)
        self._wake = threading.Event()
        self._child: subprocess.Popen[bytes] | None = None

    def submit(self, job_id: str) -> None:
        self._wake.set()  # the row is already queued; the runner picks it up

    def _requeue(self, job_id: str) -> None:
        self._wake.set()

    def classify_teacher(
        self, payload: dict[str, Any], timeout: float, cancel: threading.Event | None = None
    ) -> dict[str, Any]:
        raise TeacherUnavailable(
            "teacher unavailable: the teacher runs on a worker: set LUGPI_REDIS_URL and start "
            "`lugpi-worker` (embedded mode runs training jobs only)"
        )

    def _loop(self) -> None:
        self._thread_body(self._run_next)

    def _run_next(self) -> None:
        # Jobs left "running" by a previous API process are reaped here first.
        self._reap_quietly()
        queued = self.store.ids_in_state(JobState.QUEUED)
        if not queued:
            self._wake.wait(self.settings.stale_after_s / 2)
            self._wake.clear()
            return
        self._run_child(queued[0])

    def child_env(self) -> dict[str, str]:
        """The job process's environment: the paths it needs, and no API keys."""
        s = self.settings
        env = {k: v for k, v in os.environ.items() if not k.startswith("LUGPI_")}
        env.update(s.shared_env())
        env.update(
            LUGPI_HEARTBEAT_S=str(min(5.0, s.stale_after_s / 4)),
            # The API ends a job process within 20 s of asking it to stop (_end_child).
            LUGPI_STOP_GRACE_S="15",
        )
        # The checkout's root, so `-m worker.local` imports even when not installed.
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        return env

    def _run_child(self, job_id: str) -> None:
        cmd = [sys.executable, "-m", "worker.local", job_id]
        # The job's own log, beside its stage directories.
        log_file = RunLayout.for_job(Path(self.settings.artifacts_dir), job_id).job_log
        log_file.parent.mkdir(parents=True, exist_ok=True)
        log.info("running job %s: %s (log: %s)", job_id, " ".join(cmd), log_file)
        attempts_before = self.store.get(job_id).attempts
        with log_file.open("ab") as out:
            child = subprocess.Popen(
                cmd, env=self.child_env(), stdout=out, stderr=subprocess.STDOUT
            )
        self._child = child
        while child.poll() is None:
            if self._stop.wait(0.5):
                self._end_child(child)
                break
        self._child = None
        if self._stop.is_set():
            return  # the job stays running; the next API start reaps and resumes it
        try:
            self.after_child(job_id, child.pid, child.returncode, attempts_before, log_file)
        except Exception:
            log.exception("job %s: could not record the end of its process", job_id)

    def after_child(
        self, job_id: str, pid: int, code: int, attempts_before: int, log_file: Path
    ) -> None:
        """Record what the job process that just exited left undone. Another process (a
        second API on the same artifacts directory, during a restart overlap) may run the
        same job meanwhile: a running record is only this child's when the attempt is the
        one it started and the lock is its own or gone; anyone else's is left alone."""
        rec = self.store.get(job_id)
        if rec.state is JobState.QUEUED and code != 0 and rec.attempts == attempts_before:
            # It crashed before starting the job (broken install?): retrying will not help.
            fail_queued(
                self.store,
                job_id,
                f"job process exited with code {code} before the job started; see {log_file}",
            )
        elif rec.state is JobState.QUEUED:
            # The child ran nothing (another process holds the job's lock): do not spin.
            self._stop.wait(self.settings.stale_after_s / 4)
        elif rec.state is JobState.RUNNING:
            holder = self.store.lock_holder(job_id)
            ours = holder is None or _lock_pid(holder) == pid
            if not ours or rec.attempts != attempts_before + 1:
                return  # another process runs it; its own heartbeat speaks for it
            # The child died without finishing (killed, out of memory): no need to wait
            # for its heartbeat to go stale; free its lock and hand the job on now.
            if holder is not None:
                self.store.release_lock(job_id, holder)
            abandon_attempt(
                self.store,
                job_id,
                f"job process exited with code {code}",
                max_attempts=self.settings.max_attempts,
                attempt=rec.attempts,
            )

    @staticmethod
    def _end_child(child: subprocess.Popen[bytes]) -> None:
        child.send_signal(signal.SIGTERM)  # the job process releases its lock and exits
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        super().stop()


def _lock_pid(owner: str) -> int | None:
    """The process id in a job lock's owner (``<worker>:<pid>:<random>``, worker/locks.py)."""
    parts = owner.rsplit(":", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def open_jobqueue(settings: ApiSettings) -> JobQueue:
    if settings.redis_url:
        return CeleryJobQueue(settings)
    return LocalProcessJobQueue(settings)
