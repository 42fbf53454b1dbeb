"""Training jobs over HTTP: submit, watch, list, cancel. Admin key required when keys
are configured.

    POST /jobs/train        body: contracts.config.PipelineConfig -> 202 {job_id, status_url}
    GET  /jobs/{job_id}     state, stage, progress with counts, timings, metrics, error
    GET  /jobs              newest first, paged
    POST /jobs/{job_id}/cancel
    GET  /jobs/{job_id}/logs     the tail of the job's log (embedded mode)
    DELETE /jobs/{job_id}/artifacts  a finished job's run directory (record and model stay)
    GET  /jobs/{job_id}/results  results table, per-model metrics with confusion matrices,
                                 training curves

The job queue (api/jobqueue.py) is opened by this router's lifespan, which also starts
its reaper. With Redis configured but unreachable these routes answer 503 with the
reason, while /classify keeps serving (it never touches Redis).
"""

from __future__ import annotations

import asyncio
import json
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
from contracts.errors import CannotCancel, JobStoreUnavailable, NotFound
from contracts.jobs import JobRecord, JobState
from contracts.layout import RunLayout
from jobs.artifacts import delete_job_artifacts
from jobs.lifecycle import fail_queued, live_timing, request_cancel
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
    """State, stage, progress (done/total of the stage's current count, the overall
    fraction, which never decreases, elapsed seconds and an ETA), stage timings, metrics and
    the published model version once succeeded, the error once failed."""
    record = queue.store.get(job_id)
    _serve_published(record, registry, queue)
    return live_timing(record)


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


class JobLog(BaseModel):
    job_id: str
    lines: list[str] = Field(description="The last lines of the log, oldest first.")
    truncated: bool = Field(description="Whether the log has more lines before these.")
    size_bytes: int


class JobResults(BaseModel):
    job_id: str
    labels: list[str]
    report_split: str = Field(description="The split the results table reports (test).")
    models: dict[str, dict[str, Any]] = Field(
        description="Per model (teacher:NAME, student:KEY, baseline, ...): its kind and, per "
        "split, accuracy, macro_f1, n, per_class_f1 and the confusion matrix (rows: true "
        "label, columns: predicted, in the order of labels)."
    )
    table_md: str = Field(description="The results table (results.md).")
    curves: dict[str, dict[str, Any]] = Field(
        description="Per trained model directory (teacher-NAME, student-KEY, baseline, ...): "
        "its training history: steps (loss terms, lr) and epochs (dev metrics)."
    )


# A log line longer than this is cut; a tail reads at most this many bytes from the end.
_MAX_LINE = 4000
_MAX_TAIL_BYTES = 2_000_000


def _run_layout(settings: ApiSettings, queue: JobQueue, job_id: str) -> RunLayout:
    queue.store.get(job_id)  # 404 for an unknown job
    return RunLayout.for_job(Path(settings.artifacts_dir), job_id)


@router.get("/jobs/{job_id}/logs", responses={404: {}, **_UNAVAILABLE})
def get_job_log(
    job_id: JobId,
    queue: QueueDep,
    settings: SettingsDep,
    tail: Annotated[int, Query(ge=1, le=5000, description="How many last lines.")] = 200,
) -> JobLog:
    """The last ``tail`` lines of the job's log (``job.log`` in its run directory: the job
    process's output in the embedded mode; a Celery worker logs to its own output)."""
    path = _run_layout(settings, queue, job_id).job_log
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            start = max(0, size - _MAX_TAIL_BYTES)
            f.seek(start)
            raw = f.read()
    except FileNotFoundError:
        raise NotFound(
            f"job {job_id} has no log here (not started yet, or run by a Celery worker, whose "
            "own output has it)"
        ) from None
    lines = raw.decode("utf-8", "replace").splitlines()
    if start > 0:
        lines = lines[1:]  # the first line read is likely cut
    kept = [line[:_MAX_LINE] for line in lines[-tail:]]
    return JobLog(
        job_id=job_id, lines=kept, truncated=start > 0 or len(lines) > tail, size_bytes=size
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


@router.get("/jobs/{job_id}/results", responses={404: {}, **_UNAVAILABLE})
def get_job_results(job_id: JobId, queue: QueueDep, settings: SettingsDep) -> JobResults:
    """The job's evaluation once its evaluate stage finished: the results table, every
    model's metrics on dev and test with its confusion matrix, and the training curves."""
    layout = _run_layout(settings, queue, job_id)
    written = _read_json(layout.evaluate / "results.json")
    table = layout.evaluate / "results.md"
    if not isinstance(written, dict) or not table.is_file():
        raise NotFound(f"job {job_id} has no results yet (they come with its evaluate stage)")
    models = {
        name: {k: v for k, v in entry.items() if k != "dir"}  # no server paths
        for name, entry in (written.get("models") or {}).items()
        if isinstance(entry, dict)
    }
    curves = {}
    for history in sorted(layout.root.glob("*/history.json")):
        data = _read_json(history)
        if isinstance(data, dict):
            curves[history.parent.name] = data
    return JobResults(
        job_id=job_id,
        labels=list(written.get("labels") or []),
        report_split=str(written.get("report_split", "test")),
        models=models,
        table_md=table.read_text(encoding="utf-8"),
        curves=curves,
    )


class ArtifactsDeleted(BaseModel):
    job_id: str
    freed_bytes: int = Field(description="0 when they were already gone.")


@router.delete(
    "/jobs/{job_id}/artifacts",
    responses={404: {}, 409: {"description": "The job has not finished."}, **_UNAVAILABLE},
)
def delete_artifacts(job_id: JobId, queue: QueueDep, settings: SettingsDep) -> ArtifactsDeleted:
    """Delete a finished job's run directory (stage outputs, images, log, results). The
    job's record stays, and so does any model it published (that lives in the model
    repository). Old ones go by themselves with ``LUGPI_JOB_ARTIFACTS_KEEP_DAYS``."""
    freed = delete_job_artifacts(queue.store, Path(settings.artifacts_dir), job_id)
    return ArtifactsDeleted(job_id=job_id, freed_bytes=freed)
