"""Errors of the serving layer, and the one place they become HTTP responses.

Code below the routes raises the errors of ``contracts.errors``; ``KIND`` gives each
branch of that tree its kind (what went wrong, from the client's side; one status per
kind), and ``api.error_shapes`` renders it in the shape of the surface that was called
(``{"detail": ...}`` on the native routes). Unexpected errors become a 500 whose message
names no internals (the log has the traceback).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.error_shapes import (
    MAX_REPORTED_ERRORS,
    ErrorKind,
    kind_of_status,
    render,
    surface_for,
    validation_message,
)
from contracts.errors import (
    ClientGone,
    Conflict,
    DeadlineExceeded,
    InferenceError,
    InternalError,
    InvalidInput,
    LimitExceeded,
    LugpiError,
    NotFound,
    Overloaded,
    Unavailable,
    UserError,
)

# Defined in contracts.errors; importable from here as before.
from contracts.errors import ModelNotFound as ModelNotFound
from contracts.errors import NoModelLoaded as NoModelLoaded

log = logging.getLogger("lugpi.api")

# FastAPI's generic message when the body is not JSON it can decode (not JSONDecodeError).
_FASTAPI_BODY_ERROR = "There was an error parsing the body"


# The status table: the most specific class of an error's MRO listed here gives its kind,
# and each kind has one status per surface (api.error_shapes).
KIND: dict[type[LugpiError], ErrorKind] = {
    UserError: "bad_request",
    InvalidInput: "invalid",
    LimitExceeded: "too_large",
    NotFound: "not_found",
    Conflict: "conflict",
    ClientGone: "client_gone",
    Unavailable: "unavailable",
    Overloaded: "overloaded",
    InternalError: "internal",
    InferenceError: "backend",
}
# Statuses that tell the client to come back: they carry Retry-After (seconds).
_RETRY_LATER = (Overloaded, DeadlineExceeded)
RETRY_AFTER_S = 1


def kind_of(exc: LugpiError) -> ErrorKind:
    return next((KIND[c] for c in type(exc).__mro__ if c in KIND), "internal")


def error_response(
    request: Request,
    kind: ErrorKind,
    message: str,
    native_detail: object | None = None,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """The error as the called surface shapes it (see ``api.error_shapes``)."""
    shaped = render(
        surface_for(request.method, request.url.path), kind, message, native_detail, param
    )
    body = json.dumps(shaped.body, default=str).encode()  # ASCII: whatever it holds encodes
    return Response(body, status_code=shaped.status, media_type="application/json", headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that shape every error as ``{"detail": ...}``."""

    async def on_lugpi_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LugpiError)
        kind = kind_of(exc)
        headers = None
        if isinstance(exc, _RETRY_LATER):
            headers = {"Retry-After": str(RETRY_AFTER_S)}
        elif kind in ("backend", "internal", "unavailable"):
            log.error("%s %s failed: %s", request.method, request.url.path, exc)
        return error_response(
            request, kind, str(exc), param=getattr(exc, "field", None), headers=headers
        )

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400 and exc.detail == _FASTAPI_BODY_ERROR:
            cause = exc.__cause__
            if isinstance(cause, UnicodeDecodeError):
                why = f"the body is not valid UTF-8 (byte {cause.start}); send UTF-8 encoded JSON"
            else:
                why = f"the body could not be read as JSON ({type(cause).__name__})"
            exc = StarletteHTTPException(400, why)
        if surface_for(request.method, request.url.path) == "native":
            return await http_exception_handler(request, exc)
        return error_response(
            request, kind_of_status(exc.status_code), str(exc.detail), headers=exc.headers
        )

    async def on_invalid(request: Request, exc: Exception) -> Response:
        # FastAPI's default echoes each offending input back: a client's whole text, or
        # an unpaired surrogate that cannot even be encoded (a 500). Location and message
        # say what to fix without it. ASCII JSON: whatever a message holds, it encodes.
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        detail: list[dict[str, object]] = []
        for err in errors[:MAX_REPORTED_ERRORS]:
            item = {"type": err.get("type"), "loc": list(err.get("loc", ())), "msg": err.get("msg")}
            if err.get("ctx"):
                item["ctx"] = {k: str(v)[:200] for k, v in err["ctx"].items()}
            detail.append(item)
        message = validation_message(detail)
        if len(errors) > MAX_REPORTED_ERRORS:
            hidden = len(errors) - MAX_REPORTED_ERRORS
            detail.append(
                {"type": "more_errors", "loc": ["body"], "msg": f"{hidden} more errors not shown"}
            )
            message += f" ({len(errors)} errors in all)"
        return error_response(request, "invalid", message, native_detail=detail)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        # Starlette re-raises after this response, so the server logs the traceback once.
        return error_response(request, "internal", "internal error; the server log has the details")

    app.add_exception_handler(LugpiError, on_lugpi_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(Exception, on_unexpected)
