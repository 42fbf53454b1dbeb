"""Refuse request bodies over ``max_body_bytes`` with a JSON 413 that says what to do.

Two checks: a declared Content-Length over the limit is refused before the app runs;
a body sent without one (chunked) is counted as it streams in and refused at the
first byte over. Starlette's own limiter answers a declared-too-large body in plain
text, replacing any handler's JSON, which is why this exists.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.error_shapes import render, surface_for


class BodyTooLarge(HTTPException):
    # An HTTPException so that FastAPI re-raises it from its body reading as is (any
    # other error there becomes "400 error parsing the body") and handlers shape it.
    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            f"request body is larger than {limit} bytes (LUGPI_MAX_BODY_BYTES); "
            "send fewer or shorter texts per request",
        )


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            error = BodyTooLarge(limit)
            surface = surface_for(scope["method"], scope["path"])
            shaped = render(surface, "too_large", error.detail)
            await JSONResponse(shaped.body, status_code=shaped.status)(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counting_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
