"""Prometheus metrics of one app, and the ASGI middleware that times every request.

Each app owns its ``CollectorRegistry`` (tests build many apps in one process). The
``route`` label is the route's path template (``/models/{name}``), never the raw
path, so that label values stay few whatever clients send.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.batching import BatchObserver

# Latencies of a CPU classifier: from sub-millisecond to seconds under overload.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.request_seconds = Histogram(
            "lugpi_http_request_duration_seconds",
            "Time from request to response, by route template and status.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "lugpi_http_errors_total",
            "Responses with status >= 400.",
            ["route", "status"],
            registry=r,
        )
        self.classify_requests = Counter(
            "lugpi_classify_requests_total",
            "Answered /classify calls.",
            ["model", "version"],
            registry=r,
        )
        self.classified_texts = Counter(
            "lugpi_classified_texts_total", "Texts classified.", ["model", "version"], registry=r
        )
        self.truncated_texts = Counter(
            "lugpi_truncated_texts_total",
            "Texts cut to the model's max_length.",
            ["model"],
            registry=r,
        )
        self.batch_size = Histogram(
            "lugpi_batch_size_texts",
            "Texts per onnxruntime call.",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "lugpi_batch_inference_seconds",
            "Duration of one onnxruntime call.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.dropped_requests = Counter(
            "lugpi_dropped_requests_total",
            "Requests not run: queue_full (answered 429), deadline (503), cancelled (the "
            "client went away).",
            ["model", "reason"],
            registry=r,
        )
        self.queued_texts = Gauge(
            "lugpi_queued_texts",
            "Texts waiting for inference, per model (all its loaded versions).",
            ["model"],
            registry=r,
        )
        self.models_loaded = Gauge(
            "lugpi_models_loaded", "Model versions loaded and servable.", registry=r
        )
        self.load_failures = Counter(
            "lugpi_model_load_failures_total",
            "Bundles that failed to load.",
            ["model"],
            registry=r,
        )

    def batch_observer(self, model: str) -> BatchObserver:
        size = self.batch_size.labels(model=model)
        seconds = self.batch_seconds.labels(model=model)

        def observe(n_texts: int, took: float) -> None:
            size.observe(n_texts)
            seconds.observe(took)

        return observe

    def drop_observer(self, model: str) -> Callable[[str], None]:
        def observe(reason: str) -> None:
            self.dropped_requests.labels(model=model, reason=reason).inc()

        return observe


class MetricsMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware): it adds microseconds, not a task per request."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # if the app raises before answering, the server sends a 500
        started = time.perf_counter()

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.request_seconds.labels(scope["method"], route, str(status)).observe(
                time.perf_counter() - started
            )
            if status >= 400:
                self.metrics.errors.labels(route, str(status)).inc()
