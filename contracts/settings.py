"""The settings every LUGPI process shares: the API, the Celery workers, the embedded job
process and the CLI read the same ``LUGPI_<FIELD>`` environment variables through this one
base, so one environment file configures them all and no field is declared twice.

``api/settings.py`` (``ApiSettings``) and ``worker/settings.py`` (``WorkerSettings``) add
the fields only their process reads. A process that starts another one (the API's
embedded job runner) passes the shared fields on with ``shared_env()``. Torch-free.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SharedSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LUGPI_", extra="ignore", frozen=True)

    redis_url: str | None = Field(
        default=None,
        description="Celery broker, result backend and job store. None: embedded mode, where "
        "the API runs each job in a child process and jobs live in a SQLite file.",
    )
    artifacts_dir: Path = Field(
        default=Path("artifacts"),
        description="Run directories of jobs (runs/<job_id>/) and the embedded job store.",
    )
    model_repository: Path = Field(
        default=Path("model-repository"),
        description="Directory of published bundles: <name>/<version>/{model.onnx, "
        "model.int8.onnx, tokenizer.json, bundle.json}; the API serves from it, a successful "
        "job publishes into it.",
    )
    keep_last_versions: int = Field(
        default=5, ge=1, description="Versions kept per model when a job publishes a new one."
    )
    job_timeout_s: float = Field(
        default=24 * 3600.0,
        gt=0.0,
        description="A job running longer than this is stopped and marked failed (enforced "
        "from outside its stages, so a hung stage is stopped too).",
    )
    stale_after_s: float = Field(
        default=60.0,
        gt=0.0,
        description="The job lock's TTL: a running job with no lock holder and no heartbeat "
        "for this long lost its worker, and the reaper re-queues it (resuming from the "
        "finished stages) or fails it.",
    )
    max_attempts: int = Field(
        default=3, ge=1, description="Attempts of a job (first run + resumes) before it fails."
    )
    teacher_timeout_s: float = Field(
        default=60.0,
        gt=0.0,
        description="POST /classify/teacher answers 503 after this long; a worker drops a "
        "teacher request that waited longer than this unanswered.",
    )
    queued_resend_s: float = Field(
        default=600.0,
        gt=0.0,
        description="Celery mode: a job still queued this long after its task was sent, with "
        "no worker holding it, has its task sent again (a lost message, an acknowledged "
        "delivery that never ran it). Duplicates are harmless: the job lock drops them.",
    )
    queued_timeout_s: float = Field(
        default=24 * 3600.0,
        gt=0.0,
        description="Celery mode: a job queued this long (no worker ever started it) fails, "
        "with the reason in its record.",
    )

    job_artifacts_keep_days: float | None = Field(
        default=None,
        gt=0.0,
        description="Delete the run directories (artifacts) of jobs that finished more than "
        "this many days ago; the API's reaper checks hourly. None: keep them (delete by hand: "
        "DELETE /jobs/{id}/artifacts, lugpi-jobs delete-artifacts).",
    )
    verbose_job_log: bool = Field(
        default=False,
        description="Keep the libraries' routine output (load reports, token-length and "
        "deprecation warnings, progress bars, quantizer lines) in a job's log.",
    )

    def shared_env(self) -> dict[str, str]:
        """``LUGPI_*`` variables that give another process these same shared values
        (paths made absolute, so a process started elsewhere finds the same directories)."""
        env: dict[str, str] = {}
        for name in SharedSettings.model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, Path):
                value = value.resolve()
            env[f"LUGPI_{name.upper()}"] = str(value)
        return env
