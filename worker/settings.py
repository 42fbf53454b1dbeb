"""The one settings class of a worker process (Celery worker or embedded job process).

Read from ``LUGPI_<FIELD>`` environment variables; the fields the API reads too are
declared once, in ``contracts/settings.py``, so one environment file configures both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from contracts.layout import RunLayout
from contracts.settings import SharedSettings, split_list
from jobs.lifecycle import QUEUE_JOBS, QUEUE_SHARDS, QUEUE_TEACHER


class WorkerSettings(SharedSettings):
    """A worker process's settings; the shared ones (repository, artifacts, Redis, job
    clocks) come from ``SharedSettings``, so the API and the workers cannot disagree on
    what a field means."""

    heartbeat_s: float = Field(
        default=5.0, gt=0.0, description="How often a running job refreshes its heartbeat and lock."
    )
    stop_grace_s: float = Field(
        default=30.0,
        gt=0.0,
        description="How long a stage may take to reach its next step when its job must stop "
        "(worker shutdown, cancel) before its process is killed; the job resumes from its "
        "finished stages either way.",
    )
    progress_interval_s: float = Field(
        default=1.0, ge=0.0, description="Least time between two progress writes of a running job."
    )

    queues: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [QUEUE_JOBS, QUEUE_SHARDS, QUEUE_TEACHER],
        description="Queues `lugpi-worker` consumes: jobs (whole pipelines), shards (image "
        "generation pieces any worker takes), teacher (interactive /classify/teacher calls). "
        "Give a GPU its own teacher worker if training keeps the main one busy.",
    )
    pool: Literal["solo", "threads"] = Field(
        default="solo",
        description="Celery pool. CUDA is not fork-safe and one task should own the GPU: 'solo' "
        "runs one task at a time in the worker's own process.",
    )
    preload: bool = Field(
        default=True,
        description="Import torch, transformers and diffusers as soon as the worker starts, "
        "not when its first task arrives.",
    )

    @field_validator("queues", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return split_list(value)

    @model_validator(mode="after")
    def _check(self) -> WorkerSettings:
        if self.heartbeat_s * 2 > self.stale_after_s:
            raise ValueError(
                f"LUGPI_HEARTBEAT_S ({self.heartbeat_s}) must be at most half of "
                f"LUGPI_STALE_AFTER_S ({self.stale_after_s}), or live jobs look lost"
            )
        return self

    def run_dir(self, job_id: str) -> Path:
        return RunLayout.for_job(self.artifacts_dir, job_id).root

    @property
    def visibility_timeout_s(self) -> int:
        """Redis redelivers an unacknowledged message after this long. A job task acks only
        when it ends (acks_late), so this must exceed the longest job, else a second worker
        gets the same job while the first still runs it (the job lock would turn it away,
        but the message would bounce around for nothing). A crashed worker's job does not
        wait for this: the reaper re-queues it after ``stale_after_s``."""
        return int(self.job_timeout_s + 3600)
