"""The Docker deployment, checked without Docker: the compose file parses, keeps to what
both Compose 1.29 and v2 read, and agrees with the settings classes and nginx.conf; the
images are built the way the design says (API: CPU, no torch; worker: CUDA by default, CPU
by build argument; all non-root with a health check).

These run everywhere in seconds; tests/deploy builds the images and runs the stack.
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
COMPOSE_GPU = DOCKER / "compose.gpu.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"
NGINX_CONF = DOCKER / "nginx.conf"
API_SERVICES = ("api-1", "api-2")
WORKER_SERVICES = ("worker-1", "worker-2")
IMAGES = ("api", "worker", "lb", "redis")
# Nothing that drags torch or CUDA into the serving image (docs/architecture.md).
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


PIP_COMMANDS = (
    ["pip", "install"],
    ["python", "-m", "pip", "install"],
    ["/build/pip.sh", "install"],
)


def run_commands(path: Path) -> list[str]:
    """Every shell command of the RUN lines, split at && and ; (mount options dropped)."""
    commands = []
    for instr, rest in dockerfile(path):
        if instr == "RUN":
            rest = re.sub(r"--mount=\S+\s*", "", rest)
            commands += [c.strip() for c in re.split(r"&&|;", rest) if c.strip()]
    return commands


def pip_install_args(path: Path) -> list[list[str]]:
    """Arguments of every `pip install` in the RUN lines (options and variables dropped)."""
    installs = []
    for command in run_commands(path):
        words = command.split()
        if any(words[: len(p)] == p for p in PIP_COMMANDS):
            tokens = shlex.split(command.split("install", 1)[1])
            installs.append([t for t in tokens if not t.startswith(("-", "$"))])
    return installs


def requirement_extras(path: Path) -> list[set[str]]:
    """The extras each `requirements.py` call installs (a shell variable taken from its
    assignments), i.e. what the image's dependency layer holds besides the core."""
    found: list[set[str]] = []
    for command in run_commands(path):
        m = re.search(r"requirements\.py \S+ ([^>]+)>", command)
        if not m:
            continue
        words = m.group(1).split()
        if words == ["$extras"]:
            for assigned in re.findall(r'extras="([^"]*)"', " ".join(run_commands(path))):
                found.append(set(assigned.split()))
        else:
            found.append(set(words))
    return found


def mount_sources(path: Path) -> list[str]:
    """Build-context paths bind-mounted into RUN steps (`--mount=type=bind,source=...`)."""
    sources = []
    for instr, rest in dockerfile(path):
        if instr == "RUN":
            for spec in re.findall(r"--mount=(\S+)", rest):
                opts = dict(kv.partition("=")[::2] for kv in spec.split(","))
                if opts.get("type") == "bind" and "from" not in opts:
                    sources.append(opts.get("source", "."))
    return sources


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


