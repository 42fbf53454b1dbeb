"""Fixtures for the job tests: a real Redis (a dedicated DB, flushed only there), both job
stores, real Celery worker processes, and an API client wired to them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import ApiSettings
from jobs.store import JobStore, RedisJobStore, SqliteJobStore

REPO_ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("LUGPI_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def redis_available() -> bool:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
        return True
    except redis.exceptions.RedisError:
        return False


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The test Redis DB, flushed before and after (only this DB number)."""
    if not redis_available():
        pytest.skip(f"no Redis at {REDIS_URL}")
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    """Each store test runs on both implementations."""
    s: JobStore
    if request.param == "sqlite":
        s = SqliteJobStore(tmp_path / "jobs.sqlite3")
    else:
        if not redis_available():
            pytest.skip(f"no Redis at {REDIS_URL}")
        # A unique prefix: this test's keys never meet another's, and no flush is needed.
        s = RedisJobStore(REDIS_URL, prefix=f"test-{uuid.uuid4().hex[:8]}:")
    yield s
    if isinstance(s, RedisJobStore):
        for key in s._redis.scan_iter(f"{s._prefix}*"):
            s._redis.delete(key)
    s.close()


class WorkerProcess:
    """A real worker in a subprocess: ``python -m worker`` (what ``lugpi-worker`` runs) or
    the plain ``celery -A worker.app worker`` command line."""

    def __init__(self, env: dict[str, str], log: Path, name: str, plain_celery: bool) -> None:
        self.log = log
        cmd = [sys.executable, "-m", "worker", f"--hostname={name}@%h"]
        if plain_celery:
            cmd = [sys.executable, "-m", "celery", "-A", "worker.app", "worker"]
            cmd += ["--pool=solo", "--concurrency=1", "--loglevel=INFO"]
            cmd += ["-Q", "lugpi.jobs,lugpi.shards,lugpi.teacher"]
            cmd += ["--without-mingle", "--without-gossip", f"--hostname={name}@%h"]
        self._out = log.open("ab")
        self.proc = subprocess.Popen(
            cmd, env=env, cwd=REPO_ROOT, stdout=self._out, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "ready." in self.log.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)
        raise AssertionError(f"worker not ready in {timeout} s:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye; from the job's view, a crashed machine."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM: Celery's warm shutdown, as in a deploy; returns the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # cold shutdown: do not wait for the task
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._out.close()


@dataclass
class Stack:
    """Directories, tiny models, API clients and workers of one test module."""

    root: Path
    text_model: Path
    image_model: Path
    data_root: Path
    workers: list[WorkerProcess] = field(default_factory=list)
    clients: list[TestClient] = field(default_factory=list)
    snapshots: dict[str, Any] = field(default_factory=dict)

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def repository(self) -> Path:
        return self.root / "repo"

    def client(self, **overrides: Any) -> TestClient:
        fields: dict[str, Any] = {
            "redis_url": REDIS_URL,
            "artifacts_dir": self.artifacts,
            "model_repository": self.repository,
            "data_roots": [self.data_root],
            "allowed_models": [str(self.text_model), str(self.image_model)],
            "poll_interval_s": 0,  # no polling: the job route's reload hook must do it
            # Short enough that a lost job is noticed in seconds, long enough that a job
            # process busy importing torch on a loaded CI machine is not taken for dead
            # (the embedded queue sees a killed child exit at once, without waiting).
            "stale_after_s": 10,
            "intra_op_threads": 1,
            "allow_unauthenticated_admin": True,  # tests of jobs, not of keys
        }
        fields.update(overrides)
        c = TestClient(create_app(ApiSettings(**fields)))
        c.__enter__()
        self.clients.append(c)
        return c

    def worker(self, name: str, plain_celery: bool = False) -> WorkerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LUGPI_")}
        env.update(
            LUGPI_REDIS_URL=REDIS_URL,
            LUGPI_ARTIFACTS_DIR=str(self.artifacts),
            LUGPI_MODEL_REPOSITORY=str(self.repository),
            # Short clocks, so that a lost worker is noticed in seconds, not a minute.
            LUGPI_HEARTBEAT_S="0.5",
            LUGPI_STALE_AFTER_S="6",
            LUGPI_PROGRESS_INTERVAL_S="0.5",
            OMP_NUM_THREADS="1",
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            TOKENIZERS_PARALLELISM="false",
            PYTHONPATH=str(REPO_ROOT),
        )
        w = WorkerProcess(env, self.root / f"{name}.log", name, plain_celery)
        self.workers.append(w)
        w.wait_ready()
        return w

    def job(self, name: str, slow_images: bool = False) -> dict[str, Any]:
        """A tiny training config on a small slice of CWI 2018 News."""
        generator: dict[str, Any] = {"model": "tiny-random", "steps": 1, "image_size": 32}
        if slow_images:  # about 0.5 s per image: time to cancel or kill mid-generation
            generator = {"model": "tiny-random", "steps": 10, "image_size": 64, "batch_size": 1}
        teacher = {"name": "tiny", "text_model": str(self.text_model), "epochs": 1}
        teacher |= {"image_model": str(self.image_model), "hidden_size": 16, "fusion_heads": 2}
        return {
            "name": name,
            "device": "cpu",
            "data": {
                "train": "cwi2018/News_Train.tsv",  # relative: resolved under the data roots
                "dev": "cwi2018/News_Dev.tsv",
                "test": "cwi2018/News_Test.tsv",
                "format": "cwi2018",
                "prompt_style": "cwi",
                "max_train_samples": 32,
                "max_eval_samples": 8,
            },
            "generator": {"guidance_scale": 1.0, "batch_size": 16, **generator},
            "teachers": [teacher],
            "student": {"text_model": str(self.text_model), "max_length": 32, "epochs": 1},
            "baseline": False,
            "export": {"name": name},
            # 32 training texts: the model answers the majority class, which the publish
            # gate would (rightly) hold back; these tests are about the jobs machinery.
            "publish_gate": {"majority_margin": None},
        }

    @staticmethod
    def poll(
        client: TestClient,
        job_id: str,
        until: Callable[[dict[str, Any]], bool],
        timeout: float,
        seen: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """GET /jobs/{id} every 0.2 s until ``until(status)``; each status goes to ``seen``."""
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            r = client.get(f"/jobs/{job_id}")
            assert r.status_code == 200, r.text
            status = r.json()
            if seen is not None:
                seen.append(status)
            if until(status):
                return status
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} not there in {timeout} s; last status: {status}")


def _make_stack(
    tmp_path_factory: pytest.TempPathFactory, tiny_text_model: Path, shared_datasets: Path
) -> Stack:
    from models.tiny import make_tiny_image_model

    root = tmp_path_factory.mktemp("jobs-e2e")
    image_model = make_tiny_image_model(root / "tiny-image-random")
    return Stack(root, tiny_text_model, image_model, shared_datasets)


def _close(s: Stack) -> None:
    for c in s.clients:
        c.__exit__(None, None, None)
    for w in s.workers:
        w.stop()
    if path := os.environ.get("LUGPI_TEST_SNAPSHOTS"):
        old = json.loads(Path(path).read_text()) if Path(path).is_file() else {}
        Path(path).write_text(json.dumps(old | s.snapshots, indent=2, default=str))


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, tiny_text_model: Path, shared_datasets: Path
) -> Iterator[Stack]:
    """Celery mode: Redis (the dedicated test DB, flushed) and real worker processes."""
    if not redis_available():
        pytest.skip(f"no Redis at {REDIS_URL}")
    import redis

    r = redis.Redis.from_url(REDIS_URL)
    r.flushdb()
    s = _make_stack(tmp_path_factory, tiny_text_model, shared_datasets)
    yield s
    _close(s)
    r.flushdb()


@pytest.fixture(scope="module")
def embedded_stack(
    tmp_path_factory: pytest.TempPathFactory, tiny_text_model: Path, shared_datasets: Path
) -> Iterator[Stack]:
    """Embedded mode: no Redis, no worker; the API runs jobs as child processes."""
    s = _make_stack(tmp_path_factory, tiny_text_model, shared_datasets)
    yield s
    _close(s)
