"""Same-origin rule of demo mode (LUGPI_ALLOW_UNAUTHENTICATED_ADMIN with no admin key).

That mode opens the admin routes to whoever reaches the server, which is meant to be one
user on loopback. A page of another site can still reach it through that user's
browser: a cross-site "simple" POST (``text/plain`` or a form: no CORS preflight), or a
name of its own that its DNS points at 127.0.0.1 (DNS rebinding: the request then
carries the attacker's ``Host``). So, in that mode, every state-changing request
(any method but GET, HEAD, OPTIONS) is refused with 403 when

- it comes from a browser (it carries ``Origin``, ``Referer`` or ``Sec-Fetch-Site``) and
  its ``Host`` is not a loopback name (``localhost``, ``127.x.x.x``, ``[::1]``);
- its ``Origin`` is not that same loopback host and port (``null`` included), or
  ``Sec-Fetch-Site`` says ``cross-site`` or ``same-site``;
- its body is of a type a page may send cross-site without a preflight
  (``text/plain``, ``application/x-www-form-urlencoded``, ``multipart/form-data``);
  the API reads JSON only.

A client that is no browser (curl, scripts, the Python clients) sends none of these and
is not affected: no foreign page can drive it. This is middleware, not a dependency, so a
route added later is covered without naming it. With admin keys configured the keys
protect the routes and nothing here runs.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from api.error_shapes import render, surface_for

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Content types a cross-site page may send without a CORS preflight.
SIMPLE_TYPES = frozenset({"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"})


def _split_host(host: str) -> tuple[str, str]:
    """(hostname, port) of a Host header or an origin's netloc."""
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        return name, rest.removeprefix(":")
    name, _, port = host.partition(":")
    return name, port


def is_loopback(hostname: str) -> bool:
    if hostname.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def cross_site_reason(method: str, headers: Headers) -> str | None:
    """Why this request may have been sent by a foreign page (None: it may not have)."""
    if method in SAFE_METHODS:
        return None
    origin, fetch_site = headers.get("origin"), headers.get("sec-fetch-site")
    host = headers.get("host", "")
    browser = origin is not None or fetch_site is not None or "referer" in headers
    if browser and not is_loopback(_split_host(host)[0]):
        return (
            f"Host {host!r} is not a loopback name: in demo mode (no admin keys) the server "
            "takes browser requests for localhost only (a foreign name may be DNS rebinding)"
        )
    if fetch_site in ("cross-site", "same-site"):
        return (
            f"a cross-site request (Sec-Fetch-Site {fetch_site}); in demo mode (no admin keys) "
            "only the server's own page may change state"
        )
    if origin is not None:
        parts = urlsplit(origin)
        if origin == "null" or _split_host(parts.netloc) != _split_host(host):
            return (
                f"a cross-site request (Origin {origin!r}); in demo mode (no admin keys) only "
                "the server's own page may change state"
            )
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in SIMPLE_TYPES:
        return (
            f"a {content_type} body, which a cross-site page may send without a preflight; "
            "send application/json"
        )
    return None


class SameOriginMiddleware:
    """Installed by ``create_app`` in demo mode only (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            why = cross_site_reason(scope["method"], Headers(scope=scope))
            if why is not None:
                shaped = render(surface_for(scope["method"], scope["path"]), "forbidden", why)
                await JSONResponse(shaped.body, status_code=shaped.status)(scope, receive, send)
                return
        await self.app(scope, receive, send)
