"""Training jobs over HTTP: submit, watch, list, cancel. Admin key required when keys
are configured.

    POST /jobs/train        body: contracts.config.PipelineConfig -> 202 {job_id, status_url}
    GET  /jobs/{job_id}     state, stage, progress with counts, timings, metrics, error
    GET  /jobs              newest first, paged
    POST /jobs/{job_id}/cancel

The job queue (api/jobqueue.py) is opened by this router's lifespan, which also starts
its reaper. With Redis configured but unreachable these routes answer 503 with the
reason, while /classify keeps serving (it never touches Redis).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from api.auth import AdminAccess
from api.deps import RegistryDep, SettingsDep
from api.job_checks import check_job_config
from api.jobqueue import JobQueue, JobQueueUnavailable, RunnerStatus, open_jobqueue
from api.registry import ModelRegistry
from api.settings import ApiSettings
from contracts.config import PipelineConfig
from contracts.errors import CannotCancel, JobStoreUnavailable
from contracts.jobs import JobRecord, JobState
from jobs.lifecycle import fail_queued, request_cancel
from jobs.store import (
    JOB_ID_PATTERN,
    SqliteJobStore,
)

log = logging.getLogger("lugpi.api.jobs")
_open_lock = threading.Lock()


def _queue_for(app: FastAPI) -> JobQueue:
    """The app's job queue, opened once (by the lifespan, or by the first request when the
    app runs without one, as some test clients do)."""
    with _open_lock:
        queue: JobQueue | None = getattr(app.state, "jobqueue", None)
        if queue is None:
            queue = open_jobqueue(app.state.settings)
            queue.start()
            app.state.jobqueue = queue
        return queue


def _has_jobs(settings: ApiSettings) -> bool:
    """Whether to open the queue at start-up: always with Redis (opening connects to
    nothing), in embedded mode only when a job store exists, so that an API that never
    runs jobs writes no files."""
    store_file = Path(settings.artifacts_dir) / SqliteJobStore.FILE_NAME
    return bool(settings.redis_url) or store_file.exists()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Open at start-up when there may be work: the embedded queue then resumes the jobs a
    # previous API left queued or running, and the reaper watches Redis jobs.
    if _has_jobs(app.state.settings):
        try:
            await asyncio.to_thread(_queue_for, app)
        except JobStoreUnavailable as e:  # /classify serves regardless; /jobs says 503
            log.error("jobs unavailable at start-up: %s", e)
    try:
        yield
    finally:
        queue: JobQueue | None = getattr(app.state, "jobqueue", None)
        if queue is not None:
            await asyncio.to_thread(queue.stop)
            app.state.jobqueue = None


def get_jobqueue(request: Request) -> JobQueue:
    return _queue_for(request.app)


QueueDep = Annotated[JobQueue, Depends(get_jobqueue)]
JobId = Annotated[str, PathParam(pattern=JOB_ID_PATTERN, description="32 hex digits")]

router = APIRouter(tags=["jobs"], dependencies=[AdminAccess], lifespan=lifespan)


class JobAccepted(BaseModel):
    job_id: str
    status_url: str


class JobPage(BaseModel):
    jobs: list[JobRecord] = Field(description="Newest first.")
    total: int
    offset: int
    limit: int
    runner: RunnerStatus = Field(description="Whether this API's job runner/reaper is running.")


_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"description": "The job store or broker (Redis) is unreachable."}
}


@router.post(
    "/jobs/train",
    status_code=202,
    responses={422: {"description": "Invalid config, or data/models not allowed."}, **_UNAVAILABLE},
)
def submit_train_job(
    cfg: PipelineConfig, request: Request, settings: SettingsDep, queue: QueueDep
) -> JobAccepted:
    """Queue a training run. The body is the training config (the same schema as the
    YAML presets); data paths must lie under the server's data roots and models must be
    allowed. Poll ``status_url`` for progress."""
    checked = check_job_config(cfg, settings)
    runner = queue.status()
    if not runner.alive:  # a job accepted now would wait forever
        raise JobQueueUnavailable(f"jobs are unavailable: {runner.detail}")
    record = queue.store.create(checked.model_dump(mode="json"))
    try:
        queue.submit(record.job_id)
    except JobQueueUnavailable as e:
        _fail_unsent(queue, record.job_id, str(e))
        raise
    log.info("job %s queued (%s)", record.job_id, checked.name)
    # Relative: request.url_for would echo the client's Host header (a forged one too).
    url = request.app.url_path_for("get_job", job_id=record.job_id)
    return JobAccepted(job_id=record.job_id, status_url=url)


def _fail_unsent(queue: JobQueue, job_id: str, why: str) -> None:
    try:
        fail_queued(queue.store, job_id, f"could not be queued: {why}")
    except Exception:  # the store is likely down too; the 503 says enough
        log.warning("job %s: could not mark it failed", job_id)


@router.get("/jobs/{job_id}", name="get_job", responses={404: {}, **_UNAVAILABLE})
def get_job(job_id: JobId, queue: QueueDep, registry: RegistryDep) -> JobRecord:
    """State, stage, progress (done/total of the stage, fraction overall), stage timings,
    metrics and the published model version once succeeded, the error once failed."""
    record = queue.store.get(job_id)
    _serve_published(record, registry, queue)
    return record


def _serve_published(record: JobRecord, registry: ModelRegistry, queue: JobQueue) -> None:
    """Load a job's freshly published version now rather than at the next poll (once per
    job: a version that does not load is /models' business, not a reason to rescan on
    every status request)."""
    name, version = record.published_model, record.published_version
    if record.state is not JobState.SUCCEEDED or name is None or version is None:
        return
    if version in registry.snapshot.models.get(name, {}) or record.job_id in queue.reloaded:
        return
    queue.reloaded.add(record.job_id)
    try:
        registry.refresh(only=name)
    except Exception as e:  # serving problems are /models' business, not this route's
        log.warning("job %s: could not load %s/%s: %s", record.job_id, name, version, e)


@router.get("/jobs", responses=_UNAVAILABLE)
def list_jobs(
    queue: QueueDep,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> JobPage:
    """All jobs, newest first."""
    jobs, total = queue.store.list_jobs(offset=offset, limit=limit)
    return JobPage(jobs=jobs, total=total, offset=offset, limit=limit, runner=queue.status())


@router.post(
    "/jobs/{job_id}/cancel",
    responses={
        404: {},
        409: {"description": "The job already finished, or is publishing its model."},
        **_UNAVAILABLE,
    },
)
def cancel_job(job_id: JobId, queue: QueueDep) -> JobRecord:
    """A queued job is cancelled at once and never starts; a running one stops at its
    next batch (its finished stages stay on disk) and publishes nothing. Once a job has
    begun publishing its model, cancelling is refused (409): it ends succeeded with the
    version it published."""
    record = request_cancel(queue.store, job_id)
    if record.state in (JobState.SUCCEEDED, JobState.FAILED):
        raise CannotCancel(f"job {job_id} already {record.state.value}; nothing to cancel")
    if record.publishing:
        raise CannotCancel(
            f"job {job_id} is publishing its model (past its last cancel point); it can no "
            "longer be cancelled and ends with the version it publishes"
        )
    return record
