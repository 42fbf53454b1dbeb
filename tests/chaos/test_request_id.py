"""Weakness guarded (operability): nothing tied a response, its error body and the log
lines written for it together. Every response now carries ``X-Request-ID`` (the client's,
when sane), error bodies carry ``request_id``, and the server's log lines show it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import MakeClient
from tests.chaos.servers import ChildServer, wait_until


@pytest.fixture
def keyed(make_client: MakeClient) -> TestClient:
    return make_client(api_keys=["k"], max_body_bytes=1024)


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/healthz", None, 200),
        ("POST", "/classify", {"texts": ["a"]}, 401),  # auth
        ("POST", "/models/sentiment/reload", None, 401),
        ("GET", "/models/nope", None, 404),
    ],
)
def test_random_every_response_has_a_request_id(
    keyed: TestClient, method: str, path: str, body: object, status: int
) -> None:
    r = keyed.request(method, path, json=body)
    assert r.status_code == status
    rid = r.headers["X-Request-ID"]
    assert len(rid) == 32
    if status >= 400:
        assert r.json()["request_id"] == rid


def test_random_client_ids_are_echoed_and_bad_ones_replaced(keyed: TestClient) -> None:
    headers = {"X-API-Key": "k", "X-Request-ID": "client-42.a:b"}
    r = keyed.post("/classify", json={"texts": [""], "model": "sentiment"}, headers=headers)
    assert r.status_code == 422
    assert r.headers["X-Request-ID"] == "client-42.a:b" == r.json()["request_id"]
    big = keyed.post("/classify", content=b"x" * 4096, headers=headers)
    assert big.status_code == 413 and big.json()["request_id"] == "client-42.a:b"
    forged = keyed.get("/healthz", headers={"X-Request-ID": "INFO forged line; user=admin"})
    assert forged.headers["X-Request-ID"] != "INFO forged line; user=admin"
    assert len(forged.headers["X-Request-ID"]) == 32


def test_request_id_appears_in_the_server_log(tmp_path: Path) -> None:
    """A real uvicorn with no model: /classify answers 503 and logs it, with the id."""
    server = ChildServer({"LUGPI_MODEL_REPOSITORY": str(tmp_path / "empty")}, tmp_path / "log")
    try:
        wait_until(lambda: _up(server.url), 60, "the server to answer")
        r = httpx.post(server.url + "/classify", json={"texts": ["a"]},
                       headers={"X-Request-ID": "trace-me-123"})  # fmt: skip
        assert r.status_code == 503 and r.json()["request_id"] == "trace-me-123"
        wait_until(lambda: "[trace-me-123]" in server.log.read_text(), 10, "the log line")
    finally:
        server.close()


def _up(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz").status_code == 200
    except httpx.HTTPError:
        return False
