"""The job lifecycle contract, shared by the API, the worker and the CLI.

    queued -> running(stage, progress 0..1) -> succeeded | failed(error) | cancelled

Torch-free: the API imports it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class Stage(StrEnum):
    PREPARE = "prepare"
    GENERATE = "generate"
    TEACHER = "teacher"
    TGT = "tgt"  # Teacher Guided Training: generated texts (and their images)
    STRATA_TEXTS = "strata-texts"  # StrataNet: steered generation, scored by its teachers
    # Before the students: a method's student may learn from the baseline (a method's steps
    # run in this order, training/methods.py).
    BASELINE = "baseline"
    DISTILL = "distill"
    STRATA_STUDENT = "strata-student"  # StrataNet: RMD confidences, weights, its student
    EVALUATE = "evaluate"
    EXPORT = "export"
    PUBLISH = "publish"


# The order a run makes its stages in (a stage's steps may use every earlier stage's).
STAGE_ORDER: tuple[Stage, ...] = tuple(Stage)
# Each stage's share of the overall fraction, from its usual cost on the presets: training
# and drawing images dominate. A stage that a config skips passes its share at once.
STAGE_WEIGHTS: dict[Stage, float] = {
    Stage.PREPARE: 1.0,
    Stage.GENERATE: 20.0,
    Stage.TEACHER: 25.0,
    Stage.TGT: 10.0,
    Stage.STRATA_TEXTS: 10.0,
    Stage.BASELINE: 10.0,
    Stage.DISTILL: 25.0,
    Stage.STRATA_STUDENT: 10.0,
    Stage.EVALUATE: 4.0,
    Stage.EXPORT: 4.0,
    Stage.PUBLISH: 1.0,
}


class Progress(BaseModel):
    """Where a running job is: ``done`` of ``total`` units of the current stage's current
    count (a stage may count several things in turn: the teacher's image tokens, then its
    training steps), and how far the whole job is."""

    stage: Stage
    done: int = 0
    total: int = 0
    # Overall progress over all stages (weighted by STAGE_WEIGHTS), 0..1; never decreases.
    fraction: float = Field(0.0, ge=0.0, le=1.0)
    message: str = ""
    # Seconds since the job first started (GET /jobs/{id} brings it up to date).
    elapsed_s: float | None = Field(None, ge=0.0)
    # Estimated seconds left, from this attempt's rate so far; None until it can be told.
    eta_s: float | None = Field(None, ge=0.0)


class JobRecord(BaseModel):
    job_id: str
    state: JobState = JobState.QUEUED
    progress: Progress | None = None
    config: dict[str, object] = Field(default_factory=dict)
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime | None = None
    # Seconds spent in each finished stage.
    stage_seconds: dict[str, float] = Field(default_factory=dict)
    error: str | None = None
    metrics: dict[str, object] | None = None
    published_model: str | None = None
    published_version: str | None = None
    cancel_requested: bool = False
    # Set when the job passed its last cancel point and began publishing its model (the
    # commit point): from then on a cancel is refused, and a lost worker's job is resumed,
    # never cancelled, so what it published stays recorded. Never set together with a
    # pending cancel (jobs/lifecycle.py: enter_publish).
    publishing: bool = False
    worker: str | None = None
    # Written every few seconds by the process running the job; a running job whose
    # heartbeat is older than the stale limit lost its worker (see jobs/store.py).
    heartbeat_at: datetime | None = None
    # How many times a worker started (or resumed) the job; bounded by the reaper.
    attempts: int = 0
    # When the job last entered "queued" (created, or handed back); the queued-job reaper
    # (Celery mode) sends its task again when no worker took it, and fails it at last.
    queued_at: datetime | None = None
    resends: int = 0
