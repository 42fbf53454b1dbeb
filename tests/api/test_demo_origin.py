"""Demo mode (LUGPI_ALLOW_UNAUTHENTICATED_ADMIN, no admin keys) opens the admin routes to
whoever reaches the server, which is meant to be one user on loopback. A web page of
another site could still reach it through that user's browser: a cross-site
``text/plain`` POST, or a name of its own that its DNS points at 127.0.0.1 (DNS
rebinding: a foreign Host). ``api.same_origin`` refuses both on every state-changing
request in that mode; a test below sends them to every such route the app has, so a
new route is covered without being listed."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import MakeClient

RELOAD = "/models/sentiment/reload"
CROSS_SITE = [
    {"Origin": "http://evil.example"},
    {"Origin": "null"},
    {"Host": "evil.example:8000", "Origin": "http://evil.example:8000"},  # DNS rebinding
    {"Host": "evil.example:8000", "Referer": "http://evil.example:8000/page"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Origin": "http://localhost:9999", "Host": "localhost:8000"},  # another local site
    {"Content-Type": "text/plain"},  # a form or a "simple" request needs no preflight
    {"Content-Type": "application/x-www-form-urlencoded"},
]


@pytest.fixture
def demo(make_client: MakeClient) -> TestClient:
    return make_client(allow_unauthenticated_admin=True)


@pytest.mark.parametrize("headers", CROSS_SITE, ids=[str(h) for h in CROSS_SITE])
def test_random_cross_site_state_changes_are_refused_in_demo_mode(
    demo: TestClient, headers: dict[str, str]
) -> None:
    r = demo.post(RELOAD, headers=headers, content=b"{}" if "Content-Type" in headers else None)
    assert r.status_code == 403, r.text
    assert "cross-site" in r.json()["detail"] or "Host" in r.json()["detail"]


@pytest.mark.parametrize(
    "headers",
    [
        {},  # curl, scripts: no browser, nothing a foreign page can drive
        {"Origin": "http://localhost:8000", "Host": "localhost:8000"},
        {
            "Origin": "http://127.0.0.1:8000",
            "Host": "127.0.0.1:8000",
            "Sec-Fetch-Site": "same-origin",
        },
        {"Origin": "http://[::1]:8000", "Host": "[::1]:8000"},
        {"Content-Type": "application/json"},
    ],
)
def test_random_same_origin_and_non_browser_callers_still_work(
    demo: TestClient, headers: dict[str, str]
) -> None:
    assert demo.post(RELOAD, headers=headers).status_code == 200


def test_random_reads_and_keyed_servers_are_not_affected(make_client: MakeClient) -> None:
    demo = make_client(allow_unauthenticated_admin=True)
    assert demo.get("/models", headers={"Origin": "http://evil.example"}).status_code == 200
    keyed = make_client(admin_keys=["admin-key"], allow_unauthenticated_admin=True)
    headers = {"Origin": "http://evil.example", "X-API-Key": "admin-key"}
    assert keyed.post(RELOAD, headers=headers).status_code == 200


def test_random_every_state_changing_route_is_covered(demo: TestClient) -> None:
    """Every non-GET route of the app, called cross-site, is refused before its handler
    runs: the check is middleware, not a dependency a new route could forget."""
    paths = demo.get("/openapi.json").json()["paths"]
    calls = [
        (method, path.replace("{name}", "sentiment").replace("{job_id}", "0" * 32)
         .replace("{version}", "v1"))
        for path, ops in paths.items()
        for method in ops
        if method not in ("get", "head", "options")
    ]  # fmt: skip
    assert ("post", RELOAD) in calls and len(calls) > 5
    for method, path in calls:
        r = demo.request(method.upper(), path, headers={"Origin": "http://evil.example"})
        assert r.status_code == 403, (method, path, r.status_code)
