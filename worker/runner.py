"""Run one job: the part shared by the Celery task and the embedded job process.

    lock -> start attempt -> heartbeat thread -> pipeline (resumes) -> terminal state

- The job lock (TTL = ``stale_after_s``, refreshed by the heartbeat) means a re-delivered
  or re-queued task never runs a job that a live worker is running.
- The heartbeat thread keeps ``heartbeat_at`` fresh even while a stage blocks for a long
  time between two ``ctx.step`` calls (loading a model, one slow batch).
- ``JobReporter`` is the ``RunContext`` of a job: progress writes throttled to one per
  ``progress_interval_s`` (plus every stage change), cancellation read from the record
  it just wrote or the heartbeat just read, so checking costs no extra round trip.
- A re-run resumes: ``run_pipeline`` skips every stage whose directory is complete.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Self

from contracts.config import PipelineConfig
from contracts.errors import (
    AttemptLost,
    Cancelled,
    JobTimeout,
    LugpiError,
    WorkerStopping,
)
from contracts.jobs import STAGE_ORDER, JobRecord, JobState, Progress, Stage
from jobs.lifecycle import (
    beat,
    finish_attempt,
    overall_fraction,
    release_attempt,
    report_progress,
    start_attempt,
)
from jobs.store import JobStore, JobStoreUnavailable
from training.progress import RunContext
from worker.settings import WorkerSettings

log = logging.getLogger(__name__)

# Hands generation shards to other workers: (job_id, shard index). None: no fan-out.
FanOut = Callable[[str, int], None]
# Hands a job back to the workers (sends its task again). None: the store is the queue.
Requeue = Callable[[str], None]

# Set when this process is asked to stop (worker warm shutdown, SIGTERM of a job process):
# the running job stops at its next step and goes back to the queue.
STOPPING = threading.Event()


class JobReporter:
    """The ``RunContext`` callbacks of one job attempt."""

    def __init__(
        self,
        store: JobStore,
        job_id: str,
        attempt: int,
        *,
        min_interval: float,
        deadline: float,
        lost: threading.Event,
    ) -> None:
        self.store, self.job_id, self.attempt = store, job_id, attempt
        self._min_interval = min_interval
        self._deadline = deadline
        self._lost = lost
        self._stage: Stage | None = None
        self._stage_t0 = time.monotonic()
        self._last_write = 0.0
        self._cancel = False
        self._mutex = threading.Lock()  # shard threads of the same job report too

    def context(self) -> RunContext:
        return RunContext(report=self.report, cancel_requested=self.cancel_requested)

    def seen(self, record: JobRecord) -> None:
        """Take the cancel flag from a record read elsewhere (the heartbeat)."""
        self._cancel = self._cancel or record.cancel_requested

    def report(self, stage: Stage, done: int, total: int, message: str) -> None:
        if self._lost.is_set():
            raise AttemptLost(f"job {self.job_id}: attempt {self.attempt} lost its lock")
        if STOPPING.is_set():
            raise WorkerStopping(f"worker shut down during {stage.value}")
        if time.time() > self._deadline:
            raise JobTimeout(f"job ran longer than its time limit; stopped during {stage.value}")
        with self._mutex:
            now = time.monotonic()
            finished = None
            if self._stage is not None and STAGE_ORDER.index(stage) < STAGE_ORDER.index(
                self._stage
            ):
                return  # a resumed run re-reports the stages it skips: never go backwards
            if stage != self._stage:
                finished = self.stage_time(now)
                self._stage, self._stage_t0 = stage, now
            elif now - self._last_write < self._min_interval and done < total:
                return
            progress = Progress(
                stage=stage,
                done=done,
                total=total,
                fraction=overall_fraction(stage, done, total),
                message=message,
            )
            try:
                self.seen(
                    report_progress(self.store, self.job_id, self.attempt, progress, finished)
                )
                self._last_write = now
            except JobStoreUnavailable as e:  # a blip must not kill hours of training
                log.warning("job %s: progress not written: %s", self.job_id, e)

    def stage_time(self, now: float | None = None) -> tuple[str, float] | None:
        """(stage, seconds) of the stage in progress, for the record's ``stage_seconds``."""
        if self._stage is None:
            return None
        return self._stage.value, (now or time.monotonic()) - self._stage_t0

    def cancel_requested(self) -> bool:
        return self._cancel


class LockKeeper:
    """Refresh a lock every ``interval`` s in a daemon thread while a block runs; release it
    at the end unless ``release`` is False (the caller releases it, e.g. after handing on)."""

    def __init__(
        self,
        store: JobStore,
        name: str,
        owner: str,
        settings: WorkerSettings,
        *,
        release: bool = True,
    ) -> None:
        self.store, self.name, self.owner = store, name, owner
        self.interval, self.ttl = settings.heartbeat_s, settings.stale_after_s
        self.release = release
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lock-{name}", daemon=True)

    def after_refresh(self) -> None:
        """Called after each successful refresh; may raise AttemptLost."""

    def on_lost(self, why: str) -> None:
        log.error("lock %s lost: %s", self.name, why)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if not self.store.refresh_lock(self.name, self.owner, self.ttl):
                    self.on_lost("held by another owner or expired")
                    return
                self.after_refresh()
            except AttemptLost as e:
                self.on_lost(str(e))
                return
            except JobStoreUnavailable as e:
                # Keep trying: if the outage outlasts the TTL, the refresh fails and we stop.
                log.warning("lock %s not refreshed: %s", self.name, e)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)
        if self.release:
            with contextlib.suppress(JobStoreUnavailable):  # else it expires by itself
                self.store.release_lock(self.name, self.owner)


