"""The compose deployment (docker/compose.yaml), built and run for real.

Builds the four images (CPU worker), brings up Redis, two API replicas behind nginx and two
workers, and then, over HTTP through nginx only: trains a tiny job whose generation shards
split over both workers, kills the worker running it and sees the other one finish it, sees
both replicas serve the published version without a restart, restarts Redis and finds the
job records, and takes it all down. The models are tiny and have RANDOM weights (a 2-layer
BERT and a ViT built from config, the tiny-random generator); the data is a slice of CWI 2018
News, mounted read-only. The tests run in order on one stack and print a timed report.

Runs with LUGPI_DEPLOY_TEST=1 (.ci/run sets it) where docker and compose work; skipped with
the reason otherwise. It takes minutes: builds (cached after the first), start-up, one job.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.stack import (
    REPORT,
    ROOT,
    Stack,
    compose_cli,
    docker_unavailable,
    free_port,
    run,
    wait_for,
)

TAG = "deploy-test"
MODEL = "deploy-tiny"
SERVICES = ("redis", "api-1", "api-2", "worker-1", "worker-2", "lb")
pytestmark = pytest.mark.slow

state: dict[str, Any] = {}  # what one test leaves for the next (one stack, in order)


def note(line: str) -> None:
    REPORT.append(line)


@pytest.fixture(scope="module")
def docker_ok() -> None:
    if os.environ.get("LUGPI_DEPLOY_TEST") != "1":
        pytest.skip(
            "the deploy test builds images and runs the compose stack for minutes: "
            "set LUGPI_DEPLOY_TEST=1 to run it (.ci/run does)"
        )
    if why := docker_unavailable():
        pytest.skip(f"docker cannot run here: {why}")


def base_image() -> str:
    """The image every build starts from: made with debootstrap where that is installed
    (no Docker Hub needed), else the official one (pulled)."""
    if given := os.environ.get("LUGPI_DEPLOY_BASE_IMAGE"):
        return given
    if shutil.which("debootstrap") and os.geteuid() == 0:
        t0 = time.monotonic()
        run([str(ROOT / "docker" / "make-base-image.sh")], timeout=900)
        note(f"base image lugpi-base:bookworm ready in {time.monotonic() - t0:.0f} s")
        return "lugpi-base:bookworm"
    return "python:3.11-slim-bookworm"


@pytest.fixture(scope="module")
def images(docker_ok: None) -> None:
    base = base_image()
    env = {**os.environ, "LUGPI_IMAGE_TAG": TAG, "LUGPI_BASE_IMAGE": base}
    env["LUGPI_WORKER_VARIANT"] = "cpu"
    t0 = time.monotonic()
    out = run([str(ROOT / "docker" / "build-images.sh")], timeout=1500, env=env)
    note(
        f"$ LUGPI_WORKER_VARIANT=cpu LUGPI_BASE_IMAGE={base} LUGPI_IMAGE_TAG={TAG} "
        "docker/build-images.sh"
    )
    note(f"images built in {time.monotonic() - t0:.0f} s:")
    for line in out.splitlines():
        if line.startswith(("build-images: lugpi", "lugpi-")) or "build input" in line:
            note(f"  {line}")


@pytest.fixture(scope="module")
def datasets(
    docker_ok: None,
    tmp_path_factory: pytest.TempPathFactory,
    shared_datasets: Path,
    tiny_text_model: Path,
) -> Path:
    """The host directory mounted read-only at /data/datasets: CWI 2018 News and two tiny
    RANDOM-weight models (a 2-layer BERT, a ViT) built here from config."""
    from models.tiny import make_tiny_image_model

    root = tmp_path_factory.mktemp("deploy-datasets")
    (root / "cwi2018").mkdir()
    for split in ("Train", "Dev", "Test"):
        shutil.copyfile(
            shared_datasets / "cwi2018" / f"News_{split}.tsv",
            root / "cwi2018" / f"News_{split}.tsv",
        )
    shutil.copytree(tiny_text_model, root / "models" / "tiny-text-random")
    make_tiny_image_model(root / "models" / "tiny-image-random")
    # The containers run as uid 10001: everything must be world-readable.
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


@pytest.fixture(scope="module")
def stack(
    images: None, datasets: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    cli = compose_cli()
    assert cli is not None
    env_file = tmp_path_factory.mktemp("deploy-env") / "deploy.env"
    admin_key, api_key = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    port = free_port()
    settings = {
        "LUGPI_ENV_FILE": str(env_file),
        "LUGPI_IMAGE_TAG": TAG,
        "LUGPI_HOST_PORT": str(port),
        "LUGPI_HOST_DATASETS": str(datasets),
        "LUGPI_API_KEYS": api_key,
        "LUGPI_ADMIN_KEYS": admin_key,
        "LUGPI_ALLOWED_MODELS": "/data/datasets/models/tiny-text-random,"
        "/data/datasets/models/tiny-image-random,tiny-random",
        # Short clocks: a killed worker's job is resumed in seconds, a new version is seen
        # by both replicas within two.
        "LUGPI_HEARTBEAT_S": "3",
        "LUGPI_STALE_AFTER_S": "15",
        "LUGPI_POLL_INTERVAL_S": "2",
        "LUGPI_PROGRESS_INTERVAL_S": "0.5",
        "LUGPI_INTRA_OP_THREADS": "1",
        # Two workers on two cores; no hub at test time.
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    env_file.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    s = Stack(f"lugpi-deploy-{os.getpid()}", env_file, port, admin_key, cli)
    note(f"compose: {' '.join(cli)}; project {s.project}; load balancer on 127.0.0.1:{port}")
    yield s
    # Whatever happened above: leave nothing running.
    s.try_("down", "-v", "--remove-orphans", "-t", "10", timeout=300)


def test_images_hold_this_checkout_s_code(images: None) -> None:
    """A rebuilt image has the code as it is now, not a cached layer of an older tree
    (a bind-mounted context once left a stale layer in place after a code change)."""
    for image, module in (("api", "api.main"), ("worker", "worker.shards")):
        local = hashlib.sha256((ROOT / (module.replace(".", "/") + ".py")).read_bytes())
        inside = run(
            [
                "docker",
                "run",
                "--rm",
                "--entrypoint",
                "python",
                f"lugpi-{image}:{TAG}",
                "-c",
                f"import hashlib, {module} as m; "
                "print(hashlib.sha256(open(m.__file__, 'rb').read()).hexdigest())",
            ],
            timeout=120,
        ).split()[-1]
        assert inside == local.hexdigest(), f"lugpi-{image}:{TAG} holds an old {module}"


def test_compose_refuses_to_start_without_keys_or_env_file(stack: Stack) -> None:
    """The stack never comes up open: no keys or no env file, and compose stops at once."""
    empty = stack.env_file.with_name("empty.env")
    empty.write_text(f"LUGPI_ENV_FILE={empty}\n")
    no_keys = Stack(stack.project, empty, stack.port, "", stack.compose)
    p = no_keys.try_("config", "-q")
    assert p.returncode != 0
    assert "LUGPI_API_KEYS" in p.stderr and "docker/.env.example" in p.stderr, p.stderr
    note(f"no keys -> exit {p.returncode}: ...{p.stderr.strip()[-140:]}")

    missing = stack.env_file.with_name("missing.env")
    keys_only = stack.env_file.with_name("keys-only.env")
    keys_only.write_text(f"LUGPI_ENV_FILE={missing}\nLUGPI_API_KEYS=k\nLUGPI_ADMIN_KEYS=a\n")
    p = Stack(stack.project, keys_only, stack.port, "", stack.compose).try_("config", "-q")
    assert p.returncode != 0
    assert "missing.env" in p.stderr and re.search(r"not found|find env file", p.stderr)
    note(f"no env file -> exit {p.returncode}: {p.stderr.strip().splitlines()[-1][:140]}")


def test_a_port_in_use_is_reported(stack: Stack) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", stack.port))
        busy.listen()
        p = stack.try_("up", "-d", "--no-deps", "--no-build", "lb")
    stack("rm", "-f", "-s", "-v", "lb")
    out = p.stdout + p.stderr
    assert p.returncode != 0
    pattern = re.compile(rf"{stack.port}.*(address already in use|already allocated)")
    said = [line for line in out.splitlines() if pattern.search(line)]
    assert said, out
    note(f"port in use -> exit {p.returncode}: {said[0].strip()[-200:]}")


def test_stack_comes_up_healthy_and_keyed(stack: Stack) -> None:
    t0 = time.monotonic()
    stack("up", "-d", "--no-build", timeout=600)
    t_up = time.monotonic() - t0
    wait_for("the load balancer", lambda: stack.get("/healthz").status_code == 200, 120)
    t_http = time.monotonic() - t0
    workers = {w: stack.container(w) for w in ("worker-1", "worker-2")}

    def preloaded() -> bool:
        return all("preloaded the training libraries" in stack.logs(c) for c in workers.values())

    wait_for("both workers' preload", preloaded, 300, every=2)
    t_ready = time.monotonic() - t0
    note(
        f"start-up: `up -d` returned after {t_up:.0f} s (healthy redis and API replicas), "
        f"HTTP through nginx at {t_http:.0f} s, both workers ready at {t_ready:.0f} s"
    )
    state["hosts"] = {stack.inspect(c, "{{.Config.Hostname}}"): w for w, c in workers.items()}
    state["containers"] = {s: stack.container(s) for s in SERVICES}
    state["started"] = {
        s: stack.inspect(c, "{{.State.StartedAt}}") for s, c in state["containers"].items()
    }
    # Keys are enforced behind the load balancer.
    assert stack.get("/jobs").status_code in (401, 403)
    assert stack.get("/jobs", key=stack.admin_key).status_code == 200


def job_config() -> dict[str, Any]:
    tiny_text, tiny_image = (
        "/data/datasets/models/tiny-text-random",
        "/data/datasets/models/tiny-image-random",
    )
    return {
        "name": MODEL,
        "device": "cpu",
        "data": {
            "train": "cwi2018/News_Train.tsv",
            "dev": "cwi2018/News_Dev.tsv",
            "test": "cwi2018/News_Test.tsv",
            "format": "cwi2018",
            "prompt_style": "cwi",
            "max_train_samples": 24,
            "max_eval_samples": 8,
        },
        # Slow enough images (8 steps at 64 px) that both workers get shards.
        "generator": {
            "model": "tiny-random",
            "steps": 8,
            "image_size": 64,
            "batch_size": 2,
            "guidance_scale": 1.0,
            "num_shards": 4,
        },
        "teachers": [
            {
                "name": "tiny",
                "text_model": tiny_text,
                "image_model": tiny_image,
                "epochs": 1,
                "hidden_size": 16,
                "fusion_heads": 2,
            }
        ],
        "student": {"text_model": tiny_text, "max_length": 32, "epochs": 1},
        "baseline": False,
        "export": {"name": MODEL},
        # 24 training texts: a majority-class model, which the publish gate would hold back
        # (never served by default); this test is about the deployment, not the model.
        "publish_gate": {"majority_margin": None},
    }


SHARD_LINE = re.compile(
    r"^(\S+) .*job (\w+): shard (\d+) (?:\((\d+) images\) started|done) on (\S+)(?: in ([\d.]+) s)?"
)


def shard_timeline(stack: Stack, job_id: str, t0: datetime) -> list[tuple[float, str, str]]:
    """(seconds since submit, worker service, event) of every shard start and end."""
    events = []
    for service in ("worker-1", "worker-2"):
        for line in stack.logs(state["containers"][service]).splitlines():
            m = SHARD_LINE.match(line)
            if m and m.group(2) == job_id:
                at = datetime.fromisoformat(m.group(1)[:26].rstrip("Z") + "+00:00")
                what = f"shard {m.group(3)} " + (
                    f"started ({m.group(4)} images)" if m.group(4) else f"done in {m.group(6)} s"
                )
                events.append(((at - t0).total_seconds(), service, what))
    return sorted(events)


def test_job_splits_over_both_workers_and_survives_a_killed_one(stack: Stack) -> None:
    t0, submitted = time.monotonic(), datetime.now().astimezone()
    r = stack.post("/jobs/train", job_config(), key=stack.admin_key)
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    state["job_id"] = job_id
    timeline: list[str] = []
    last: tuple[object, ...] = ()
    killed: str | None = None
    status: dict[str, Any] = {}
    deadline = t0 + 600
    while time.monotonic() < deadline:
        status = stack.get(f"/jobs/{job_id}", key=stack.admin_key).json()
        stage = (status.get("progress") or {}).get("stage")
        service = state["hosts"].get(str(status.get("worker", "")).split("@")[-1])
        now = (status["state"], stage, service, status.get("attempts"))
        if now != last:
            timeline.append(
                f"  {time.monotonic() - t0:6.1f} s  {status['state']:<9} "
                f"{stage or '-':<9} on {service or '-'} (attempt {now[3]})"
            )
            last = now
        if status["state"] in ("succeeded", "failed", "cancelled"):
            break
        # Mid-job, once generation is over: kill the worker running the job, for good.
        if killed is None and service and stage not in (None, "prepare", "generate"):
            container = state["containers"][service]
            run(["docker", "update", "--restart=no", container], timeout=60)
            run(["docker", "kill", container], timeout=60)
            killed = service
            timeline.append(f"  {time.monotonic() - t0:6.1f} s  killed {service} (SIGKILL)")
        time.sleep(0.5)
    elapsed = time.monotonic() - t0
    shards = shard_timeline(stack, job_id, submitted)
    note(f"job {job_id}: {status['state']} in {elapsed:.0f} s; states seen through nginx:")
    REPORT.extend(timeline)
    note("generation shards (from the workers' logs):")
    REPORT.extend(f"  {at:6.1f} s  {service}: {what}" for at, service, what in shards)
    note(f"stage seconds: {status.get('stage_seconds')}")

    assert status["state"] == "succeeded", status
    assert {service for _, service, what in shards if "started" in what} == {
        "worker-1",
        "worker-2",
    }, "the shards did not split across both workers"
    assert killed is not None, "the job ended before a worker could be killed mid-job"
    finisher = state["hosts"].get(str(status["worker"]).split("@")[-1])
    assert finisher is not None and finisher != killed, (killed, status["worker"])
    assert status["attempts"] >= 2
    assert stack.inspect(state["containers"][killed], "{{.State.Running}}") == "false"
    state["published"] = (status["published_model"], status["published_version"])


def test_both_replicas_serve_the_new_version_without_a_restart(stack: Stack) -> None:
    name, version = state["published"]
    assert name == MODEL
    t0 = time.monotonic()
    for service in ("api-1", "api-2"):
        container = state["containers"][service]

        def serves(container: str = container) -> bool:
            code, body = stack.replica_get(container, f"/models/{name}", stack.admin_key)
            return code == 200 and body["default_version"] == version

        wait_for(f"{service} serving {name} {version}", serves, 60)
        code, ready = stack.replica_get(container, "/readyz", stack.admin_key)
        assert code == 200, ready
        assert stack.inspect(container, "{{.State.StartedAt}}") == state["started"][service]
        assert stack.inspect(container, "{{.RestartCount}}") == "0"
    note(
        f"both API replicas serve {name} {version} ({time.monotonic() - t0:.1f} s after "
        "the job ended), neither restarted"
    )
    body = {
        "texts": ["The girl shot dead in Bellaghy was 18."],
        "text_pairs": ["Bellaghy"],
        "model": name,
    }
    for _ in range(4):  # round robin: both replicas answer through nginx
        r = stack.post("/classify", body, key=stack.admin_key)
        assert r.status_code == 200, r.text
        assert r.json()["version"] == version


def test_job_records_survive_a_redis_restart(stack: Stack) -> None:
    job_id = state["job_id"]
    t0 = time.monotonic()
    stack("restart", "redis", timeout=120)

    def job_back() -> bool:
        r = stack.get(f"/jobs/{job_id}", key=stack.admin_key)
        return r.status_code == 200 and r.json()["state"] == "succeeded"

    wait_for("the job record after the Redis restart", job_back, 120)
    listed = stack.get("/jobs", key=stack.admin_key).json()
    ids = [j["job_id"] for j in (listed["jobs"] if isinstance(listed, dict) else listed)]
    assert job_id in ids
    note(f"redis restarted; job record back through nginx after {time.monotonic() - t0:.1f} s")


def test_down_leaves_nothing_behind(stack: Stack) -> None:
    t0 = time.monotonic()
    stack("down", "-v", "--remove-orphans", "-t", "20", timeout=300)
    label = f"label=com.docker.compose.project={stack.project}"
    for kind in (["ps", "-a"], ["volume", "ls"], ["network", "ls"]):
        left = run(["docker", *kind, "-q", "--filter", label], timeout=60).split()
        assert not left, f"docker {' '.join(kind)}: {left} left behind"
    note(f"down -v in {time.monotonic() - t0:.0f} s; no container, volume or network left")
    note("commands run:")
    REPORT.extend(f"  $ {c}" for c in stack.commands)
    # Another check that nothing runs: the stack's port is free again.
    with socket.socket() as s:
        s.bind(("127.0.0.1", stack.port))
    assert (
        subprocess.run(
            ["docker", "ps", "-q", "--filter", label], capture_output=True, text=True, timeout=60
        ).stdout.strip()
        == ""
    )
