"""A request id on every response, in the log lines written while serving it, and in
every error body.

The id is the client's ``X-Request-ID`` when it sends a sane one (up to 128 letters,
digits and ``._:-``: anything else could forge log lines), else a new random one. It is
echoed in the ``X-Request-ID`` response header; native JSON error bodies (``{"detail":
...}``, status >= 400, from any layer: auth, validation, body limit, handlers) get a
``request_id`` field; and log
records of ``lugpi.*`` carry it as ``%(request_id)s`` (``RequestIdFilter``). The same
layer notes when the request arrived (``arrived``), so that its deadline also counts the
time spent before it reached the batcher (a slow body, a busy event loop).
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-ID"
_HEADER = HEADER.lower().encode()
_SANE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

current: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
# time.monotonic() when the server had the request's head: request deadlines count from it.
arrived: contextvars.ContextVar[float | None] = contextvars.ContextVar("arrived", default=None)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current.get()
        return True


def _given(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == _HEADER:
            text = value.decode("latin-1")
            return text if _SANE.match(text) else None
    return None


class RequestIdMiddleware:
    """Pure ASGI; the outermost layer, so that every response passes through it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # 32 random hex digits, as uuid4().hex has, without building a UUID (1.7 vs 0.3 us)
        request_id = _given(scope) or os.urandom(16).hex()
        token = current.set(request_id)
        arrival = arrived.set(time.monotonic())
        start: Message | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != _HEADER]
                headers.append((_HEADER, request_id.encode()))
                message = {**message, "headers": headers}
                if message["status"] >= 400 and _is_json(headers):
                    start = message  # held until the body is known, to add the id to it
                    return
            elif message["type"] == "http.response.body" and start is not None:
                if message.get("more_body"):  # not a small error body: pass it on as is
                    await send(start)
                    start = None
                else:
                    body = _with_id(message.get("body", b""), request_id)
                    headers = [(k, v) for k, v in start["headers"] if k != b"content-length"]
                    headers.append((b"content-length", str(len(body)).encode()))
                    await send({**start, "headers": headers})
                    start = None
                    message = {**message, "body": body}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            current.reset(token)
            arrived.reset(arrival)


def _is_json(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(k == b"content-type" and v.startswith(b"application/json") for k, v in headers)


def _with_id(body: bytes, request_id: str) -> bytes:
    try:
        data = json.loads(body)
    except ValueError:
        return body
    # Only the native shape ({"detail": ...}): the drop-in surfaces' error bodies (TEI,
    # OIP, infinity) stay exactly what their clients parse; they get the header.
    if not isinstance(data, dict) or "detail" not in data:
        return body
    data["request_id"] = request_id
    return json.dumps(data, ensure_ascii=True).encode()
