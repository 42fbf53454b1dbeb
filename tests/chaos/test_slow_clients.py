"""Weakness guarded: idle and slow clients took the whole service. uvicorn's
``--limit-concurrency`` counted idle connections, and nothing timed a body: 260 sockets
that send nothing, or 260 requests that send their head and then a body byte every 2 s,
made every legitimate request get 503 for as long as they lasted.

The server runs as deployed (``python -m uvicorn`` with the API image's flags, default
settings) in a child process under an RSS guard."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.chaos.servers import ChildServer, closed_by_server
from tests.chaos.test_child_server import deployed_uvicorn_flags

TEXT = {"texts": ["a fine film"], "model": "sentiment"}
N = 260  # past the image's --limit-concurrency 256


@pytest.fixture
def server(repository: Path, tmp_path: Path) -> Iterator[ChildServer]:
    env = {
        "LUGPI_MODEL_REPOSITORY": str(repository),
        "LUGPI_DEFAULT_MODEL": "sentiment",
        "LUGPI_POLL_INTERVAL_S": "0",
        "LUGPI_INTRA_OP_THREADS": "1",
        "OMP_NUM_THREADS": "1",
    }
    s = ChildServer(env, tmp_path / "server.log", deployed_uvicorn_flags(), max_rss_mb=1000)
    try:
        s.wait_ready()
        yield s
    finally:
        s.close()


def _slow_head(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n{"
    )
    return sock


class Attack:
    """N idle sockets and N slow-body requests, each reopened as soon as it is closed,
    until ``stop``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._idle, daemon=True)]
        self.threads.append(threading.Thread(target=self._slow, daemon=True))

    def _idle(self) -> None:
        socks: list[socket.socket | None] = [None] * N
        while not self.stop.is_set():
            for i, s in enumerate(socks):
                if s is None or closed_by_server(s, 0.001):
                    if s is not None:
                        s.close()
                    try:
                        socks[i] = socket.create_connection(("127.0.0.1", self.port))
                    except OSError:
                        socks[i] = None
            self.stop.wait(0.2)
        for s in socks:
            if s is not None:
                s.close()

    def _slow(self) -> None:
        socks: list[socket.socket | None] = [None] * N
        while not self.stop.is_set():
            for i, s in enumerate(socks):
                try:
                    if s is None:
                        socks[i] = _slow_head(self.port)
                    else:
                        s.sendall(b" ")  # one byte of body per round
                except OSError:
                    if s is not None:
                        s.close()
                    socks[i] = None
            self.stop.wait(2.0)
        for s in socks:
            if s is not None:
                s.close()

    def __enter__(self) -> Attack:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


def test_idle_and_slow_clients_do_not_take_the_service(server: ChildServer) -> None:
    with Attack(server.port):
        time.sleep(3)  # every socket open, every slow request past its head
        answers = []
        with httpx.Client(base_url=server.url, timeout=30) as c:
            for _ in range(20):
                answers.append(c.post("/classify", json=TEXT).status_code)
                answers.append(c.get("/healthz").status_code)
                time.sleep(0.2)
    assert answers == [200] * 40, answers
    assert not server.killed_for_memory
    assert server.proc.poll() is None


def test_a_slow_body_is_cut_off(server: ChildServer) -> None:
    sock = _slow_head(server.port)
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(2.0):
            try:
                sock.sendall(b" ")
            except OSError:
                return

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    try:
        # A byte every 2 s is far below the minimum body rate: closed within seconds,
        # long before the body would be complete (1,000 bytes: 33 minutes).
        assert closed_by_server(sock, 20)
    finally:
        stop.set()
        sock.close()
    assert httpx.post(server.url + "/classify", json=TEXT).status_code == 200
