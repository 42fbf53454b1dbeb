"""Job lifecycle transitions, each one atomic on a ``JobStore``.

    queued -> running(stage, progress) -> succeeded | failed(error) | cancelled

Who calls what: the API creates jobs and requests cancellation; the process running a
job starts an *attempt*, beats, reports progress and finishes it; a reaper (in every
worker and in the API) turns "running" jobs whose worker died into queued (re-queued,
resumed from the finished stages) or failed ("worker lost"). Terminal states are final:
no transition leaves them, so a late or duplicate task can never resurrect a job.

A running attempt is identified by ``attempts``: a worker only writes to the record while
the record is still running *its* attempt, so a worker that was presumed dead (and whose
job was handed to another) learns so at its next heartbeat and stops. Torch-free.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from contracts.errors import AttemptLost
from contracts.jobs import STAGE_ORDER, STAGE_WEIGHTS, JobRecord, JobState, Progress, Stage
from jobs.store import JobStore, now_utc

log = logging.getLogger(__name__)

# Celery task and queue names: the API sends tasks by these names (never importing the
# worker), the worker registers its tasks under them.
TASK_RUN_JOB = "lugpi.run_job"
TASK_GENERATE_SHARD = "lugpi.generate_shard"
TASK_CLASSIFY_TEACHER = "lugpi.classify_teacher"
QUEUE_JOBS = "lugpi.jobs"
QUEUE_SHARDS = "lugpi.shards"
QUEUE_TEACHER = "lugpi.teacher"


def overall_fraction(stage: Stage, done: int, total: int) -> float:
    """Progress over all stages (each weighing its ``STAGE_WEIGHTS``), ``done``/``total``
    of the way through ``stage``."""
    return _overall(stage, min(1.0, done / total) if total > 0 else 0.0)


def _overall(stage: Stage, within: float) -> float:
    before = sum(STAGE_WEIGHTS[s] for s in STAGE_ORDER[: STAGE_ORDER.index(stage)])
    return min(1.0, (before + STAGE_WEIGHTS[stage] * within) / sum(STAGE_WEIGHTS.values()))


@dataclass(frozen=True)
class ProgressEstimate:
    fraction: float
    elapsed_s: float
    eta_s: float | None


class ProgressMeter:
    """The overall fraction, elapsed time and ETA of one attempt, from the counts the
    stages report (``RunContext.step``).

    The fraction never decreases. A stage may count several things in turn (the teacher:
    image tokens, then training steps; distillation: teacher outputs per split, then steps):
    a new count (another total, or ``done`` going back) continues from where the stage is,
    over what is left of its ``part`` (the slice of the stage the code declared with
    ``RunContext.part``; the whole stage by default). A resumed run re-reports the stages
    it skips: a stage before the current one changes nothing.
    """

    # ETA only once this share of the job and this many seconds have passed in the attempt.
    MIN_PROGRESS = 0.01
    MIN_SECONDS = 1.0

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, elapsed_before: float = 0.0
    ) -> None:
        self._clock = clock
        self._t0 = clock()
        self._elapsed_before = max(0.0, elapsed_before)
        self._stage: Stage | None = None
        self._within = 0.0  # how far through the current stage, 0..1
        self._count: tuple[tuple[float, float], int] | None = None  # (part, total) counted
        self._count_from = 0.0  # where in the stage the current count started
        self._last_done = 0
        self._fraction = 0.0
        self._first: tuple[float, float] | None = None  # (time, fraction) of the 1st report

    def update(
        self, stage: Stage, done: int, total: int, part: tuple[float, float] = (0.0, 1.0)
    ) -> ProgressEstimate:
        now = self._clock()
        if self._stage is None or STAGE_ORDER.index(stage) >= STAGE_ORDER.index(self._stage):
            if stage != self._stage:
                self._stage, self._within, self._count = stage, 0.0, None
            lo, hi = part
            if self._count != (part, total) or done < self._last_done:
                self._count = (part, total)
                self._count_from = min(hi, max(lo, self._within))
            self._last_done = done
            x = min(1.0, done / total) if total > 0 else 0.0
            within = self._count_from + (hi - self._count_from) * x
            self._within = max(self._within, within)
            self._fraction = max(self._fraction, _overall(stage, self._within))
        if self._first is None:
            self._first = (now, self._fraction)
        return self.estimate(now)

    def estimate(self, now: float | None = None) -> ProgressEstimate:
        now = self._clock() if now is None else now
        elapsed = self._elapsed_before + (now - self._t0)
        eta = None
        if self._first is not None:
            t1, f1 = self._first
            gained, spent = self._fraction - f1, now - t1
            if gained >= self.MIN_PROGRESS and spent >= self.MIN_SECONDS:
                eta = spent * (1.0 - self._fraction) / gained
        return ProgressEstimate(self._fraction, elapsed, eta)


def live_timing(record: JobRecord, now: datetime | None = None) -> JobRecord:
    """``record`` with its progress's elapsed time and ETA brought up to ``now`` (they were
    written at the last progress report, up to a few seconds ago)."""
    p = record.progress
    if p is None or record.started_at is None:
        return record
    now = now or now_utc()
    end = record.finished_at if record.state.terminal and record.finished_at else now
    elapsed = max(0.0, (end - record.started_at).total_seconds())
    eta = p.eta_s
    if record.state.terminal:
        eta = 0.0 if record.state is JobState.SUCCEEDED else None
    elif eta is not None and record.updated_at is not None:
        eta = max(0.0, eta - max(0.0, (now - record.updated_at).total_seconds()))
    progress = p.model_copy(update={"elapsed_s": elapsed, "eta_s": eta})
    return record.model_copy(update={"progress": progress})


def request_cancel(store: JobStore, job_id: str) -> JobRecord:
    """A queued job becomes cancelled at once (it never starts); a running one is asked
    to stop at its next batch. A terminal job, or one that is already publishing (past its
    last cancel point, see ``enter_publish``), is returned unchanged: the caller tells the
    client it is too late."""

    def mutate(rec: JobRecord) -> JobRecord | None:
        if rec.state is JobState.QUEUED and not rec.publishing:
            rec.state = JobState.CANCELLED
            rec.cancel_requested = True
            rec.finished_at = now_utc()
            return rec
        if rec.state is JobState.RUNNING and not rec.cancel_requested and not rec.publishing:
            rec.cancel_requested = True
            return rec
        return None

    return store.update(job_id, mutate)[0]


def start_attempt(store: JobStore, job_id: str, worker: str) -> JobRecord | None:
    """Mark the job running for a new attempt; None if it must not run (terminal, or a
    queued job that was cancelled meanwhile). The caller holds the job's lock, so a
    record that is already "running" belongs to a dead worker: resume it."""

    def mutate(rec: JobRecord) -> JobRecord | None:
        if rec.state.terminal:
            return None
        if rec.cancel_requested:
            rec.state = JobState.CANCELLED
            rec.finished_at = now_utc()
            return rec
        rec.state = JobState.RUNNING
        rec.attempts += 1
        rec.started_at = rec.started_at or now_utc()
        rec.heartbeat_at = now_utc()
        rec.worker = worker
        rec.error = None
        return rec

    rec, _ = store.update(job_id, mutate)
    return rec if rec.state is JobState.RUNNING else None


def enter_publish(store: JobStore, job_id: str, attempt: int) -> JobRecord:
    """The attempt reached its last cancel point: in one transaction, either a cancel is
    pending (returned record has ``cancel_requested``; the caller stops, publishing
    nothing) or the job is marked ``publishing`` and no cancel is accepted any more.
    ``AttemptLost`` if the job is no longer this attempt's."""

    def mutate(rec: JobRecord) -> JobRecord | None:
        if not _owned(rec, attempt) or rec.cancel_requested or rec.publishing:
            return None
        rec.publishing = True
        return rec

    rec = store.update(job_id, mutate)[0]
    if not _owned(rec, attempt):
        raise AttemptLost(f"job {job_id} is {rec.state.value} (attempt {rec.attempts})")
    return rec


