"""API keys, sent as ``X-API-Key: <key>`` or ``Authorization: Bearer <key>``.

Scopes (each configured key is compared in constant time; no key is logged or echoed):

- classify (/classify): open when no keys are configured at all (a local, single-user
  setup); otherwise one of ``api_keys``, ``teacher_keys`` or ``admin_keys``.
- teacher (/classify/teacher, which ties up a GPU worker): ``teacher_keys`` or
  ``admin_keys``.
- admin (reload, jobs): ``admin_keys``.

Safe by default: a scope with no key configured is closed to everyone (401 without a
key, 403 with one), unless ``allow_unauthenticated_admin`` is set and no admin key
exists, which opens admin and teacher routes to every client (the app logs a warning at
start-up). When both headers are sent, ``X-API-Key`` is the one checked.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr
from starlette.datastructures import Headers

from api.deps import SettingsDep
from api.schemas import error_responses
from api.settings import ApiSettings

API_KEY_HEADER = "X-API-Key"

_header = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="An API key (LUGPI_API_KEYS / LUGPI_TEACHER_KEYS / LUGPI_ADMIN_KEYS).",
)
_bearer = HTTPBearer(
    auto_error=False,
    description="The same keys as X-API-Key, as `Authorization: Bearer <key>`.",
)


def _matches(given: str, allowed: Sequence[SecretStr]) -> bool:
    # Compare with every key, without stopping early, so timing reveals nothing.
    given_bytes = given.encode()
    match = False
    for key in allowed:
        match |= hmac.compare_digest(given_bytes, key.get_secret_value().encode())
    return match


def _missing(what: str = "an API key") -> HTTPException:
    return HTTPException(
        401,
        f"missing {what}: send it in the {API_KEY_HEADER} header or as "
        "'Authorization: Bearer <key>'",
        headers={"WWW-Authenticate": "Bearer"},
    )


async def given_key(
    key: Annotated[str | None, Security(_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> str | None:
    if key:
        return key
    if bearer is not None and bearer.credentials:
        return bearer.credentials
    return None


GivenKey = Annotated[str | None, Depends(given_key)]


def _require(
    settings: ApiSettings, key: str | None, allowed: Sequence[SecretStr], scope: str, env: str
) -> None:
    if not allowed:
        if settings.allow_unauthenticated_admin and not settings.admin_keys:
            return
        if not key:
            raise _missing(f"{scope} key ({scope} routes need one; the server has none: set {env})")
        raise HTTPException(403, f"{scope} routes are disabled: the server has no keys ({env})")
    if not key:
        raise _missing(f"{scope} key")
    if not _matches(key, allowed):
        raise HTTPException(403, f"this API key may not use {scope} routes; use a {scope} key")


def classify_keys(settings: ApiSettings) -> list[SecretStr]:
    """The keys that open /classify; none configured: open to everyone."""
    return [*settings.api_keys, *settings.teacher_keys, *settings.admin_keys]


async def require_classify_key(settings: SettingsDep, key: GivenKey) -> None:
    allowed = classify_keys(settings)
    if not allowed:
        return
    if not key:
        raise _missing()
    if not _matches(key, allowed):
        raise HTTPException(403, "invalid API key")


async def require_teacher_key(settings: SettingsDep, key: GivenKey) -> None:
    allowed = [*settings.teacher_keys, *settings.admin_keys]
    _require(settings, key, allowed, "teacher", "LUGPI_TEACHER_KEYS or LUGPI_ADMIN_KEYS")


async def require_admin_key(settings: SettingsDep, key: GivenKey) -> None:
    _require(settings, key, settings.admin_keys, "admin", "LUGPI_ADMIN_KEYS")


# Use as ``dependencies=[ClassifyAccess]`` / ``[AdminAccess]`` on a route or router,
# with ``responses=AUTH_RESPONSES`` so that the OpenAPI schema documents them.
ClassifyAccess = Depends(require_classify_key)
TeacherAccess = Depends(require_teacher_key)
AdminAccess = Depends(require_admin_key)
AUTH_RESPONSES = error_responses(
    s401="No key sent, and the route needs one.",
    s403="The key is not valid (for this route).",
)


def _key_from_headers(headers: Headers, *, spaced_bearer: bool = True) -> str | None:
    """The key as the two security schemes read it: ``X-API-Key`` if not empty, else the
    credential of ``Authorization: Bearer``, trimmed (None: no key). ``spaced_bearer`` off:
    a credential with spaces around it counts as no key (older FastAPI does not trim it)."""
    key = headers.get(API_KEY_HEADER)
    if key:
        return key
    scheme, _, credentials = headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or (not spaced_bearer and credentials != credentials.strip()):
        return None
    return credentials.strip() or None


def classify_key_accepted(settings: ApiSettings, headers: Headers) -> bool:
    """Whether ``require_classify_key`` lets these headers through, read without FastAPI's
    dependencies (``api.fast_classify``). Conservative: a Bearer credential with spaces
    around it is not accepted here (False sends the request through the route, whose
    dependencies decide)."""
    allowed = classify_keys(settings)
    if not allowed:
        return True
    key = _key_from_headers(headers, spaced_bearer=False)
    return key is not None and _matches(key, allowed)


async def caller_is_admin(settings: SettingsDep, request: Request) -> bool:
    """On public routes: whether to show details (full errors, provenance) to this caller.
    Read from the headers directly: a public route must not declare a security scheme
    in OpenAPI (clients would take it for a required key)."""
    if not settings.admin_keys:
        return settings.allow_unauthenticated_admin
    key = _key_from_headers(request.headers)
    return key is not None and _matches(key, settings.admin_keys)


IsAdmin = Annotated[bool, Depends(caller_is_admin)]
