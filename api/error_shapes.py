"""How an error looks on each protocol surface; the errors themselves are decided once.

Every error the API answers has a *kind* (what went wrong, from the client's side) and a
message that says what to fix. ``api.errors`` decides both, whichever route raised;
this module only renders them in the shape the caller's client library parses:

- native (``/classify``, ``/models``, ``/jobs``...): ``{"detail": ...}``;
- TEI (``/predict``, ``/info``, ``POST /``): ``{"error", "error_type"}`` with TEI's status
  convention (413 validation, 422 unreadable input, 424 backend, 429 overloaded);
- Open Inference Protocol (``/v2/...``): ``{"error": ...}``, 400 for bad requests;
- infinity / OpenAI style (``/v1/...``): ``{"error": {"message", "type", "param", "code"}}``.

The surface is chosen by path, not by matched route, so that errors raised before
routing (a body over the size limit, an unknown path) are shaped like the rest.
"""

from __future__ import annotations

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

Surface = Literal["native", "tei", "oip", "openai"]

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

# TEI's own convention (its ErrorType -> status table): validation 413, unreadable input
# 422, a failed model 424, shed load 429, not ready 503.
_TEI: dict[ErrorKind, tuple[int, str]] = {
    "bad_request": (422, "Validation"),
    "invalid": (422, "Validation"),
    "too_large": (413, "Validation"),
    "unauthorized": (401, "Unauthorized"),
    "forbidden": (403, "Unauthorized"),
    "not_found": (404, "Validation"),
    "conflict": (409, "Validation"),
    "not_allowed": (405, "Validation"),
    "overloaded": (429, "Overloaded"),
    "unavailable": (503, "Unhealthy"),
    "backend": (424, "Backend"),
    "internal": (424, "Backend"),
    "client_gone": (499, "Backend"),
}
_OPENAI_TYPE: dict[ErrorKind, str] = {
    "unauthorized": "authentication_error",
    "forbidden": "permission_error",
    "not_found": "not_found_error",
    "overloaded": "rate_limit_error",
    "unavailable": "service_unavailable",
    "backend": "server_error",
    "internal": "server_error",
}


def kind_of_status(status: int) -> ErrorKind:
    if status in _KIND_OF_STATUS:
        return _KIND_OF_STATUS[status]
    return "internal" if status >= 500 else "bad_request"


def native_status(kind: ErrorKind) -> int:
    return _NATIVE_STATUS[kind]


def surface_for(method: str, path: str) -> Surface:
    if path in ("/predict", "/info") or (path == "/" and method == "POST"):
        return "tei"
    if path == "/v2" or path.startswith("/v2/"):
        return "oip"
    if path.startswith("/v1/"):
        return "openai"
    return "native"


@dataclass(frozen=True)
class RenderedError:
    status: int
    body: dict[str, object]


def render(
    surface: Surface,
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
    if surface == "tei":
        status, error_type = _TEI[kind]
        return RenderedError(status, {"error": message, "error_type": error_type})
    status = native_status(kind)
    if surface == "oip":
        if kind == "invalid":
            status = 400  # Triton and KServe answer every malformed request with 400
        return RenderedError(status, {"error": message})
    if surface == "openai":
        kind_type = _OPENAI_TYPE.get(kind, "invalid_request_error")
        return RenderedError(
            status,
            {"error": {"message": message, "type": kind_type, "param": param, "code": status}},
        )
    return RenderedError(status, {"detail": message if native_detail is None else native_detail})


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
