"""The Docker deployment, checked without Docker (it cannot run here): the compose file
parses and agrees with the settings classes, the images are built the way the design says
(API: CPU, no torch; worker: CUDA; both non-root with a health check).

None of this builds an image; a real `docker compose up` is still needed on a Docker host.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from pydantic_settings import BaseSettings

from api.settings import ApiSettings

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"
# Nothing that drags torch or CUDA into the serving image (DESIGN.md §2).
FORBIDDEN_IN_API = {"torch", "torchvision", "transformers", "diffusers", "accelerate", "triton"}
FORBIDDEN_PREFIXES = ("nvidia-", "onnxruntime-gpu", "sentence-transformers")


def _worker_settings() -> Any:
    module = pytest.importorskip("worker.settings", reason="worker/settings.py not written yet")
    return module.WorkerSettings


def env_names(cls: type[BaseSettings]) -> set[str]:
    prefix = str(cls.model_config.get("env_prefix", ""))
    return {f"{prefix}{name}".upper() for name in cls.model_fields}


def dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined: list[str] = []
    buf = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        joined.append(buf + line)
        buf = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined]


def base_image(path: Path) -> str:
    args: dict[str, str] = {}
    for instr, rest in dockerfile(path):
        if instr == "ARG" and "=" in rest:
            key, value = rest.split("=", 1)
            args[key.strip()] = value.strip().strip('"')
        if instr == "FROM":
            image = rest.split()[0]
            return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), image)
    raise AssertionError(f"{path.name}: no FROM")


def dockerfile_env(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for instr, rest in dockerfile(path):
        if instr == "ENV":
            for token in shlex.split(rest):
                key, _, value = token.partition("=")
                env[key] = value
    return env


def pip_install_args(path: Path) -> list[list[str]]:
    """Arguments of every `pip install` in the RUN lines (options dropped)."""
    installs = []
    for instr, rest in dockerfile(path):
        if instr != "RUN":
            continue
        for command in re.split(r"&&|;", rest):
            words = command.split()
            if words[:2] == ["pip", "install"] or words[:4] == ["python", "-m", "pip", "install"]:
                tokens = shlex.split(command.split("install", 1)[1])
                installs.append([t for t in tokens if not t.startswith(("-", "$"))])
    return installs


def project_requirements(extras: set[str]) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    seen: set[str] = set()
    todo = list(extras)
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for line in project["optional-dependencies"][extra]:
            req = Requirement(line)
            if canonicalize_name(req.name) == "lugpi":
                todo.extend(req.extras)  # e.g. worker = ["lugpi[train]", ...]
            else:
                reqs.append(req)
    return reqs


def installed_closure(reqs: list[Requirement]) -> set[str]:
    """Every distribution these requirements pull in, following the installed metadata."""
    found: set[str] = set()
    todo = [(r, set(r.extras)) for r in reqs]
    while todo:
        req, extras = todo.pop()
        name = canonicalize_name(req.name)
        if name in found:
            continue
        found.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue  # not installed here: its own dependencies cannot be followed
        for line in requires:
            dep = Requirement(line)
            if dep.marker is None or any(
                dep.marker.evaluate({"extra": e}) for e in (extras or {""})
            ):
                todo.append((dep, set(dep.extras)))
    return found


@pytest.fixture(scope="module")
def compose() -> dict:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def example_env() -> dict[str, str]:
    """Every KEY=value of .env.example, commented-out examples included."""
    pairs = re.findall(r"^#?\s*(LUGPI_[A-Z0-9_]+)=(.*)$", ENV_EXAMPLE.read_text(), re.M)
    return dict(pairs)


def strings(node: object) -> list[str]:
    """Every string value in a parsed YAML tree (comments are gone by then)."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for value in node.values() for s in strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in strings(value)]
    return []


def interpolated(compose: dict) -> set[str]:
    """Variables compose substitutes itself: ${NAME}, ${NAME:-default}."""
    return {v for text in strings(compose) for v in re.findall(r"\$\{(\w+)", text)}


def mount(spec: str) -> tuple[str, str]:
    """(source, target) of a short volume syntax, ${VAR:-default} taken as its default."""
    spec = re.sub(r"\$\{\w+:?-([^}]*)\}", r"\1", spec)
    source, target = spec.split(":")[:2]
    return source, target


