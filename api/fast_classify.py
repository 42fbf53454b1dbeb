"""POST /classify without FastAPI's per-request dependency solving, for requests that pass.

FastAPI solves the route's dependency tree on every request (the key's two security
schemes, the settings, registry and metrics getters, the body and its limits). Without
that, a lone request costs 0.17 ms around the graph call instead of 0.31 ms (in-process,
2-core AVX-512 machine, benchmarks/bench_request_overhead.py). This route sits in front
of the FastAPI route on the same path and does the same work with the same functions:
the body parsed as FastAPI parses it (``json.loads``) and validated by the route's own
model, the deployment's limits (``api.scoring.check_limits``), the key (``api.auth``),
then the route's own ``answer``.

Only a request that passes every check is answered here. One that does not (bad JSON,
another content type, a schema or limit error, a missing or wrong key, a body that could
not be read) is handed, with its body, to the FastAPI route, which answers it exactly as
it always did; so there is one definition of every error. Errors past the checks (an
unknown model, a text pair refused, overload, a deadline) are raised for the app's
exception handlers, as the route raises them. The OpenAPI schema still documents the
FastAPI route. LUGPI_CLASSIFY_FAST_PATH=false leaves every request to it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import classify_key_accepted
from api.metrics import ApiMetrics
from api.registry import ModelRegistry
from api.routes.classify import answer
from api.schemas import ClassifyRequest
from api.scoring import check_limits
from api.settings import ApiSettings

PATH = "/classify"


def _is_json(content_type: str | None) -> bool:
    """FastAPI reads the body as JSON for application/json and application/*+json; a
    missing content type (which FastAPI also reads as JSON) is left to the route."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _replaying(
    messages: list[Message], receive: Receive, error: BaseException | None = None
) -> Callable[[], Awaitable[Message]]:
    """A ``receive`` that gives the messages already read again, then raises ``error`` (what
    reading raised) or goes on with the connection's own."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        if error is not None:
            raise error
        return await receive()

    return replay


# Set on a request handed on, so that the router passes this route by the second time.
HANDED_ON = "lugpi.classify_handed_on"


class FastClassify:
    """The ASGI app of the fast route; ``route`` is the FastAPI route it stands in front of,
    ``router`` the app's router, through which a request is handed on to it."""

    def __init__(
        self,
        route: APIRoute,
        router: ASGIApp,
        settings: ApiSettings,
        registry: ModelRegistry,
        metrics: ApiMetrics,
    ) -> None:
        self.route = route
        self.router = router
        self.settings = settings
        self.registry = registry
        self.metrics = metrics
        self.answered = 0  # requests answered here (tests)
        self.handed_on = 0  # requests handed to the FastAPI route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        messages: list[Message] = []
        try:
            while True:
                message = await receive()
                messages.append(message)
                if message["type"] != "http.request" or not message.get("more_body"):
                    break
        except Exception as e:  # over the body limit, say: the route raises it as before
            await self._hand_on(scope, _replaying(messages, receive, e), send)
            return
        body = self._checked(scope, messages)
        if body is None:
            await self._hand_on(scope, _replaying(messages, receive), send)
            return
        self.answered += 1
        scope["route"] = self.route  # what routing to the FastAPI route sets (metrics)
        response = await answer(body, Request(scope, receive), self.registry, self.metrics)
        await response(scope, receive, send)

    def _checked(self, scope: Scope, messages: list[Message]) -> ClassifyRequest | None:
        """The request's body if it passes every check of the FastAPI route, else None."""
        if messages[-1]["type"] != "http.request":  # the client went away mid-body
            return None
        headers = Headers(scope=scope)
        if not _is_json(headers.get("content-type")):
            return None
        if not classify_key_accepted(self.settings, headers):
            return None
        try:
            body = ClassifyRequest.model_validate(
                json.loads(b"".join(m.get("body", b"") for m in messages))
            )
            check_limits(self.settings, body.texts, body.text_pairs, "texts", "text_pairs")
        except Exception:  # bad JSON, too deep to decode, the schema, the limits: the route's
            return None  # errors, and only the route answers them
        return body

    async def _hand_on(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.handed_on += 1
        scope[HANDED_ON] = True
        await self.router(scope, receive, send)


class _FastRoute(Route):
    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope.get(HANDED_ON):
            return Match.NONE, {}
        return super().matches(scope)


def install(app: FastAPI, settings: ApiSettings, route: APIRoute) -> FastClassify | None:
    """Add the fast route in front of ``route``, the FastAPI route of POST /classify: call
    it before including the route's router. None when LUGPI_CLASSIFY_FAST_PATH is off."""
    if not settings.classify_fast_path:
        return None
    fast = FastClassify(route, app.router, settings, app.state.registry, app.state.metrics)
    # First: the router tries its routes in order, and this one answers most requests.
    app.router.routes.insert(0, _FastRoute(PATH, fast, methods=["POST"], include_in_schema=False))
    return fast
