"""Drive the compose deployment from a test: docker, compose, HTTP through the load balancer.

Works with Compose v2 (`docker compose`) and Debian's Compose 1.29 (`docker-compose`);
every command it runs is recorded in ``Stack.commands`` so the test can print them.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker" / "compose.yaml"
# Lines for the end of the pytest run (conftest.py prints them): timings, the job's
# timeline, the commands run. Printed even when every test passes.
REPORT: list[str] = []


def run(args: Sequence[str], *, timeout: float, env: dict[str, str] | None = None) -> str:
    """Run a command; its output (stdout + stderr), or AssertionError with that output."""
    p = subprocess.run(
        list(args), capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT
    )
    out = p.stdout + p.stderr
    if p.returncode != 0:
        raise AssertionError(f"{shlex.join(args)} exited {p.returncode}:\n{out[-4000:]}")
    return out


def compose_cli() -> list[str] | None:
    """`docker compose` (v2) when the plugin is there, else `docker-compose` (1.29)."""
    for cli in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(cli[0]) is None:
            continue
        p = subprocess.run([*cli, "version"], capture_output=True, text=True, timeout=60)
        if p.returncode == 0:
            return cli
    return None


def docker_unavailable() -> str | None:
    """Why the deployment cannot run here, or None when it can."""
    if shutil.which("docker") is None:
        return "no docker client on PATH (CI installs Debian's docker.io)"
    p = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        return f"the docker daemon does not answer: {(p.stderr or p.stdout).strip()[-300:]}"
    if compose_cli() is None:
        return "neither `docker compose` nor `docker-compose` is installed"
    return None


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    """One compose project: its name, env file and host port; torn down by ``down``."""

    project: str
    env_file: Path
    port: int
    admin_key: str
    compose: list[str]
    commands: list[str] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        # Compose takes the shell's variables over the env file's: keep the caller's out.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("LUGPI_", "COMPOSE_", "DOCKER_BUILDKIT"))
        }
        return env

    def cmd(self, *args: str) -> list[str]:
        return [
            *self.compose,
            "--env-file",
            str(self.env_file),
            "-p",
            self.project,
            "-f",
            str(COMPOSE_FILE.relative_to(ROOT)),
            *args,
        ]

    def __call__(self, *args: str, timeout: float = 600) -> str:
        command = self.cmd(*args)
        self.commands.append(shlex.join(command))
        return run(command, timeout=timeout, env=self.env())

    def try_(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """A compose command expected to fail: its exit status and output, unchecked."""
        command = self.cmd(*args)
        self.commands.append(shlex.join(command))
        return subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env=self.env(), cwd=ROOT
        )

    def container(self, service: str) -> str:
        ids = self("ps", "-q", service, timeout=120).split()
        assert len(ids) == 1, f"{service}: expected one container, got {ids}"
        return ids[0]

    def logs(self, container: str) -> str:
        """The container's output with docker's timestamps (RFC 3339, first on each line)."""
        return run(["docker", "logs", "-t", container], timeout=120)

    def inspect(self, container: str, template: str) -> str:
        return run(["docker", "inspect", "-f", template, container], timeout=60).strip()

    # --- HTTP -----------------------------------------------------------------------------
    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str, key: str | None = None, timeout: float = 30) -> httpx.Response:
        headers = {"X-API-Key": key} if key else {}
        return httpx.get(self.url(path), headers=headers, timeout=timeout)

    def post(self, path: str, body: Any, key: str | None = None) -> httpx.Response:
        headers = {"X-API-Key": key} if key else {}
        return httpx.post(self.url(path), json=body, headers=headers, timeout=60)

    def replica_get(self, container: str, path: str, key: str) -> tuple[int, Any]:
        """GET from inside one API container, past the load balancer: (status, JSON body)."""
        script = (
            "import json, sys, urllib.error, urllib.request\n"
            "req = urllib.request.Request('http://127.0.0.1:8000' + sys.argv[1],"
            " headers={'X-API-Key': sys.argv[2]})\n"
            "try:\n"
            "    r = urllib.request.urlopen(req, timeout=20)\n"
            "except urllib.error.HTTPError as e:\n"
            "    r = e\n"
            "print(r.status); print(r.read().decode())\n"
        )
        out = run(["docker", "exec", container, "python", "-c", script, path, key], timeout=60)
        status, _, body = out.partition("\n")
        return int(status), json.loads(body)


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 1.0) -> Any:
    """Call ``check`` until it returns something truthy; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (httpx.HTTPError, AssertionError) as e:
            last = e
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {last!r})")
