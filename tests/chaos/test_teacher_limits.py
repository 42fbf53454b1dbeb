"""Weakness guarded: any classify key could drive /classify/teacher and tie up the GPU
worker and the API's default thread pool: no limit on texts per call, no bound on calls
waiting for a worker, and a call the API gave up on still ran on the worker.

Now (besides its own key scope, tests/api/test_auth.py): at most LUGPI_TEACHER_MAX_TEXTS
texts per call; at most LUGPI_TEACHER_CONCURRENCY calls wait for workers, on their own
threads (beyond: 429); the worker drops a call whose deadline passed unrun. Real Redis,
no worker: every admitted call waits until the API gives up."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest

from contracts.bundle import MANIFEST
from tests.api.conftest import MakeClient
from tests.worker.conftest import REDIS_URL, redis_available

KEY = {"X-API-Key": "teacher-key"}


@pytest.fixture
def with_job_id(repository: Path) -> Path:
    path = repository / "sentiment" / "v1" / MANIFEST
    data = json.loads(path.read_text())
    data["provenance"]["job_id"] = "0123456789abcdef0123456789abcdef"
    path.write_text(json.dumps(data))
    return repository


def test_random_teacher_text_limit(make_client: MakeClient, with_job_id: Path) -> None:
    client = make_client(teacher_keys=["teacher-key"], teacher_max_texts=4)
    r = client.post("/classify/teacher", json={"texts": ["a"] * 5, "model": "sentiment"},
                    headers=KEY)  # fmt: skip
    assert r.status_code == 422
    assert "LUGPI_TEACHER_MAX_TEXTS" in json.dumps(r.json())


def test_random_teacher_calls_are_bounded(make_client: MakeClient, with_job_id: Path) -> None:
    if not redis_available():
        pytest.skip(f"no Redis at {REDIS_URL}")
    client = make_client(
        teacher_keys=["teacher-key"],
        redis_url=REDIS_URL,
        teacher_timeout_s=2.0,
        teacher_concurrency=2,
    )
    body = {"texts": ["a fine film"], "model": "sentiment"}

    async def calls() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return list(
                await asyncio.gather(
                    *(c.post("/classify/teacher", json=body, headers=KEY) for _ in range(6))
                )
            )

    codes = sorted(r.status_code for r in asyncio.run(calls()))
    assert codes == [429] * 4 + [503] * 2, codes


def test_worker_drops_a_call_past_its_deadline() -> None:
    """The worker side: a call whose deadline passed is answered unrun (the API is gone)."""
    from worker.settings import WorkerSettings
    from worker.teacher_service import classify_with_teacher

    payload = {"job_id": "0" * 32, "texts": ["a"], "deadline": time.time() - 1}
    answer = classify_with_teacher(payload, WorkerSettings(artifacts_dir=Path("/nonexistent")))
    assert answer.get("code") == "expired", answer
