"""Run one job attempt: the part shared by the Celery task and the embedded job process.

    lock -> start attempt -> heartbeat -> stages in a child process -> terminal state

- The job lock (TTL = ``stale_after_s``, refreshed by the heartbeat) means a re-delivered
  or re-queued task never runs a job that a live worker is running.
- The stages run in their own process (worker/attempt_process.py), watched from here:
  a stage that hangs is killed at the job's time limit (``job_timeout_s``) and the job
  fails, so neither the job nor the worker is stuck; an attempt whose heartbeat lost the
  lock is killed at once, before the reaper can hand the job to another attempt, so two
  attempts of one job never run at the same time.
- The heartbeat keeps ``heartbeat_at`` fresh from here, however long a stage blocks.
- A re-run resumes: ``run_pipeline`` skips every stage whose directory is complete.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contracts.jobs import JobRecord, JobState
from jobs.lifecycle import (
    AttemptLost,
    abandon_attempt,
    beat,
    finish_attempt,
    release_attempt,
    start_attempt,
)
from jobs.store import JobStore
from worker.attempt_process import OUTCOME_FILE, SPEC_FILE
from worker.job_context import STOPPING
from worker.locks import LockKeeper, lock_owner
from worker.settings import WorkerSettings

log = logging.getLogger(__name__)

# Hands a job back to the workers (sends its task again). None: the store is the queue.
Requeue = Callable[[str], None]
# What the attempt process runs: "module:function" with execute_pipeline's signature.
PIPELINE = "worker.execute:execute_pipeline"
_ROOT = str(Path(__file__).resolve().parent.parent)


class Heartbeat(LockKeeper):
    """Keeps the job lock and the record's ``heartbeat_at`` fresh while an attempt runs,
    and notes a cancel request read on the way. Sets ``lost`` when the lock or the record
    is no longer this attempt's, or cannot be refreshed in time."""

    def __init__(
        self, store: JobStore, job_id: str, attempt: int, owner: str, settings: WorkerSettings
    ) -> None:
        super().__init__(store, job_id, owner, settings, release=False)  # run_job releases
        self.job_id, self.attempt = job_id, attempt
        self.cancel_requested = False

    def after_refresh(self) -> None:
        self.cancel_requested = beat(self.store, self.job_id, self.attempt).cancel_requested

    def on_lost(self, why: str) -> None:
        log.error("job %s: %s; stopping this attempt", self.job_id, why)


def run_job(
    store: JobStore,
    job_id: str,
    settings: WorkerSettings,
    *,
    worker: str,
    fan_out: bool = False,
    requeue: Requeue | None = None,
    stages: str = PIPELINE,
) -> JobState | None:
    """Run (or resume) the job to a terminal state. Returns that state, or None when this
    delivery did nothing (another live worker holds the job, or it is already finished),
    lost the job to another attempt, or handed it back because this worker is stopping.

    ``fan_out``: send image-generation shards to the other workers (Celery mode).
    """
    owner = lock_owner(worker)
    if not store.acquire_lock(job_id, owner, settings.stale_after_s):
        log.info("job %s: held by %s; dropping this delivery", job_id, store.lock_holder(job_id))
        return None
    try:
        record = start_attempt(store, job_id, worker)
        if record is None:
            log.info("job %s: %s; nothing to run", job_id, store.get(job_id).state.value)
            return None
        return _Attempt(store, record, owner, settings, requeue).run(fan_out, stages)
    finally:
        try:
            store.release_lock(job_id, owner)
        except Exception as e:
            log.warning("job %s: lock not released (expires by itself): %s", job_id, e)


