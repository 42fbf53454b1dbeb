"""The embedded default: no Redis, no Docker, no worker to start. The API runs each job
in a child process (``python -m worker.local``), keeps records in SQLite, and survives
its own restart and the death of a job process."""

from __future__ import annotations

import json
import os
import signal
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # the fixture's type; conftest is not imported at run time
    from tests.worker.conftest import Stack

pytestmark = pytest.mark.slow

PAIR = {"texts": ["The storm knocked out power."], "text_pairs": ["storm"]}


def test_job_runs_without_redis_and_outlives_an_api_restart(embedded_stack: Stack) -> None:
    s = embedded_stack
    client = s.client(redis_url=None)
    r = client.post("/jobs/train", json=s.job("embedded"))
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    status = s.poll(client, job_id, lambda j: j["state"] not in ("queued", "running"), 240)
    s.snapshots["embedded_succeeded"] = status
    assert status["state"] == "succeeded", status.get("error")
    assert status["worker"].startswith("local@") and status["published_version"] == "v1"
    assert (s.artifacts / "jobs.sqlite3").is_file()
    job_log = (s.artifacts / "runs" / job_id / "job.log").read_text()
    assert f"job {job_id}: succeeded" in job_log and "Quantization parameters" not in job_log
    for flood in ("LOAD REPORT", "Loading weights", "Warning:", "requires torchvision"):
        assert flood not in job_log, f"{flood!r} in the job log:\n{job_log[-2000:]}"

    r = client.post("/classify", json={**PAIR, "model": "embedded"})
    assert r.status_code == 200, r.text
    r = client.post("/classify/teacher", json={**PAIR, "model": "embedded"})
    assert r.status_code == 503 and "LUGPI_REDIS_URL" in r.json()["detail"]

    client.__exit__(None, None, None)  # the API stops ...
    s.clients.remove(client)
    again = s.client(redis_url=None)  # ... and a new one finds every record
    assert again.get(f"/jobs/{job_id}").json()["state"] == "succeeded"
    assert again.get("/jobs").json()["total"] == 1


def test_killed_job_process_is_resumed(embedded_stack: Stack) -> None:
    s = embedded_stack
    client = s.client(redis_url=None)
    r = client.post("/jobs/train", json=s.job("embedded-kill", slow_images=True))
    job_id = r.json()["job_id"]

    def generating(j: dict[str, Any]) -> bool:
        p = j["progress"] or {}
        return p.get("stage") == "generate" and p.get("done", 0) >= 3

    s.poll(client, job_id, generating, 120)
    child = client.app.state.jobqueue._child  # type: ignore[attr-defined]
    os.kill(child.pid, signal.SIGKILL)
    done = s.poll(client, job_id, lambda j: j["state"] in ("succeeded", "failed"), 240)
    assert done["state"] == "succeeded", done.get("error")
    assert done["attempts"] == 2
    index = json.loads((s.artifacts / "runs" / job_id / "images" / "images.json").read_text())
    assert index["summary"]["cached"] >= 3  # the dead attempt's images were kept and reused
