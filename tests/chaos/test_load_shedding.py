"""Weaknesses guarded: nothing shed load. The batch queue was unbounded, a request had no
deadline, and a client that disconnected still had its texts tokenized and run.

Each test holds the real onnxruntime call at a gate (``OrtGate``, which also counts the
calls) while real clients talk to a real uvicorn on loopback, so what is queued, refused
or dropped is decided by the server, not by timing."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.main import create_app
from api.settings import ApiSettings
from tests.chaos.servers import OrtGate, ThreadServer, metric, wait_until

TEXT = {"texts": ["a fine film"], "model": "sentiment"}


@pytest.fixture
def serve(repository: Path) -> Iterator[object]:
    started: list[ThreadServer] = []

    def start(**overrides: object) -> tuple[ThreadServer, OrtGate]:
        fields: dict[str, object] = {
            "model_repository": repository,
            "poll_interval_s": 0,
            "intra_op_threads": 1,
            "default_model": "sentiment",
            # The gate holds onnxruntime for seconds: a lone request run inline would hold
            # the event loop with it (api.batching: inline runs are for calls bounded by a
            # short text), and these tests need the server answering while the batch
            # thread is held.
            "inline_lone_requests": False,
            # One engine instance, which the gate holds: with more, the next request would
            # run on another instance instead of waiting in the queue these tests watch.
            "instances": 1,
        }
        fields.update(overrides)
        app = create_app(ApiSettings(**fields))  # type: ignore[arg-type]
        server = ThreadServer(app).__enter__()
        started.append(server)
        gate = OrtGate(app.state.registry.resolve("sentiment", None).classifier)
        return server, gate

    yield start
    for s in started:
        s.__exit__(None, None, None)


def _hold_batcher(url: str, gate: OrtGate) -> tuple[threading.Thread, list[int]]:
    """Send one request that the gate holds inside onnxruntime."""
    status: list[int] = []

    def send() -> None:
        status.append(httpx.post(url + "/classify", json=TEXT, timeout=60).status_code)

    t = threading.Thread(target=send)
    t.start()
    assert gate.entered.wait(30)
    return t, status


def test_random_disconnected_clients_are_not_inferred(serve: object) -> None:
    server, gate = serve()  # type: ignore[operator]
    holder, status = _hold_batcher(server.url, gate)
    batcher = server.server.config.app.state.registry.resolve("sentiment", None).batcher
    body = json.dumps(TEXT).encode()
    request = (
        f"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    clients = []
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", server.port))
        s.sendall(request)
        clients.append(s)
    wait_until(lambda: batcher.queued_texts == 5, 30, "5 requests queued")
    for s in clients:
        s.close()
    wait_until(
        lambda: metric(server.url, 'lugpi_http_errors_total{route="/classify",status="499"}') == 5,
        30,
        "the server to notice 5 disconnects",
    )
    gate.release()
    holder.join(30)
    assert status == [200]
    dropped = 'lugpi_dropped_requests_total{model="sentiment",reason="cancelled"}'
    wait_until(lambda: metric(server.url, dropped) == 5, 30, "5 dropped requests")
    assert gate.calls == 1  # only the held request reached onnxruntime
    assert httpx.post(server.url + "/classify", json=TEXT).status_code == 200
    assert gate.calls == 2


def test_random_burst_beyond_the_queue_bound_gets_429_then_serves(serve: object) -> None:
    server, gate = serve(max_queued_texts=64)  # type: ignore[operator]
    holder, _ = _hold_batcher(server.url, gate)
    eight = {"texts": ["a fine film"] * 8, "model": "sentiment"}

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as c:
            return list(await asyncio.gather(*(c.post("/classify", json=eight) for _ in range(20))))

    results: list[list[httpx.Response]] = []
    sender = threading.Thread(target=lambda: results.append(asyncio.run(burst())))
    sender.start()
    rejected = 'lugpi_dropped_requests_total{model="sentiment",reason="queue_full"}'
    wait_until(lambda: metric(server.url, rejected) == 12, 30, "12 refused requests")
    ready = httpx.get(server.url + "/readyz")
    assert ready.status_code == 503 and "overloaded" in ready.json()["detail"]
    assert metric(server.url, 'lugpi_queued_texts{model="sentiment"}') == 64
    gate.release()
    sender.join(60)
    holder.join(30)
    codes = sorted(r.status_code for r in results[0])
    assert codes == [200] * 8 + [429] * 12
    refused = [r for r in results[0] if r.status_code == 429]
    assert all(r.headers["Retry-After"] == "1" for r in refused)
    assert "LUGPI_MAX_QUEUED_TEXTS" in refused[0].json()["detail"]
    assert httpx.get(server.url + "/readyz").status_code == 200
    assert httpx.post(server.url + "/classify", json=TEXT).status_code == 200


def test_random_requests_past_their_deadline_are_dropped_unrun(serve: object) -> None:
    server, gate = serve(request_timeout_s=0.2)  # type: ignore[operator]
    holder, _ = _hold_batcher(server.url, gate)
    late: list[httpx.Response] = []
    t = threading.Thread(
        target=lambda: late.append(httpx.post(server.url + "/classify", json=TEXT))
    )
    t.start()
    batcher = server.server.config.app.state.registry.resolve("sentiment", None).batcher
    wait_until(lambda: batcher.queued_texts == 1, 30, "the second request queued")
    threading.Event().wait(0.5)  # longer than its deadline, while the gate holds the batcher
    gate.release()
    t.join(30)
    holder.join(30)
    (r,) = late
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    assert "LUGPI_REQUEST_TIMEOUT_S" in r.json()["detail"]
    assert gate.calls == 1
    dropped = 'lugpi_dropped_requests_total{model="sentiment",reason="deadline"}'
    assert metric(server.url, dropped) == 1


def test_random_deadline_counts_from_the_request_s_arrival(serve: object) -> None:
    """A request whose body took longer than the deadline to arrive (a slow client, or an
    event loop too busy to read it) is dropped, not run: the clock starts when the server
    has its head, not when it reaches the batcher."""
    server, gate = serve(request_timeout_s=0.3)  # type: ignore[operator]
    gate.release()
    body = json.dumps(TEXT).encode()
    head = (
        f"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(head + body[:5])
        threading.Event().wait(0.8)
        s.sendall(body[5:])
        s.settimeout(30)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    status = reply.split(b" ", 2)[1]
    assert status == b"503", reply[:300]
    assert b"LUGPI_REQUEST_TIMEOUT_S" in reply
    assert gate.calls == 0
