"""Real servers for the chaos suite.

``ThreadServer``: uvicorn serving an app built here, on a loopback port, in a thread of
the test process, so that a test can hold the batcher at a gate (``OrtGate``) while real
clients connect, queue and disconnect over real sockets.

``ChildServer``: ``python -m uvicorn`` in a child process, as deployed (flags included),
watched by an RSS guard that kills it past ``max_rss_mb``: a memory blow-up fails the
test instead of taking the machine down.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
import psutil
import uvicorn
from fastapi import FastAPI

from runtime.classifier import OnnxClassifier

REPO_ROOT = Path(__file__).resolve().parents[2]


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes ``sock`` (EOF or a reset) within ``within`` seconds."""
    sock.settimeout(within)
    try:
        while True:
            if sock.recv(1024) == b"":
                return True
    except TimeoutError:
        return False
    except OSError:  # a reset or a broken pipe: closed too
        return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OrtGate:
    """Wraps a classifier's ``run_scores`` (the real onnxruntime call): counts calls, and
    holds each call until ``release()`` while closed."""

    def __init__(self, classifier: OnnxClassifier) -> None:
        self.calls = 0
        self.entered = threading.Event()
        self._open = threading.Event()
        self._run = classifier.run_scores
        classifier.run_scores = self  # type: ignore[method-assign]

    def __call__(
        self, encodings: Sequence[object], *, lone: bool = False, shrink: bool = False
    ) -> object:
        self.calls += 1
        self.entered.set()
        self._open.wait(60)
        return self._run(encodings, lone=lone, shrink=shrink)  # type: ignore[arg-type]

    def release(self) -> None:
        self._open.set()


class ThreadServer:
    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        wait_until(lambda: self.server.started, 60, "the server to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def metric(url: str, line_start: str) -> float:
    """The value of the first /metrics sample starting with ``line_start`` (0 if absent)."""
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


class ChildServer:
    def __init__(
        self,
        env: dict[str, str],
        log: Path,
        uvicorn_args: Sequence[str] = (),
        max_rss_mb: float = 1500.0,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("LUGPI_")}
        full_env.update(env)
        full_env["PYTHONPATH"] = str(REPO_ROOT)
        cmd = [sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory"]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port), *uvicorn_args]
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(cmd, env=full_env, stdout=self._out, stderr=subprocess.STDOUT)
        self.max_rss_mb = max_rss_mb
        self.peak_rss_mb = 0.0
        self.killed_for_memory = False
        self._stop = threading.Event()
        self._guard = threading.Thread(target=self._watch, daemon=True)
        self._guard.start()

    def _watch(self) -> None:
        try:
            p = psutil.Process(self.proc.pid)
            while not self._stop.wait(0.05) and self.proc.poll() is None:
                rss = p.memory_info().rss / 2**20
                self.peak_rss_mb = max(self.peak_rss_mb, rss)
                if rss > self.max_rss_mb:
                    self.killed_for_memory = True
                    self.proc.kill()
                    return
        except psutil.Error:
            return

    def wait_ready(self, timeout: float = 120) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                return True
            try:
                return httpx.get(self.url + "/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout, "the server to be ready")
        assert self.proc.poll() is None, self.log.read_text()[-3000:]

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def close(self) -> None:
        self._stop.set()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()