class Heartbeat(LockKeeper):
    """Keeps the job lock and the record's ``heartbeat_at`` fresh while an attempt runs.

    Sets ``lost`` when the lock or the record is no longer this attempt's (the job was
    reaped and handed to another worker): the attempt then stops at its next step.
    """

    def __init__(
        self,
        store: JobStore,
        job_id: str,
        attempt: int,
        owner: str,
        settings: WorkerSettings,
        reporter: JobReporter,
    ) -> None:
        super().__init__(store, job_id, owner, settings, release=False)  # run_job releases
        self.job_id, self.attempt, self.reporter = job_id, attempt, reporter
        self.lost = reporter._lost

    def after_refresh(self) -> None:
        self.reporter.seen(beat(self.store, self.job_id, self.attempt))

    def on_lost(self, why: str) -> None:
        log.error("job %s: %s; stopping this attempt", self.job_id, why)
        self.lost.set()


def lock_owner(worker: str) -> str:
    return f"{worker}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def run_job(
    store: JobStore,
    job_id: str,
    settings: WorkerSettings,
    *,
    worker: str,
    fan_out: FanOut | None = None,
    requeue: Requeue | None = None,
) -> JobState | None:
    """Run (or resume) the job to a terminal state. Returns that state, or None when this
    delivery did nothing (another live worker holds the job, or it is already finished) or
    handed the job back because this worker is stopping."""
    owner = lock_owner(worker)
    if not store.acquire_lock(job_id, owner, settings.stale_after_s):
        log.info("job %s: held by %s; dropping this delivery", job_id, store.lock_holder(job_id))
        return None
    try:
        record = start_attempt(store, job_id, worker)
        if record is None:
            log.info("job %s: %s; nothing to run", job_id, store.get(job_id).state.value)
            return None
        return _run_attempt(store, record, owner, settings, fan_out, requeue)
    finally:
        try:
            store.release_lock(job_id, owner)
        except JobStoreUnavailable as e:
            log.warning("job %s: lock not released (expires by itself): %s", job_id, e)


def _run_attempt(
    store: JobStore,
    record: JobRecord,
    owner: str,
    settings: WorkerSettings,
    fan_out: FanOut | None,
    requeue: Requeue | None,
) -> JobState | None:
    from worker.execute import execute_pipeline  # torch-heavy imports stay in the job process

    job_id, attempt = record.job_id, record.attempts
    started = record.started_at.timestamp() if record.started_at else time.time()
    reporter = JobReporter(
        store,
        job_id,
        attempt,
        min_interval=settings.progress_interval_s,
        deadline=started + settings.job_timeout_s,
        lost=threading.Event(),
    )

    def finish(
        state: JobState,
        error: str | None = None,
        metrics: dict[str, object] | None = None,
        published: tuple[str, str] | None = None,
        message: str | None = None,
    ) -> JobState | None:
        try:
            finish_attempt(
                store,
                job_id,
                attempt,
                state,
                error=error,
                metrics=metrics,
                published=published,
                finished_stage=reporter.stage_time(),
                message=message,
            )
        except AttemptLost as e:  # reaped while finishing: the new owner decides
            log.error("job %s: %s", job_id, e)
            return None
        log.info("job %s: %s", job_id, state.value)
        return state

    with Heartbeat(store, job_id, attempt, owner, settings, reporter):
        try:
            cfg = PipelineConfig.model_validate(record.config)
            result = execute_pipeline(
                cfg, job_id, settings, reporter, fan_out, worker=record.worker or ""
            )
        except AttemptLost as e:
            log.error("job %s: %s; leaving it to its new owner", job_id, e)
            return None
        except WorkerStopping as e:
            _hand_back(store, job_id, attempt, owner, str(e), reporter, requeue)
            return None
        except Cancelled as e:
            log.info("job %s: %s", job_id, e)
            return finish(JobState.CANCELLED, message=str(e))
        except (JobTimeout, LugpiError) as e:
            log.warning("job %s failed: %s", job_id, e)
            return finish(JobState.FAILED, error=str(e), message="failed")
        except Exception as e:
            log.exception("job %s crashed", job_id)
            return finish(JobState.FAILED, error=f"internal error: {type(e).__name__}: {e}")
        return finish(JobState.SUCCEEDED, metrics=result.metrics, published=result.published)


def _hand_back(
    store: JobStore,
    job_id: str,
    attempt: int,
    owner: str,
    why: str,
    reporter: JobReporter,
    requeue: Requeue | None,
) -> None:
    try:
        rec = release_attempt(store, job_id, attempt, why, reporter.stage_time())
        # Unlock before sending: a worker that got the new message while this one still
        # held the lock would drop it, and the job would wait queued with no message.
        store.release_lock(job_id, owner)
    except (AttemptLost, JobStoreUnavailable) as e:  # the reaper will take care of it
        log.error("job %s: not handed back: %s", job_id, e)
        return
    log.info("job %s: %s; %s", job_id, why, rec.state.value)
    if rec.state is JobState.QUEUED and requeue is not None:
        requeue(job_id)
