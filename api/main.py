"""The app factory. ``uvicorn api.main:app`` serves the module-level ``app``.

Start-up (lifespan) loads and warms every bundle before /readyz says ready, then a
background task rescans the repository every ``poll_interval_s`` seconds so that
newly published versions are served without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from api import API_VERSION, fast_classify
from api.body_limit import BodyLimitMiddleware
from api.errors import install_error_handlers
from api.metrics import ApiMetrics, MetricsMiddleware
from api.registry import ModelRegistry
from api.request_id import RequestIdFilter, RequestIdMiddleware
from api.routes import (
    classify,
    health,
    jobs,
    model_import,
    models,
    oip,
    openai_compat,
    teacher,
    tei,
    versions,
)
from api.same_origin import SameOriginMiddleware
from api.settings import ApiSettings

log = logging.getLogger("lugpi.api")
# The web page (plain HTML + JS, no build step): GET / and /static/*. Public: it holds no
# secret, and its API calls send the user's X-API-Key like any other client.
STATIC_DIR = Path(__file__).resolve().parent / "static"

DESCRIPTION = """
Text classifiers distilled by LUGPI (Learning Using Generated Privileged Information):
a multimodal teacher saw a generated image per training text; the text-only student
served here needs no image at inference.

Send a key as `X-API-Key: <key>` or `Authorization: Bearer <key>` when the server has
keys configured; admin routes (jobs, reload) and the teacher always need one. Errors are JSON
`{"detail": ...}` saying what to fix.

Besides the native routes, the same models answer the clients of other servers: {surfaces}.
"""
# The drop-in protocols, each described by its own module (with its error surface).
PROTOCOLS = (tei, oip, openai_compat)


async def _poll(registry: ModelRegistry, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            await asyncio.to_thread(registry.refresh)
        except Exception:  # a bad scan must not end polling; the next one may succeed
            log.exception("repository rescan failed")


def _document_limits(app: FastAPI, settings: ApiSettings) -> None:
    """Write this deployment's limits into the OpenAPI schema of ClassifyRequest."""
    base_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = base_openapi()
        props = schema["components"]["schemas"]["ClassifyRequest"]["properties"]
        props["texts"]["maxItems"] = settings.max_texts_per_request
        props["texts"]["items"]["maxLength"] = settings.max_text_chars
        pairs = props["text_pairs"]["anyOf"][0]
        pairs["maxItems"] = settings.max_texts_per_request
        pairs["items"]["maxLength"] = settings.max_text_chars
        oip.document_schemas(schema)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


async def _index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html")


def _configure_logging(level: str) -> None:
    """Show the service's own messages (models loaded, load failures) at ``log_level``.

    uvicorn configures only its own loggers; without a handler here, INFO lines from
    ``lugpi.*`` would be dropped. A host that configured logging itself is left alone.
    """
    logger = logging.getLogger("lugpi")
    logger.setLevel(level.upper())
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.addFilter(RequestIdFilter())
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s")
        )
        logger.addHandler(handler)


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or ApiSettings()
    _configure_logging(settings.log_level)
    if settings.allow_unauthenticated_admin and not settings.admin_keys:
        log.warning(
            "LUGPI_ALLOW_UNAUTHENTICATED_ADMIN is set and no admin key exists: anyone who can "
            "reach this server may run jobs, reload models and call the teacher"
        )
    metrics = ApiMetrics()
    registry = ModelRegistry(settings, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(registry.refresh)  # load + warm up every bundle
        registry.started = True
        snap = registry.snapshot
        log.info("ready: %s", {n: sorted(v) for n, v in snap.models.items()} or "no models")
        poller = None
        if settings.poll_interval_s > 0:
            poller = asyncio.create_task(_poll(registry, settings.poll_interval_s))
        try:
            yield
        finally:
            if poller is not None:
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poller
            await asyncio.to_thread(registry.close)

    app = FastAPI(
        title="LUGPI inference API",
        version=API_VERSION,
        description=DESCRIPTION.replace("{surfaces}", "; ".join(p.SUMMARY for p in PROTOCOLS)),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.registry = registry
    app.state.metrics = metrics
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    if settings.allow_unauthenticated_admin and not settings.admin_keys:
        app.add_middleware(SameOriginMiddleware)  # demo mode: no cross-site state changes
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # it times everything below
    app.add_middleware(RequestIdMiddleware)  # outermost: every response gets its id

    # POST /classify: the fast route first, then the FastAPI route it hands requests to.
    app.state.fast_classify = fast_classify.install(app, settings, classify.route)
    app.include_router(classify.router)
    app.include_router(model_import.router)
    app.include_router(models.router)
    app.include_router(versions.router)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(teacher.router)
    # Drop-in surfaces for other servers' clients, over the same batcher (README table).
    app.include_router(tei.router)
    app.include_router(tei.public)
    app.include_router(oip.health)
    app.include_router(oip.router)
    app.include_router(openai_compat.router)
    app.include_router(openai_compat.public)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_api_route("/", _index, include_in_schema=False)
    # Another part of the API = one more include_router line above.

    _document_limits(app, settings)
    return app


app = create_app()