def fail_queued(store: JobStore, job_id: str, error: str) -> JobRecord:
    """Fail a job that is still queued and cannot start (it could not be handed to the
    workers; its process crashed before it began)."""

    def mutate(rec: JobRecord) -> JobRecord | None:
        if rec.state is not JobState.QUEUED:
            return None
        rec.state, rec.finished_at, rec.error = JobState.FAILED, now_utc(), error
        return rec

    return store.update(job_id, mutate)[0]


def _owned(rec: JobRecord, attempt: int) -> bool:
    return rec.state is JobState.RUNNING and rec.attempts == attempt


def _update_attempt(
    store: JobStore,
    job_id: str,
    attempt: int,
    change: Callable[[JobRecord], None],
    finished_stage: tuple[str, float] | None = None,
) -> JobRecord:
    """Apply ``change`` to the record while it is this attempt's running job, adding the
    seconds of a stage that just ended; ``AttemptLost`` when the job is no longer ours
    (re-queued by the reaper, cancelled, taken by another attempt)."""

    def mutate(rec: JobRecord) -> JobRecord | None:
        if not _owned(rec, attempt):
            return None
        change(rec)
        if finished_stage is not None:
            name, seconds = finished_stage
            rec.stage_seconds[name] = round(rec.stage_seconds.get(name, 0.0) + seconds, 3)
        return rec

    rec, changed = store.update(job_id, mutate)
    if not changed:
        raise AttemptLost(f"job {job_id} is {rec.state.value} (attempt {rec.attempts})")
    return rec


