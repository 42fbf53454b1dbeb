"""The server as deployed (``python -m uvicorn`` with the Dockerfile's flags) in a child
process under an RSS guard: slow clients, a burst far past capacity, and SIGTERM.

Weaknesses guarded: uvicorn has no header-read timeout (slow clients could hold file
descriptors forever); a burst grew queues and memory without bound; shutdown must let
in-flight requests finish."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.chaos.servers import REPO_ROOT, ChildServer, closed_by_server, wait_until

TEXT = {"texts": ["a fine film"], "model": "sentiment"}


def deployed_uvicorn_flags() -> list[str]:
    """The flags of the API image's CMD (docker/api.Dockerfile), host and port left out."""
    cmd = (REPO_ROOT / "docker" / "api.Dockerfile").read_text().rsplit("\nCMD [", 1)[1]
    words = re.findall(r'"([^"]*)"', cmd.split("]", 1)[0])
    flags = words[words.index("--factory") + 1 :]
    for flag in ("--host", "--port"):
        i = flags.index(flag)
        del flags[i : i + 2]
    return flags


def test_dockerfile_starts_uvicorn_with_the_protections() -> None:
    flags = deployed_uvicorn_flags()
    for flag in ("--limit-concurrency", "--timeout-keep-alive", "--timeout-graceful-shutdown"):
        assert flag in flags, flag
    assert flags[flags.index("--http") + 1] == "api.http_protocol:HeaderTimeoutProtocol"


@pytest.fixture
def child(repository: Path, tmp_path: Path) -> Iterator[object]:
    servers: list[ChildServer] = []

    def start(max_rss_mb: float = 1500.0, **env: str) -> ChildServer:
        base = {
            "LUGPI_MODEL_REPOSITORY": str(repository),
            "LUGPI_DEFAULT_MODEL": "sentiment",
            "LUGPI_POLL_INTERVAL_S": "0",
            "LUGPI_INTRA_OP_THREADS": "1",
            "OMP_NUM_THREADS": "1",
        }
        base.update(env)
        s = ChildServer(base, tmp_path / f"server{len(servers)}.log", deployed_uvicorn_flags(),
                        max_rss_mb=max_rss_mb)  # fmt: skip
        servers.append(s)
        s.wait_ready()
        return s

    yield start
    for s in servers:
        s.close()


def test_slow_clients_are_cut_off_by_the_header_timeout(child: object) -> None:
    server = child(LUGPI_HEADER_TIMEOUT_S="1")  # type: ignore[operator]
    idle = socket.create_connection(("127.0.0.1", server.port))
    partial = socket.create_connection(("127.0.0.1", server.port))
    partial.sendall(b"POST /classify HTTP/1.1\r\nHost: x\r\n")
    trickle = socket.create_connection(("127.0.0.1", server.port))
    trickle.sendall(b"GET /healthz HTTP/1.1\r\n")
    for _ in range(3):  # a header line now and then must not keep it open
        time.sleep(0.5)
        try:
            trickle.sendall(b"X-Slow: 1\r\n")
        except OSError:
            break
    assert closed_by_server(idle, 10)
    assert closed_by_server(partial, 10)
    assert closed_by_server(trickle, 10)
    # a normal client is not affected, also across a keep-alive connection
    with httpx.Client(base_url=server.url) as c:
        assert c.get("/healthz").status_code == 200
        assert c.post("/classify", json=TEXT).status_code == 200


def test_burst_far_past_capacity_is_shed_and_memory_stays_bounded(child: object) -> None:
    server = child(LUGPI_MAX_QUEUED_TEXTS="256")  # type: ignore[operator]
    body = {"texts": ["an instant classic, " * 50] * 64, "model": "sentiment"}

    async def burst() -> Counter[object]:
        limits = httpx.Limits(max_connections=300, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as c:

            async def one() -> object:
                try:
                    return (await c.post("/classify", json=body)).status_code
                except httpx.HTTPError as e:
                    return type(e).__name__

            return Counter(await asyncio.gather(*(one() for _ in range(600))))

    outcome = asyncio.run(burst())
    assert not server.killed_for_memory, f"RSS passed {server.max_rss_mb} MB"
    assert server.proc.poll() is None
    shed = outcome[429] + outcome[503]
    assert shed > 0, outcome
    # Past --limit-concurrency uvicorn answers 503 and closes the connection at once; a
    # client still sending its body may then see the reset instead of the 503.
    assert set(outcome) <= {200, 429, 503, "ReadError", "RemoteProtocolError"}, outcome
    assert outcome[200] > 0, outcome
    assert httpx.post(server.url + "/classify", json=TEXT).status_code == 200
    assert httpx.get(server.url + "/readyz").status_code == 200


def test_sigterm_finishes_in_flight_requests_then_exits(child: object) -> None:
    # Each batch waits up to 1.5 s for company: a request is in flight when SIGTERM comes.
    server = child(LUGPI_MAX_BATCH_WAIT_MS="1000")  # type: ignore[operator]
    answers: list[int] = []

    def send() -> None:
        answers.append(httpx.post(server.url + "/classify", json=TEXT, timeout=30).status_code)

    senders = [threading.Thread(target=send) for _ in range(3)]
    for t in senders:
        t.start()

    def all_connected() -> bool:  # on a loaded machine 0.3 s may not be enough
        conns = psutil.Process(server.proc.pid).net_connections(kind="tcp")
        mine = [c for c in conns if c.laddr and c.laddr.port == server.port]
        return sum(c.status == psutil.CONN_ESTABLISHED for c in mine) >= 3

    wait_until(all_connected, 30, "3 clients connected")
    time.sleep(0.1)  # their requests are small: sent in one write each
    server.terminate()
    for t in senders:
        t.join(30)
    assert answers == [200, 200, 200]
    wait_until(lambda: server.proc.poll() is not None, 30, "the server to exit")
    # uvicorn re-raises the signal once it has shut down cleanly: "killed by SIGTERM"
    assert server.proc.returncode in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in server.log.read_text()
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/healthz")
