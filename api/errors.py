"""The one place errors become HTTP responses.

Code below the routes raises the errors of ``contracts.errors``; ``STATUS`` gives each
branch of that tree its status, and the handlers shape every response as
``{"detail": ...}``. Unexpected errors become a 500 whose detail names no internals (the
log has the traceback).
"""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from contracts.errors import (
    ClientGone,
    Conflict,
    DeadlineExceeded,
    InternalError,
    LugpiError,
    NotFound,
    Overloaded,
    Unavailable,
    UserError,
)

# Defined in contracts.errors; importable from here as before.
from contracts.errors import InferenceError as InferenceError
from contracts.errors import ModelNotFound as ModelNotFound
from contracts.errors import NoModelLoaded as NoModelLoaded

log = logging.getLogger("lugpi.api")

# FastAPI's generic message when the body is not JSON it can decode (not JSONDecodeError).
_FASTAPI_BODY_ERROR = "There was an error parsing the body"


# The most specific class of an error's MRO that is listed here gives its status.
STATUS: dict[type[LugpiError], int] = {
    UserError: 400,
    NotFound: 404,
    Conflict: 409,
    ClientGone: 499,  # nginx's code; nobody reads it, the access log and metrics do
    Unavailable: 503,
    Overloaded: 429,
    InternalError: 500,
}
# Statuses that tell the client to come back: they carry Retry-After (seconds).
_RETRY_LATER = (Overloaded, DeadlineExceeded)
RETRY_AFTER_S = 1


def status_of(exc: LugpiError) -> int:
    return next((STATUS[c] for c in type(exc).__mro__ if c in STATUS), 500)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that shape every error as ``{"detail": ...}``."""

    async def on_lugpi_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LugpiError)
        status = status_of(exc)
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