def beat(store: JobStore, job_id: str, attempt: int) -> JobRecord:
    """Refresh the heartbeat; ``AttemptLost`` if the job is no longer this attempt's."""

    def change(rec: JobRecord) -> None:
        rec.heartbeat_at = now_utc()

    return _update_attempt(store, job_id, attempt, change)


def report_progress(
    store: JobStore,
    job_id: str,
    attempt: int,
    progress: Progress,
    finished_stage: tuple[str, float] | None = None,
) -> JobRecord:
    """Write the progress (and the seconds of a stage that just ended); returns the record,
    whose ``cancel_requested`` the caller reads for free."""

    def change(rec: JobRecord) -> None:
        rec.progress = progress
        rec.heartbeat_at = now_utc()

    return _update_attempt(store, job_id, attempt, change, finished_stage)


def finish_attempt(
    store: JobStore,
    job_id: str,
    attempt: int,
    state: JobState,
    *,
    error: str | None = None,
    metrics: dict[str, object] | None = None,
    published: tuple[str, str] | None = None,
    finished_stage: tuple[str, float] | None = None,
    message: str | None = None,
) -> JobRecord:
    """Move this attempt's running job to a terminal state (``message``: the progress
    message to leave, e.g. where a cancelled job stopped)."""
    assert state.terminal, state

    def change(rec: JobRecord) -> None:
        rec.state = state
        rec.finished_at = now_utc()
        rec.heartbeat_at = None
        rec.error = error
        if metrics is not None:
            rec.metrics = metrics
        if published is not None:
            rec.published_model, rec.published_version = published
        if state is JobState.SUCCEEDED and rec.progress is not None:
            rec.progress = rec.progress.model_copy(update={"fraction": 1.0, "message": "done"})
        elif message is not None and rec.progress is not None:
            rec.progress = rec.progress.model_copy(update={"message": message})

    return _update_attempt(store, job_id, attempt, change, finished_stage)


def _lose(rec: JobRecord, why: str, max_attempts: int) -> JobRecord:
    """The worker of this running record is gone: re-queue, cancel or fail it."""
    now = now_utc()
    rec.heartbeat_at = None
    if rec.cancel_requested and not rec.publishing:
        rec.state, rec.finished_at = JobState.CANCELLED, now
    elif rec.attempts < max_attempts:
        rec.state, rec.queued_at = JobState.QUEUED, now
        if rec.progress is not None:
            rec.progress.message = f"{why}; re-queued, resumes from the finished stages"
    else:
        rec.state, rec.finished_at = JobState.FAILED, now
        rec.error = f"{why} (gave up after {rec.attempts} attempts)"
    return rec


def release_attempt(
    store: JobStore,
    job_id: str,
    attempt: int,
    why: str,
    finished_stage: tuple[str, float] | None = None,
) -> JobRecord:
    """Give a running job back to the queue on purpose (its worker is shutting down); the
    next attempt resumes from the finished stage directories."""

    def change(rec: JobRecord) -> None:
        if rec.cancel_requested and not rec.publishing:
            rec.state, rec.finished_at = JobState.CANCELLED, now_utc()
        else:
            rec.state, rec.queued_at = JobState.QUEUED, now_utc()
        rec.heartbeat_at = None
        if rec.progress is not None:
            rec.progress.message = f"{why}; re-queued, resumes from the finished stages"

    return _update_attempt(store, job_id, attempt, change, finished_stage)


