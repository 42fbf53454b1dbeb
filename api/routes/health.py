"""GET /healthz (alive), GET /readyz (models loaded and warmed), GET /metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import MetricsDep, RegistryDep
from api.registry import version_number
from api.schemas import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> Health:
    """The process is up and answering; says nothing about models."""
    return Health()


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready; detail says why."}},
)
async def readyz(registry: RegistryDep, request: Request) -> Response:
    """200 once start-up has loaded and warmed the models and the default one is loaded,
    and the job runner (when jobs were opened) is running."""
    snap = registry.snapshot
    models = {name: sorted(v, key=version_number, reverse=True) for name, v in snap.models.items()}
    queue = getattr(request.app.state, "jobqueue", None)
    runner = queue.status() if queue is not None else None
    jobs_down = runner.detail if runner is not None and not runner.alive else None
    overloaded = registry.overloaded
    if registry.ready and jobs_down is None and not overloaded:
        return JSONResponse(Readiness(status="ready", models=models).model_dump())
    if registry.ready and overloaded:
        detail = f"overloaded: the queue of {', '.join(overloaded)} is nearly full"
        body = Readiness(status="not ready", models=models, detail=detail)
        return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "1"})
    if registry.ready:
        detail = str(jobs_down)
    elif not registry.started:
        detail = "loading and warming up models"
    elif not snap.models:
        detail = "no model is loaded; GET /models shows bundles that failed to load"
    else:
        detail = f"the default model {registry.settings.default_model!r} is not loaded"
    if jobs_down is not None and detail != jobs_down:
        detail = f"{detail}; {jobs_down}"
    body = Readiness(status="not ready", models=models, detail=detail)
    return JSONResponse(body.model_dump(), status_code=503)


@router.get("/metrics", response_class=Response)
async def metrics(app_metrics: MetricsDep, registry: RegistryDep) -> Response:
    """Prometheus text format: latency, batch sizes, per-model counts, queues, errors."""
    queued: dict[str, int] = {}
    for name, versions in registry.snapshot.models.items():
        queued[name] = sum(m.batcher.queued_texts for m in versions.values())
    for name, n in queued.items():
        app_metrics.queued_texts.labels(model=name).set(n)
    return Response(generate_latest(app_metrics.registry), media_type=CONTENT_TYPE_LATEST)
