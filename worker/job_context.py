"""What the code running one job attempt sees: its reporter, the stop flag, fan-out.

- ``JobReporter`` is the ``RunContext`` of an attempt: progress writes throttled to one
  per ``progress_interval_s`` (plus every stage change), cancellation read from the record
  it just wrote, so checking costs no extra round trip.
- ``STOPPING`` is set when this process is asked to stop (a worker's warm shutdown, a
  SIGTERM): the attempt stops at its next step and the job goes back to the queue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from contracts.errors import JobTimeout, WorkerStopping
from contracts.jobs import STAGE_ORDER, JobRecord, Progress, Stage
from jobs.lifecycle import ProgressMeter, enter_publish, report_progress
from jobs.store import JobStore, JobStoreUnavailable
from training.progress import RunContext

log = logging.getLogger(__name__)

# Hands generation shards to other workers: (job id, shard index, its ShardKind).
FanOut = Callable[[str, int, str], None]

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
        commit_retry_s: float = 60.0,
        started_at: float | None = None,
    ) -> None:
        self.store, self.job_id, self.attempt = store, job_id, attempt
        self._commit_retry_s = commit_retry_s
        self._publishing = False
        self._min_interval = min_interval
        self._deadline = deadline
        self._stage: Stage | None = None
        self._stage_t0 = time.monotonic()
        self._last_write = 0.0
        self._cancel = False
        self._mutex = threading.Lock()  # shard threads of the same job report too
        # started_at: when the job first started (wall clock), so elapsed spans attempts.
        before = time.time() - started_at if started_at is not None else 0.0
        self._meter = ProgressMeter(elapsed_before=before)
        self._ctx = RunContext(report=self.report, cancel_requested=self.cancel_requested)

    def context(self) -> RunContext:
        return self._ctx

    def seen(self, record: JobRecord) -> None:
        """Take the cancel flag from a record read elsewhere."""
        self._cancel = self._cancel or record.cancel_requested

    def report(self, stage: Stage, done: int, total: int, message: str) -> None:
        if STOPPING.is_set():
            raise WorkerStopping(f"worker shut down during {stage.value}")
        if time.time() > self._deadline:
            raise JobTimeout(f"job ran longer than its time limit; stopped during {stage.value}")
        if stage is Stage.PUBLISH and not self._publishing:
            self._enter_publish()
        with self._mutex:
            now = time.monotonic()
            finished = None
            if self._stage is not None and STAGE_ORDER.index(stage) < STAGE_ORDER.index(
                self._stage
            ):
                return  # a resumed run re-reports the stages it skips: never go backwards
            # Every report reaches the meter (it sees each count start), written or not.
            estimate = self._meter.update(stage, done, total, self._ctx.stage_part)
            if stage != self._stage:
                finished = self.stage_time(now)
                self._stage, self._stage_t0 = stage, now
            elif now - self._last_write < self._min_interval and done < total:
                return
            progress = Progress(
                stage=stage,
                done=done,
                total=total,
                fraction=estimate.fraction,
                message=message,
                elapsed_s=estimate.elapsed_s,
                eta_s=estimate.eta_s,
            )
            try:
                self.seen(
                    report_progress(self.store, self.job_id, self.attempt, progress, finished)
                )
                self._last_write = now
            except JobStoreUnavailable as e:  # a blip must not kill hours of training
                log.warning("job %s: progress not written: %s", self.job_id, e)

    def _enter_publish(self) -> None:
        """The last cancel point: a pending cancel stops the job here (``ctx.step`` raises
        ``Cancelled``), else the record says "publishing" and refuses cancels from now on.
        Unlike a progress write this must reach the store: publishing without it could
        end a job the API had told was cancelled. So it is retried, then fails the job."""
        give_up = time.monotonic() + self._commit_retry_s
        while True:
            try:
                rec = enter_publish(self.store, self.job_id, self.attempt)
                break
            except JobStoreUnavailable as e:
                if time.monotonic() > give_up:
                    raise
                log.warning("job %s: cannot enter publishing yet: %s", self.job_id, e)
                time.sleep(1.0)
        self.seen(rec)
        self._publishing = rec.publishing

    def stage_time(self, now: float | None = None) -> tuple[str, float] | None:
        """(stage, seconds) of the stage in progress, for the record's ``stage_seconds``."""
        if self._stage is None:
            return None
        return self._stage.value, (now or time.monotonic()) - self._stage_t0

    def cancel_requested(self) -> bool:
        return self._cancel
