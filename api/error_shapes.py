"""How an error looks on each protocol surface; the errors themselves are decided once.

Every error the API answers has a *kind* (what went wrong, from the client's side) and a
message that says what to fix. ``api.errors`` decides both, whichever route raised;
this module only renders them in the shape the caller's client library parses. The
native shape (``/classify``, ``/models``, ``/jobs``...) is ``{"detail": ...}``; each other
protocol declares its own ``ErrorSurface`` (the paths it owns and its renderer) in its
own module and registers it here: TEI in ``api/routes/tei.py``, the Open Inference
Protocol in ``api/routes/oip.py``, infinity / OpenAI in ``api/routes/openai_compat.py``.
A new protocol is one module and one ``include_router`` line.

The surface is chosen by path, not by matched route, so that errors raised before
routing (a body over the size limit, an unknown path) are shaped like the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

ErrorKind = Literal[
    "bad_request",  # 400: the body is not readable JSON, or a rule of the request failed
    "invalid",  # 422: a field has the wrong type or value (schema validation)
    "too_large",  # 413: over a deployment limit (body bytes, texts, characters, tokens)
    "unauthorized",  # 401: no key where one is needed
    "forbidden",  # 403: a key that may not use this route
    "not_found",  # 404: unknown model, version, job or path
    "conflict",  # 409: a valid request the named thing's state forbids (cancel a finished job)
    "not_allowed",  # 405: the path exists, the method does not
    "overloaded",  # 429: load shedding; Retry-After says when to come back
    "unavailable",  # 503: nothing loaded, or a dependency (queue, worker) is down
    "backend",  # 500: the model failed on a request that passed validation
    "internal",  # 500: a bug; the log has the traceback
    "client_gone",  # 499: the client left before its answer; only logs and metrics see it
]


# The most validation errors an error body lists; the rest are counted, not rendered.
# Together with the bounded lists of the request schemas (api.schemas.MAX_LIST_ITEMS)
# this keeps a body of many bad items from costing a body of many error messages.
MAX_REPORTED_ERRORS = 20

_NATIVE_STATUS: dict[ErrorKind, int] = {
    "bad_request": 400,
    "invalid": 422,
    "too_large": 413,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "not_allowed": 405,
    "overloaded": 429,
    "unavailable": 503,
    "backend": 500,
    "internal": 500,
    "client_gone": 499,
}
_KIND_OF_STATUS: dict[int, ErrorKind] = {s: k for k, s in reversed(_NATIVE_STATUS.items())}


def kind_of_status(status: int) -> ErrorKind:
    if status in _KIND_OF_STATUS:
        return _KIND_OF_STATUS[status]
    return "internal" if status >= 500 else "bad_request"


def native_status(kind: ErrorKind) -> int:
    return _NATIVE_STATUS[kind]


@dataclass(frozen=True)
class RenderedError:
    status: int
    body: dict[str, object]


# (kind, message, native_detail, param) -> the status and body a protocol's clients parse.
Renderer = Callable[[ErrorKind, str, "object | None", "str | None"], RenderedError]


@dataclass(frozen=True)
class ErrorSurface:
    """One protocol's error convention, declared by the protocol's own module (a route
    module of ``api.routes``): which requests are its, by method and path (so that errors
    raised before routing, a body over the limit or an unknown path, are shaped like the
    rest), and how it renders an error."""

    name: str
    owns: Callable[[str, str], bool]
    render: Renderer


def _render_native(
    kind: ErrorKind, message: str, native_detail: object | None, param: str | None
) -> RenderedError:
    detail = message if native_detail is None else native_detail
    return RenderedError(native_status(kind), {"detail": detail})


NATIVE = ErrorSurface("native", lambda method, path: True, _render_native)
_SURFACES: dict[str, ErrorSurface] = {}


def register(surface: ErrorSurface) -> ErrorSurface:
    """Add a protocol's convention (at import of its module); a request no registered
    surface owns is native."""
    _SURFACES[surface.name] = surface
    return surface


def surface_for(method: str, path: str) -> str:
    return next((s.name for s in _SURFACES.values() if s.owns(method, path)), NATIVE.name)


def render(
    surface: str,
    kind: ErrorKind,
    message: str,
    native_detail: object | None = None,
    param: str | None = None,
) -> RenderedError:
    """The status and JSON body of an error on ``surface``.

    ``native_detail`` replaces the message in the native shape (FastAPI's list of
    validation errors keeps its structure there); ``param`` names the offending field
    where the shape has a place for it.
    """
    return _SURFACES.get(surface, NATIVE).render(kind, message, native_detail, param)


def validation_message(errors: list[dict[str, object]]) -> str:
    """One line from FastAPI's validation errors: ``inputs: Input should be ...; ...``."""
    parts = []
    for err in errors[:5]:
        loc = [str(p) for p in list(err.get("loc", ()))]  # type: ignore[call-overload]
        if loc and loc[0] in ("body", "query", "path"):
            loc = loc[1:]
        where = ".".join(loc) or "body"
        parts.append(f"{where}: {err.get('msg')}")
    more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more
