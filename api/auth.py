"""API keys in the ``X-API-Key`` header.

- No keys configured at all: the API is open (a local, single-user setup).
- ``api_keys`` configured: /classify needs one of them or an admin key.
- Admin routes (reload, jobs) need an admin key whenever any key is configured;
  with ``api_keys`` but no ``admin_keys`` they are closed to everyone.

Every configured key is compared in constant time (``hmac.compare_digest``), and no
key, given or configured, is ever logged or echoed.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Annotated

from fastapi import Depends, HTTPException, Security
from fastapi.security import APIKeyHeader
from pydantic import SecretStr

from api.deps import SettingsDep
from api.schemas import error_responses

API_KEY_HEADER = "X-API-Key"

_header = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="Needed when the server has keys configured (LUGPI_API_KEYS / LUGPI_ADMIN_KEYS).",
)


def _matches(given: str, allowed: Sequence[SecretStr]) -> bool:
    # Compare with every key, without stopping early, so timing reveals nothing.
    given_bytes = given.encode()
    match = False
    for key in allowed:
        match |= hmac.compare_digest(given_bytes, key.get_secret_value().encode())
    return match


def _missing() -> HTTPException:
    return HTTPException(401, f"missing API key: send it in the {API_KEY_HEADER} header")


async def require_classify_key(
    settings: SettingsDep, key: Annotated[str | None, Security(_header)]
) -> None:
    if not settings.auth_enabled:
        return
    if not key:
        raise _missing()
    if not _matches(key, [*settings.api_keys, *settings.admin_keys]):
        raise HTTPException(403, "invalid API key")


async def require_admin_key(
    settings: SettingsDep, key: Annotated[str | None, Security(_header)]
) -> None:
    if not settings.auth_enabled:
        return
    if not key:
        raise _missing()
    if not settings.admin_keys:
        raise HTTPException(
            403, "admin routes are disabled: the server has no admin keys (LUGPI_ADMIN_KEYS)"
        )
    if not _matches(key, settings.admin_keys):
        raise HTTPException(403, "this API key may not use admin routes; use an admin key")


# Use as ``dependencies=[ClassifyAccess]`` / ``[AdminAccess]`` on a route or router,
# with ``responses=AUTH_RESPONSES`` so that the OpenAPI schema documents them.
ClassifyAccess = Depends(require_classify_key)
AdminAccess = Depends(require_admin_key)
AUTH_RESPONSES = error_responses(
    s401=f"Keys are configured and the {API_KEY_HEADER} header is missing.",
    s403="The key is not valid (for this route).",
)