def test_services_volumes_and_redis(compose: dict) -> None:
    services = compose["services"]
    assert set(services) >= {"redis", "api", "worker"}
    declared = set(compose["volumes"])
    for name, service in services.items():
        for spec in service.get("volumes", []):
            source, _ = mount(spec)
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} is not declared"
    redis = services["redis"]
    assert "--appendonly" in redis["command"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert any(m.startswith("redis-data:/data") for m in redis["volumes"])
    assert "redis-cli" in " ".join(redis["healthcheck"]["test"])
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert "redis://redis:6379" in services[name]["environment"]["LUGPI_REDIS_URL"]


def test_model_repository_and_artifacts_are_shared_volumes(compose: dict) -> None:
    services = compose["services"]
    for var in ("LUGPI_MODEL_REPOSITORY", "LUGPI_ARTIFACTS_DIR"):
        targets = {}
        for name in ("api", "worker"):
            path = services[name]["environment"][var]
            mounts = dict(mount(spec)[::-1] for spec in services[name]["volumes"])
            assert path in mounts, f"{name}: {var}={path} is not a mounted volume"
            targets[name] = mounts[path]
        assert targets["api"] == targets["worker"], f"{var}: api and worker see different volumes"
    # The API only reads bundles; the worker writes them.
    api_models = next(m for m in services["api"]["volumes"] if m.startswith("models:"))
    assert api_models.endswith(":ro")
    data_root = services["api"]["environment"]["LUGPI_DATA_ROOTS"]
    # The worker reads a job's files at the very paths the API checked.
    sources = {
        name: {mount(spec)[1]: mount(spec)[0] for spec in services[name]["volumes"]}
        for name in ("api", "worker")
    }
    assert sources["api"][data_root] == sources["worker"][data_root]


def test_worker_has_a_gpu_and_runs_one_task_at_a_time(compose: dict) -> None:
    worker = compose["services"]["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    command = worker["command"]
    settings = _worker_settings()()
    if command[:1] == ["lugpi-worker"]:
        # `lugpi-worker` applies the settings: pool and every queue tasks are routed to.
        scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
        assert scripts.get("lugpi-worker") == "worker.__main__:main", scripts
        assert settings.pool == "solo"
    else:
        assert command[:3] == ["celery", "-A", "worker.app"], command
        assert "--pool=solo" in command
        # Celery consumes only its default queue unless told: every queue a task is routed
        # to must be listed, or those tasks wait forever.
        queues = next(c.split("=", 1)[1] for c in command if c.startswith("--queues="))
        assert set(queues.split(",")) == set(settings.queues)
    app_module = ast.parse((ROOT / "worker" / "app.py").read_text())
    names = {
        t.id
        for n in app_module.body
        if isinstance(n, ast.Assign)
        for t in n.targets
        if isinstance(t, ast.Name)
    }
    assert "app" in names, "worker/app.py defines no module-level `app` (celery -A worker.app)"
    image_cmd = next(
        rest for instr, rest in dockerfile(DOCKER / "worker.Dockerfile") if instr == "CMD"
    )
    assert json.loads(image_cmd) == command, "the image's CMD and compose's command differ"


def test_environment_names_are_settings_fields(compose: dict) -> None:
    worker_settings = _worker_settings()
    owners = {"api": env_names(ApiSettings), "worker": env_names(worker_settings)}
    for name, fields in owners.items():
        env = compose["services"][name]["environment"]
        unknown = {k for k in env if k.startswith("LUGPI_")} - fields
        assert not unknown, f"{name}: {unknown} are not fields of its settings class"
    for image, fields in (("api", owners["api"]), ("worker", owners["worker"])):
        env = dockerfile_env(DOCKER / f"{image}.Dockerfile")
        unknown = {k for k in env if k.startswith("LUGPI_")} - fields
        assert not unknown, f"{image}.Dockerfile: {unknown} are not settings fields"

    host_vars = interpolated(compose)
    example = example_env()
    unknown = set(example) - owners["api"] - owners["worker"] - host_vars
    assert not unknown, f".env.example names {unknown}: neither settings nor compose variables"
    undocumented = {v for v in host_vars if v.startswith("LUGPI_")} - set(example)
    assert not undocumented, f"compose reads {undocumented}; document them in .env.example"


def test_the_settings_accept_the_deployed_and_example_values(
    compose: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker_settings = _worker_settings()
    example = {k: v for k, v in example_env().items() if not k.startswith(("LUGPI_HOST_",))}
    example.pop("LUGPI_IMAGE_TAG", None)
    classes: list[tuple[str, Any]] = [("api", ApiSettings), ("worker", worker_settings)]
    for service, cls in classes:
        with monkeypatch.context() as m:
            env = {**dockerfile_env(DOCKER / f"{service}.Dockerfile"), **example}
            env.update(compose["services"][service]["environment"])
            for key, value in env.items():
                if key.startswith("LUGPI_"):
                    m.setenv(key, value)
            settings = cls()
            assert str(settings.model_repository) == "/data/models"
            assert settings.redis_url == "redis://redis:6379/0"
    with monkeypatch.context() as m:
        m.setenv("LUGPI_DATA_ROOTS", compose["services"]["api"]["environment"]["LUGPI_DATA_ROOTS"])
        m.setenv("LUGPI_API_KEYS", example["LUGPI_API_KEYS"])
        api = ApiSettings()
        assert api.data_roots == [Path("/data/datasets")]
        assert len(api.api_keys) == 2 and api.auth_enabled


@pytest.mark.parametrize("image", ["api", "worker"])
def test_images_run_as_non_root_with_a_health_check(image: str) -> None:
    path = DOCKER / f"{image}.Dockerfile"
    instructions = dockerfile(path)
    users = [rest.split()[0] for instr, rest in instructions if instr == "USER"]
    assert users and users[-1] not in {"root", "0"}, f"{path.name}: runs as root"
    assert any(instr == "RUN" and "useradd" in rest for instr, rest in instructions)
    assert any(instr == "HEALTHCHECK" for instr, _ in instructions), f"{path.name}: no HEALTHCHECK"
    # Every COPY source exists and is let through by the Dockerfile's own .dockerignore.
    allowed = {
        line[1:].rstrip("/")
        for line in (DOCKER / f"{image}.Dockerfile.dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    for instr, rest in instructions:
        if instr == "COPY" and not rest.startswith("--from"):
            for source in rest.split()[:-1]:
                assert (ROOT / source).exists() or source == "README.md", source
                assert source.rstrip("/").split("/")[0] in allowed, f"{source} is ignored"


def test_api_image_is_slim_cpu_and_installs_no_torch() -> None:
    path = DOCKER / "api.Dockerfile"
    assert re.fullmatch(r"python:3\.1[1-9]-slim.*", base_image(path)), base_image(path)
    installs = [arg for args in pip_install_args(path) for arg in args]
    assert installs, "api.Dockerfile installs nothing with pip"
    extras: set[str] = set()
    others = []
    for arg in installs:
        if arg.startswith(".["):
            extras |= set(arg[2:-1].split(","))
        else:
            others.append(Requirement(arg))
    assert extras == {"api"}, f"the API image must install the api extra only, got {extras}"
    closure = installed_closure(project_requirements(extras) + others)
    assert "onnxruntime" in closure and "fastapi" in closure
    bad = {n for n in closure if n in FORBIDDEN_IN_API or n.startswith(FORBIDDEN_PREFIXES)}
    assert not bad, f"the API image would install {bad}"
    # The command it runs names a real app factory.
    cmd = next(rest for instr, rest in dockerfile(path) if instr == "CMD")
    assert "api.main:create_app" in cmd and "--factory" in cmd
    main = ast.parse((ROOT / "api" / "main.py").read_text())
    assert any(isinstance(n, ast.FunctionDef) and n.name == "create_app" for n in main.body)


def test_worker_image_is_cuda_with_gpu_extras() -> None:
    path = DOCKER / "worker.Dockerfile"
    assert base_image(path).startswith("nvidia/cuda:"), base_image(path)
    installs = [arg for args in pip_install_args(path) for arg in args]
    assert ".[worker,gpu]" in installs
    assert any(a.startswith("onnxruntime-gpu") for a in installs)
    # torch has its own pinned line, before the project, so pip cannot pick another build.
    torch_arg = dockerfile(path)
    assert any(instr == "ARG" and rest.startswith("TORCH_SPEC=") for instr, rest in torch_arg)
