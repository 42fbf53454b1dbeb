"""Errors of the serving layer, and the one place they become HTTP responses.

Code below the routes raises ``LugpiError`` subclasses that say what to fix; the
handlers here turn them into ``{"detail": ...}`` with the right status. Unexpected
errors become a 500 whose detail names no internals (the log has the traceback).
"""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from contracts.errors import LugpiError

log = logging.getLogger("lugpi.api")

# FastAPI's generic message when the body is not JSON it can decode (not JSONDecodeError).
_FASTAPI_BODY_ERROR = "There was an error parsing the body"


class ModelNotFound(LugpiError):
    """A request names a model or version that is not served."""


class NoModelLoaded(LugpiError):
    """No bundle is loaded (empty repository, or every bundle failed to load)."""


class InferenceError(LugpiError):
    """onnxruntime failed on a batch that passed validation."""


class Overloaded(LugpiError):
    """More texts are queued for this model than LUGPI_MAX_QUEUED_TEXTS: try again later."""


class DeadlineExceeded(LugpiError):
    """A request waited in the queue past LUGPI_REQUEST_TIMEOUT_S; it was dropped unrun."""


class ClientGone(LugpiError):
    """The client disconnected before its answer was ready; its work was dropped."""


_STATUS: dict[type[LugpiError], int] = {
    ModelNotFound: 404,
    Overloaded: 429,
    NoModelLoaded: 503,
    DeadlineExceeded: 503,
    InferenceError: 500,
    ClientGone: 499,  # nginx's code; nobody reads it, the access log and metrics do
}
# Statuses that tell the client to come back: they carry Retry-After (seconds).
_RETRY_LATER = (Overloaded, DeadlineExceeded)
RETRY_AFTER_S = 1


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that shape every error as ``{"detail": ...}``."""

    async def on_lugpi_error(request: Request, exc: Exception) -> Response:
        status = next((s for t, s in _STATUS.items() if isinstance(exc, t)), 400)
        headers = None
        if isinstance(exc, _RETRY_LATER):
            headers = {"Retry-After": str(RETRY_AFTER_S)}
        elif status >= 500:
            log.error("%s %s failed: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400 and exc.detail == _FASTAPI_BODY_ERROR:
            cause = exc.__cause__
            if isinstance(cause, UnicodeDecodeError):
                why = f"the body is not valid UTF-8 (byte {cause.start}); send UTF-8 encoded JSON"
            else:
                why = f"the body could not be read as JSON ({type(cause).__name__})"
            exc = StarletteHTTPException(400, why)
        return await http_exception_handler(request, exc)

    async def on_invalid(request: Request, exc: Exception) -> Response:
        # FastAPI's default echoes each offending input back: a client's whole text, or
        # an unpaired surrogate that cannot even be encoded (a 500). Location and message
        # say what to fix without it. ASCII JSON: whatever a message holds, it encodes.
        assert isinstance(exc, RequestValidationError)
        detail = []
        for err in exc.errors():
            item = {"type": err.get("type"), "loc": list(err.get("loc", ())), "msg": err.get("msg")}
            if err.get("ctx"):
                item["ctx"] = {k: str(v) for k, v in err["ctx"].items()}
            detail.append(item)
        body = json.dumps({"detail": detail}, default=str).encode()
        return Response(body, status_code=422, media_type="application/json")

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        # Starlette re-raises after this response, so the server logs the traceback once.
        return JSONResponse(
            {"detail": "internal error; the server log has the details"}, status_code=500
        )

    app.add_exception_handler(LugpiError, on_lugpi_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(Exception, on_unexpected)