def reap_stale_jobs(
    store: JobStore,
    *,
    stale_after: float,
    max_attempts: int,
    requeue: Callable[[str], None] | None,
) -> list[JobRecord]:
    """Find running jobs whose worker is gone (no lock holder, heartbeat older than
    ``stale_after`` s) and re-queue them (up to ``max_attempts`` attempts; the new attempt
    resumes from the finished stage directories) or fail them with "worker lost".

    ``requeue(job_id)`` hands a re-queued job to the workers (send the task again); None
    means the caller's queue finds queued jobs by itself. Safe to run from several
    processes at once: each transition is atomic and only one reaper wins it.
    """
    reaped: list[JobRecord] = []
    for job_id in store.ids_in_state(JobState.RUNNING):
        if store.lock_holder(job_id) is not None:
            continue  # a live worker refreshes this lock with its heartbeat

        def mutate(rec: JobRecord) -> JobRecord | None:
            last = rec.heartbeat_at or rec.started_at or rec.created_at
            silent = (now_utc() - last).total_seconds()
            if rec.state is not JobState.RUNNING or silent < stale_after:
                return None
            why = f"worker lost: no heartbeat for {silent:.0f} s during attempt {rec.attempts}"
            return _lose(rec, why, max_attempts)

        rec, changed = store.update(job_id, mutate)
        if changed:
            reaped.append(_handed_on(store, rec, requeue))
    return reaped


def reap_queued_jobs(
    store: JobStore,
    *,
    resend_after: float,
    fail_after: float,
    requeue: Callable[[str], None],
) -> list[JobRecord]:
    """Give queued jobs an owner too (Celery mode, where a queued job is only as alive as
    its message): a job queued with no worker holding it has its task sent again once it
    has waited ``resend_after`` s since its last send (doubling after each resend, so a
    long backlog gets a few duplicates, not hundreds), and fails after ``fail_after`` s
    queued, with the reason in its error. A message can be lost (a broker restart without
    persistence), acknowledged by a delivery that could not run it (the store was down),
    or wait on a queue no worker consumes; a duplicate is harmless (the job lock and the
    terminal states drop it). Safe to run from several processes at once."""
    handled: list[JobRecord] = []
    for job_id in store.ids_in_state(JobState.QUEUED):
        if store.lock_holder(job_id) is not None:
            continue  # a worker is starting it right now

        def mutate(rec: JobRecord) -> JobRecord | None:
            if rec.state is not JobState.QUEUED:
                return None
            now = now_utc()
            waited = (now - (rec.queued_at or rec.created_at)).total_seconds()
            if waited >= fail_after:
                rec.state, rec.finished_at = JobState.FAILED, now
                rec.error = (
                    f"no worker started the job in {waited:.0f} s queued (its task was sent "
                    f"{rec.resends + 1} times); check that a worker consumes the queue "
                    f"{QUEUE_JOBS!r}"
                )
                return rec
            last = rec.updated_at or rec.queued_at or rec.created_at
            if (now - last).total_seconds() < resend_after * 2**rec.resends:
                return None
            rec.resends += 1
            why = f"no worker took it for {waited:.0f} s; its task was sent again"
            rec.progress = (rec.progress or Progress(stage=Stage.PREPARE)).model_copy(
                update={"message": why}
            )
            return rec

        rec, changed = store.update(job_id, mutate)
        if not changed:
            continue
        handled.append(rec)
        if rec.state is JobState.QUEUED:
            log.warning("job %s: queued with no worker for a while; sending it again", job_id)
            try:
                requeue(job_id)
            except Exception as e:  # the broker is down: the next round tries again
                log.warning("job %s: could not send it again: %s", job_id, e)
        else:
            log.error("job %s: %s", job_id, rec.error)
    return handled


def abandon_attempt(
    store: JobStore,
    job_id: str,
    why: str,
    *,
    max_attempts: int,
    requeue: Callable[[str], None] | None = None,
    attempt: int | None = None,
) -> JobRecord:
    """The caller *knows* the job's process died (the embedded queue saw its child exit):
    no need to wait for the heartbeat to go stale. With ``attempt``, only that attempt
    (not a newer one that another worker runs meanwhile) is abandoned."""

    def mutate(rec: JobRecord) -> JobRecord | None:
        if rec.state is not JobState.RUNNING or attempt not in (None, rec.attempts):
            return None
        return _lose(rec, f"{why} during attempt {rec.attempts}", max_attempts)

    rec, changed = store.update(job_id, mutate)
    return _handed_on(store, rec, requeue) if changed else rec


def _handed_on(store: JobStore, rec: JobRecord, requeue: Callable[[str], None] | None) -> JobRecord:
    log.warning("job %s lost its worker -> %s", rec.job_id, rec.state.value)
    if rec.state is not JobState.QUEUED or requeue is None:
        return rec
    try:
        requeue(rec.job_id)
        return rec
    except Exception as exc:  # the broker is down: fail rather than leave it queued forever
        return fail_queued(store, rec.job_id, f"worker lost and could not be re-queued: {exc}")
