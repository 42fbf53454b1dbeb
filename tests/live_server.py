"""The API as a real server: uvicorn in a child process on a free loopback port.

For tests whose client is a real third-party library (huggingface_hub, tritonclient,
a browser) talking HTTP, not an in-process ASGI transport.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (httpx.HTTPError, KeyError) as e:
            last = e
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} ({last})")


@contextmanager
def serve(settings: dict[str, str], log: Path) -> Iterator[str]:
    """Start ``api.main:create_app`` with ``LUGPI_*`` ``settings``; yield its base URL
    (``http://127.0.0.1:<port>``, no trailing slash) once /readyz answers 200."""
    port = free_port()
    env = {**os.environ, "LUGPI_POLL_INTERVAL_S": "0", "LUGPI_INTRA_OP_THREADS": "1", **settings}
    env.pop("LUGPI_REDIS_URL", None)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory",
             "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def ready_or_exited() -> bool:
        return proc.poll() is not None or httpx.get(url + "/readyz").status_code == 200

    try:
        wait_until(ready_or_exited, 120, "the API to be ready")
        assert proc.poll() is None, f"uvicorn exited: {log.read_text()[-3000:]}"
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