@pytest.fixture(scope="module")
def compose_gpu() -> dict:
    data = yaml.safe_load(COMPOSE_GPU.read_text())
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
    assert set(services) >= {"redis", "lb", *API_SERVICES, *WORKER_SERVICES}
    declared = set(compose["volumes"])
    for name, service in services.items():
        for spec in service.get("volumes", []):
            source, _ = mount(spec)
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} is not declared"
    redis = services["redis"]
    assert "--appendonly" in redis["command"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert redis["command"][redis["command"].index("--dir") + 1] == "/data"
    assert any(m.startswith("redis-data:/data") for m in redis["volumes"])
    assert "redis-cli" in " ".join(redis["healthcheck"]["test"])
    for name in (*API_SERVICES, *WORKER_SERVICES):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert "redis://redis:6379" in services[name]["environment"]["LUGPI_REDIS_URL"]
        assert "healthcheck" in services[name]


def test_one_file_for_compose_1_29_and_v2(compose: dict, compose_gpu: dict) -> None:
    """Debian's docker-compose 1.29 rejects what only Compose v2 reads; keep to both."""
    # v2's YAML tags (!reset, !override) would already have failed yaml.safe_load.
    for data, path in ((compose, COMPOSE), (compose_gpu, COMPOSE_GPU)):
        assert (
            not set(data)
            - {"services", "volumes", "networks"}
            - {k for k in data if k.startswith("x-")}
        ), f"{path.name}: top-level keys {set(data)} (no `name`, `include`, ...)"
        for name, service in data["services"].items():
            env_file = service.get("env_file")
            assert env_file is None or isinstance(env_file, str), f"{name}: long-form env_file"
            assert "start_interval" not in service.get("healthcheck", {}), name
            assert "develop" not in service, name


def test_the_stack_refuses_to_start_without_keys(compose: dict) -> None:
    """Compose stops with a message (``${VAR:?...}``) while a key setting is empty, and the
    env file is required (the short form of env_file: compose fails when it is missing)."""
    for name in API_SERVICES:
        service = compose["services"][name]
        assert service["env_file"] == "${LUGPI_ENV_FILE:-.env}"
        for var in ("LUGPI_API_KEYS", "LUGPI_ADMIN_KEYS"):
            value = service["environment"][var]
            assert re.fullmatch(rf"\$\{{{var}:\?[^}}]*\.env\.example[^}}]*\}}", value), value
    for name in WORKER_SERVICES:
        assert compose["services"][name]["env_file"] == "${LUGPI_ENV_FILE:-.env}"
    example = example_env()
    assert example["LUGPI_API_KEYS"] == "" and example["LUGPI_ADMIN_KEYS"] == "", (
        "the example must not carry usable keys: a copy left unedited would start with them"
    )


def test_the_load_balancer_fronts_both_replicas_and_cuts_slow_clients(compose: dict) -> None:
    conf = NGINX_CONF.read_text()
    upstream = re.search(r"upstream lugpi_api \{(.*?)\}", conf, re.S)
    assert upstream is not None
    servers = re.findall(r"^\s*server ([\w-]+):8000", upstream.group(1), re.M)
    assert sorted(servers) == sorted(API_SERVICES)
    lb = compose["services"]["lb"]
    assert {name: lb["depends_on"][name]["condition"] for name in API_SERVICES} == dict.fromkeys(
        API_SERVICES, "service_healthy"
    )
    (port,) = lb["ports"]
    assert port.rsplit(":", 1)[1] == re.search(r"listen (\d+);", conf).group(1)  # type: ignore[union-attr]
    assert port.startswith("${LUGPI_HOST_ADDRESS:-127.0.0.1}:"), "publish on loopback by default"
    # Only the load balancer is published: the replicas sit behind it.
    assert not any(compose["services"][name].get("ports") for name in API_SERVICES)
    for directive in ("client_header_timeout", "client_body_timeout", "send_timeout"):
        m = re.search(rf"^\s*{directive} (\d+)s;", conf, re.M)
        assert m and 0 < int(m.group(1)) <= 30, f"nginx.conf: {directive} missing or too long"
    size = re.search(r"client_max_body_size (\d+)m;", conf)
    assert size and int(size.group(1)) * 2**20 >= ApiSettings().max_body_bytes


def test_model_repository_and_artifacts_are_shared_volumes(compose: dict) -> None:
    services = compose["services"]
    names = (*API_SERVICES, *WORKER_SERVICES)
    for var in ("LUGPI_MODEL_REPOSITORY", "LUGPI_ARTIFACTS_DIR"):
        targets = {}
        for name in names:
            path = services[name]["environment"][var]
            mounts = dict(mount(spec)[::-1] for spec in services[name]["volumes"])
            assert path in mounts, f"{name}: {var}={path} is not a mounted volume"
            targets[name] = mounts[path]
        assert len(set(targets.values())) == 1, f"{var}: services see different volumes {targets}"
    # The API only reads bundles; the workers write them.
    for name in API_SERVICES:
        api_models = next(m for m in services[name]["volumes"] if m.startswith("models:"))
        assert api_models.endswith(":ro")
    data_root = services["api-1"]["environment"]["LUGPI_DATA_ROOTS"]
    # The workers read a job's files at the very paths the API checked.
    sources = {
        name: {mount(spec)[1]: mount(spec)[0] for spec in services[name]["volumes"]}
        for name in names
    }
    assert len({sources[name][data_root] for name in names}) == 1


def test_gpu_workers_get_a_gpu_and_run_one_task_at_a_time(compose: dict, compose_gpu: dict) -> None:
    settings = _worker_settings()()
    image_cmd = next(
        rest for instr, rest in dockerfile(DOCKER / "worker.Dockerfile") if instr == "CMD"
    )
    for name in WORKER_SERVICES:
        # The GPU reservation lives in the override, so the stack also runs on CPU hosts.
        assert "deploy" not in compose["services"][name]
        devices = compose_gpu["services"][name]["deploy"]["resources"]["reservations"]["devices"]
        assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
        command = compose["services"][name]["command"]
        if command[:1] == ["lugpi-worker"]:
            # `lugpi-worker` applies the settings: pool and every queue tasks are routed to.
            scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
            assert scripts.get("lugpi-worker") == "worker.__main__:main", scripts
            assert settings.pool == "solo"
        else:
            assert command[:3] == ["celery", "-A", "worker.app"], command
            assert "--pool=solo" in command
            # Celery consumes only its default queue unless told: every queue a task is
            # routed to must be listed, or those tasks wait forever.
            queues = next(c.split("=", 1)[1] for c in command if c.startswith("--queues="))
            assert set(queues.split(",")) == set(settings.queues)
        assert json.loads(image_cmd) == command, "the image's CMD and compose's command differ"
    app_module = ast.parse((ROOT / "worker" / "app.py").read_text())
    names = {
        t.id
        for n in app_module.body
        if isinstance(n, ast.Assign)
        for t in n.targets
        if isinstance(t, ast.Name)
    }
    assert "app" in names, "worker/app.py defines no module-level `app` (celery -A worker.app)"


def test_environment_names_are_settings_fields(compose: dict) -> None:
    worker_settings = _worker_settings()
    owners = {"api": env_names(ApiSettings), "worker": env_names(worker_settings)}
    for names, fields in ((API_SERVICES, owners["api"]), (WORKER_SERVICES, owners["worker"])):
        for name in names:
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
    compose_only = {v for v in interpolated(compose) if v.startswith("LUGPI_")}
    example = {k: v for k, v in example_env().items() if k not in compose_only}
    keys = {"LUGPI_API_KEYS": "key-1,key-2", "LUGPI_ADMIN_KEYS": "admin-key"}
    for service, cls in (("api-1", ApiSettings), ("worker-1", worker_settings)):
        with monkeypatch.context() as m:
            image = service.split("-")[0]
            env = {**dockerfile_env(DOCKER / f"{image}.Dockerfile"), **example}
            env.update(compose["services"][service]["environment"])
            env.update(keys)  # what compose substitutes for ${LUGPI_*_KEYS:?...}
            for key, value in env.items():
                if key.startswith("LUGPI_"):
                    m.setenv(key, value)
            settings = cls()
            assert str(settings.model_repository) == "/data/models"
            assert settings.redis_url == "redis://redis:6379/0"
    with monkeypatch.context() as m:
        m.setenv(
            "LUGPI_DATA_ROOTS", compose["services"]["api-1"]["environment"]["LUGPI_DATA_ROOTS"]
        )
        m.setenv("LUGPI_API_KEYS", keys["LUGPI_API_KEYS"])
        api = ApiSettings()
        assert api.data_roots == [Path("/data/datasets")]
        assert len(api.api_keys) == 2 and api.auth_enabled


@pytest.mark.parametrize("image", IMAGES)
def test_images_run_as_non_root_with_a_health_check(image: str) -> None:
    path = DOCKER / f"{image}.Dockerfile"
    instructions = dockerfile(path)
    users = [rest.split()[0] for instr, rest in instructions if instr == "USER"]
    assert users and users[-1] not in {"root", "0"}, f"{path.name}: runs as root"
    if image in ("api", "worker"):
        assert any(instr == "RUN" and "useradd" in rest for instr, rest in instructions)
    assert any(instr == "HEALTHCHECK" for instr, _ in instructions), f"{path.name}: no HEALTHCHECK"
    # No `# syntax=` line: fetching a Dockerfile frontend needs Docker Hub.
    assert not path.read_text().startswith("# syntax="), f"{path.name}: # syntax= needs the Hub"
    # Every COPY source and bind-mounted path exists and is let through by the Dockerfile's
    # own .dockerignore.
    allowed = {
        line[1:].rstrip("/")
        for line in (DOCKER / f"{image}.Dockerfile.dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    sources = mount_sources(path)
    for instr, rest in instructions:
        if instr == "COPY" and not rest.startswith("--from"):
            sources += rest.split()[:-1]
    for source in sources:
        if source == ".":
            continue  # the whole context, as the .dockerignore lets it through
        assert (ROOT / source).exists(), source
        assert any(source.rstrip("/") == a or source.startswith(a + "/") for a in allowed), (
            f"{path.name}: {source} is ignored by its .dockerignore"
        )


PROJECT_PACKAGES = ("contracts", "jobs", "runtime", "api", "worker", "training", "models")


def imported_project_packages(packages: tuple[str, ...]) -> set[str]:
    """Project packages imported anywhere in ``packages`` (what an image must also contain)."""
    found = set(packages)
    todo = list(packages)
    while todo:
        for path in (ROOT / todo.pop()).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names = [node.module]
                for name in names:
                    top = name.split(".")[0]
                    if top in PROJECT_PACKAGES and top not in found:
                        found.add(top)
                        todo.append(top)
    return found


@pytest.mark.parametrize(("image", "entry"), [("api", ("api",)), ("worker", ("worker",))])
def test_each_image_gets_every_package_its_code_imports(image: str, entry: tuple[str, ...]) -> None:
    ignore = (DOCKER / f"{image}.Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    needed = imported_project_packages(entry)
    missing = needed - allowed
    assert not missing, f"{image}.Dockerfile.dockerignore leaves out {missing}, which it imports"
    copied = {
        rest.split()[0]
        for instr, rest in dockerfile(DOCKER / f"{image}.Dockerfile")
        if instr == "COPY" and rest.split()[-1].startswith("/tmp/src/")
    }
    assert not needed - copied, f"{image}.Dockerfile does not COPY {needed - copied}"


def test_api_image_is_slim_cpu_and_installs_no_torch() -> None:
    path = DOCKER / "api.Dockerfile"
    assert re.fullmatch(r"python:3\.1[1-9]-slim.*", base_image(path)), base_image(path)
    layers = requirement_extras(path)
    # The stack runs jobs over Redis, so the image adds the `queue` extra (celery, redis).
    assert layers == [{"api", "queue"}], f"the API image installs api + queue only, got {layers}"
    # The project itself goes in without dependencies, so nothing else can slip in there.
    assert ["/tmp/src"] in pip_install_args(path)
    assert any("install --no-deps /tmp/src" in c for c in run_commands(path))
    closure = installed_closure(project_requirements({"api", "queue"}))
    assert "onnxruntime" in closure and "fastapi" in closure
    bad = {n for n in closure if n in FORBIDDEN_IN_API or n.startswith(FORBIDDEN_PREFIXES)}
    assert not bad, f"the API image would install {bad}"
    # Only the packages the API imports reach its build context.
    ignore = (DOCKER / "api.Dockerfile.dockerignore").read_text()
    for package in ("training/", "models/", "worker/", "docker/wheels/"):
        assert f"!{package}" not in ignore, package
    # The command it runs names a real app factory.
    cmd = next(rest for instr, rest in dockerfile(path) if instr == "CMD")
    assert "api.main:create_app" in cmd and "--factory" in cmd
    main = ast.parse((ROOT / "api" / "main.py").read_text())
    assert any(isinstance(n, ast.FunctionDef) and n.name == "create_app" for n in main.body)


def test_worker_image_is_cuda_by_default_and_cpu_by_build_argument() -> None:
    path = DOCKER / "worker.Dockerfile"
    instructions = dockerfile(path)
    assert base_image(path).startswith("nvidia/cuda:"), base_image(path)
    args = dict(
        rest.split("=", 1) for instr, rest in instructions if instr == "ARG" and "=" in rest
    )
    assert args["VARIANT"] == "cuda"
    assert [rest for instr, rest in instructions if instr == "FROM"][-1] == "base-${VARIANT}"
    assert {"worker", "gpu"} in requirement_extras(path)  # cuda
    assert {"worker"} in requirement_extras(path)  # cpu
    installs = [arg for a in pip_install_args(path) for arg in a]
    assert any(a.startswith("onnxruntime-gpu") for a in installs)
    # torch has its own pinned line, before the rest, so pip cannot pick another build: the
    # CPU variant a version only CPU builds carry, the CUDA variant never that one.
    commands = " ".join(run_commands(path))
    assert 'spec="torch==${TORCH_VERSION}+cpu"' in commands
    assert 'spec="torch==${TORCH_VERSION},!=${TORCH_VERSION}+cpu"' in commands
    assert "TORCH_VERSION" in args
    # The build fails when the variant's libraries are not what it asked for.
    assert 'python /build/check-worker.py "$VARIANT"' in commands