class _Attempt:
    def __init__(
        self,
        store: JobStore,
        record: JobRecord,
        owner: str,
        settings: WorkerSettings,
        requeue: Requeue | None,
    ) -> None:
        self.store, self.owner, self.settings, self.requeue = store, owner, settings, requeue
        self.job_id, self.attempt = record.job_id, record.attempts
        started = record.started_at.timestamp() if record.started_at else time.time()
        self.deadline = started + settings.job_timeout_s
        self.asked_to_stop = False

    def run(self, fan_out: bool, stages: str) -> JobState | None:
        workdir = Path(tempfile.mkdtemp(prefix=f"lugpi-attempt-{self.job_id[:8]}-"))
        try:
            spec = {
                "job_id": self.job_id,
                "attempt": self.attempt,
                "worker": self.owner.split(":")[0],
                "settings": self.settings.model_dump(mode="json"),
                "stages": stages,
                "fan_out": fan_out,
                "parent": os.getpid(),
            }
            (workdir / SPEC_FILE).write_text(json.dumps(spec))
            with Heartbeat(
                self.store, self.job_id, self.attempt, self.owner, self.settings
            ) as heartbeat:
                child = self._start(workdir / SPEC_FILE)
                ended = self._watch(child, heartbeat)
            outcome_file = workdir / OUTCOME_FILE
            outcome = json.loads(outcome_file.read_text()) if outcome_file.is_file() else None
            return self._conclude(ended, outcome, child.returncode)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _start(self, spec: Path) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, env.get("PYTHONPATH")) if p)
        # A session of its own: a Ctrl-C meant for the worker reaches the stages only as
        # the worker decides (see _watch), never half-way.
        return subprocess.Popen(
            [sys.executable, "-m", "worker.attempt_process", str(spec)],
            env=env,
            start_new_session=True,
        )

    def _watch(self, child: subprocess.Popen[bytes], heartbeat: Heartbeat) -> str:
        """Wait for the attempt process; kill it when it must not go on. Returns why it
        ended: "exited", "lost", "timeout", "stopped" or "cancelled"."""
        asked_to_stop: float | None = None
        cancel_seen: float | None = None
        grace = self.settings.stop_grace_s
        while True:
            try:
                child.wait(timeout=0.2)
                return "exited"
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if heartbeat.lost.is_set():
                _kill(child)
                return "lost"
            if time.time() > self.deadline:
                _kill(child)
                return "timeout"
            if STOPPING.is_set():
                if asked_to_stop is None:
                    child.send_signal(signal.SIGTERM)  # stop at the next step, hand back
                    asked_to_stop = now
                    self.asked_to_stop = True
                elif now - asked_to_stop > grace:
                    _kill(child)
                    return "stopped"
            if heartbeat.cancel_requested:
                cancel_seen = cancel_seen or now
                if now - cancel_seen > grace:  # a stage that never reaches its next step
                    _kill(child)
                    return "cancelled"

    def _conclude(
        self, ended: str, outcome: dict[str, Any] | None, code: int | None
    ) -> JobState | None:
        if ended == "lost" or (outcome is not None and outcome["state"] == "lost"):
            log.error("job %s: attempt %d lost the job to another", self.job_id, self.attempt)
            return None
        if ended == "timeout":
            limit = self.settings.job_timeout_s
            stage = self._stage()
            return self._finish(
                JobState.FAILED,
                error=f"job ran longer than its time limit (job_timeout_s = {limit:g} s); "
                f"its process was stopped during {stage}",
                message="timed out",
            )
        if ended == "cancelled":
            return self._finish(
                JobState.CANCELLED,
                message=f"cancelled; the stage did not stop within {self.settings.stop_grace_s:g} "
                "s, so its process was ended",
            )
        if ended == "stopped" or (outcome is not None and outcome["state"] == "stopping"):
            why = outcome["why"] if outcome else "worker shut down"
            self._hand_back(why)
            return None
        if outcome is None and self.asked_to_stop:  # stopped before it could say so
            self._hand_back("worker shut down")
            return None
        if outcome is None:  # killed (out of memory?) or crashed below Python
            self._abandon(f"job process exited with code {code}")
            return None
        stage_time = outcome.get("stage_time")
        published = outcome.get("published")
        return self._finish(
            JobState(outcome["state"]),
            error=outcome.get("error"),
            metrics=outcome.get("metrics"),
            published=tuple(published) if published else None,
            message=outcome.get("message"),
            finished_stage=tuple(stage_time) if stage_time else None,
        )

    def _stage(self) -> str:
        try:
            progress = self.store.get(self.job_id).progress
        except Exception:
            return "an unknown stage"
        return progress.stage.value if progress is not None else "its start"

    def _finish(
        self,
        state: JobState,
        *,
        error: str | None = None,
        metrics: dict[str, object] | None = None,
        published: tuple[str, str] | None = None,
        message: str | None = None,
        finished_stage: tuple[str, float] | None = None,
    ) -> JobState | None:
        try:
            finish_attempt(
                self.store,
                self.job_id,
                self.attempt,
                state,
                error=error,
                metrics=metrics,
                published=published,
                finished_stage=finished_stage,
                message=message,
            )
        except AttemptLost as e:  # reaped while finishing: the new owner decides
            log.error("job %s: %s", self.job_id, e)
            return None
        log.info("job %s: %s", self.job_id, state.value)
        return state

    def _hand_back(self, why: str) -> None:
        try:
            rec = release_attempt(self.store, self.job_id, self.attempt, why)
            # Unlock before sending: a worker that got the new message while this one still
            # held the lock would drop it, and the job would wait queued with no message.
            self.store.release_lock(self.job_id, self.owner)
        except Exception as e:  # the reaper will take care of it
            log.error("job %s: not handed back: %s", self.job_id, e)
            return
        log.info("job %s: %s; %s", self.job_id, why, rec.state.value)
        if rec.state is JobState.QUEUED and self.requeue is not None:
            self.requeue(self.job_id)

    def _abandon(self, why: str) -> None:
        """The attempt process died: re-queue (resuming from the finished stages) or fail
        after ``max_attempts``, without waiting for the heartbeat to go stale."""
        try:
            self.store.release_lock(self.job_id, self.owner)
            rec = abandon_attempt(
                self.store,
                self.job_id,
                why,
                max_attempts=self.settings.max_attempts,
                attempt=self.attempt,
            )
        except Exception as e:
            log.error("job %s: %s, and recording it failed: %s", self.job_id, why, e)
            return
        if rec.state is JobState.QUEUED and self.requeue is not None:
            self.requeue(self.job_id)


def _kill(child: subprocess.Popen[bytes]) -> None:
    child.kill()
    child.wait()
