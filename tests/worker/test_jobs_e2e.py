"""Training jobs end to end: HTTP -> Redis -> a real Celery worker process -> pipeline ->
model repository -> the API serves the new model.

Tiny RANDOM-weight text and image models and the tiny random generator on a small
slice of CWI 2018 News (from ../shared/datasets): the numbers mean nothing, every code
path is real. Set LUGPI_TEST_SNAPSHOTS=<file> to keep the job statuses seen.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from contracts.jobs import Stage

if TYPE_CHECKING:  # the fixture's type; conftest is not imported at run time
    from tests.worker.conftest import Stack

pytestmark = [pytest.mark.slow, pytest.mark.redis]

PAIRS = [("The storm knocked out power across the region.", "storm")]


@pytest.fixture(scope="module")
def trained(stack: Stack) -> dict[str, Any]:
    """Submit a job before any worker runs (so it is seen queued), start a worker, poll
    the job to its end. The worker stays up for the next tests."""
    client = stack.client()
    cfg = stack.job("cwi-tiny")
    cfg["generator"]["num_shards"] = 3  # the fan-out path: shard tasks + work claiming
    r = client.post("/jobs/train", json=cfg)
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    stack.snapshots["queued"] = client.get(f"/jobs/{job_id}").json()
    stack.worker("w1")
    seen: list[dict[str, Any]] = []
    done = stack.poll(client, job_id, lambda s: s["state"] not in ("queued", "running"), 240, seen)
    running = [s for s in seen if s["state"] == "running" and (s["progress"] or {}).get("done")]
    stack.snapshots["running"] = running[len(running) // 2] if running else None
    stack.snapshots["succeeded"] = done
    return {"client": client, "job_id": job_id, "status": done, "seen": seen}


def test_job_runs_to_success_and_its_model_is_served(stack: Stack, trained: dict[str, Any]) -> None:
    status, client = trained["status"], trained["client"]
    assert status["state"] == "succeeded", status.get("error")
    assert stack.snapshots["queued"]["state"] == "queued"
    # Every stage that ran is in the record's stage_seconds; polling every 0.2 s samples
    # progress, and a stage that takes less than one poll (the tiny teacher did, in CI)
    # can fall between two polls, so the sampled stages are only checked to be real ones.
    assert {"generate", "teacher", "distill", "export"} <= set(status["stage_seconds"])
    stages = {s["progress"]["stage"] for s in trained["seen"] if s["progress"]}
    assert stages and stages <= {stage.value for stage in Stage}
    assert all(0 <= s["progress"]["fraction"] <= 1 for s in trained["seen"] if s["progress"])
    assert status["published_model"] == "cwi-tiny" and status["published_version"] == "v1"
    assert "student" in status["metrics"] and status["stage_seconds"]["generate"] > 0
    assert (stack.repository / "cwi-tiny" / "v1" / "bundle.json").is_file()

    # The API serves the published model without a restart (poll_interval_s=0).
    texts, pairs = [t for t, _ in PAIRS], [p for _, p in PAIRS]
    r = client.post("/classify", json={"texts": texts, "text_pairs": pairs, "model": "cwi-tiny"})
    assert r.status_code == 200, r.text
    prediction = r.json()["predictions"][0]
    assert r.json()["version"] == "v1" and prediction["label"] in prediction["scores"]


def test_teacher_answers_beside_the_student(trained: dict[str, Any]) -> None:
    client = trained["client"]
    body = {"texts": [PAIRS[0][0]], "text_pairs": [PAIRS[0][1]], "model": "cwi-tiny"}
    r = client.post("/classify/teacher", json={**body, "return_images": True})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["job_id"] == trained["job_id"] and out["teacher"]["name"] == "tiny"
    assert len(out["student"]) == len(out["teacher"]["predictions"]) == 1
    assert out["teacher"]["prompts"] == ["storm"]  # CWI prompts with the target alone
    assert base64.b64decode(out["teacher"]["images"][0]).startswith(b"\x89PNG")
    assert {"student", "load", "generate", "teacher", "round_trip"} <= set(out["timings_ms"])
    again = client.post("/classify/teacher", json=body).json()  # models stay loaded
    assert again["teacher"]["images"] is None
    assert again["timings_ms"]["load"] < out["timings_ms"]["load"] + 1


def test_cancel_a_running_job(stack: Stack, trained: dict[str, Any]) -> None:
    client = trained["client"]
    job_id = client.post("/jobs/train", json=stack.job("cwi-cancel", slow_images=True)).json()[
        "job_id"
    ]
    stack.poll(
        client,
        job_id,
        lambda s: (
            bool(s["progress"])
            and s["progress"]["stage"] == "generate"
            and s["progress"]["done"] >= 2
        ),
        120,
    )
    r = client.post(f"/jobs/{job_id}/cancel")
    assert r.status_code == 200 and r.json()["cancel_requested"] is True
    status = stack.poll(client, job_id, lambda s: s["state"] != "running", 30)
    stack.snapshots["cancelled"] = status
    assert status["state"] == "cancelled" and status["published_model"] is None
    assert status["progress"]["message"].startswith("cancelled during generate")
    run_dir = stack.artifacts / "runs" / job_id
    assert (run_dir / "data" / "stage.json").is_file()  # finished stages are kept
    assert not (run_dir / "images" / "stage.json").exists()
    assert any((run_dir / "image-cache").rglob("*.png"))  # and the images drawn so far
    assert not (stack.repository / "cwi-cancel").exists()  # nothing published


def _generating(attempt: int, at_least: int) -> Callable[[dict[str, Any]], bool]:
    def check(s: dict[str, Any]) -> bool:
        p = s["progress"] or {}
        return (
            s["state"] == "running"
            and s["attempts"] == attempt
            and p.get("stage") == "generate"
            and p.get("done", 0) >= at_least
        )

    return check


def test_killed_worker_leaves_no_running_job_and_a_new_worker_resumes(
    stack: Stack, trained: dict[str, Any]
) -> None:
    for w in stack.workers:  # only the workers this test starts may take the job
        w.stop()
    client = trained["client"]
    victim = stack.worker("w2", plain_celery=True)  # the plain `celery -A worker.app` CLI
    cfg = stack.job("cwi-kill", slow_images=True)
    job_id = client.post("/jobs/train", json=cfg).json()["job_id"]
    stack.poll(client, job_id, _generating(attempt=1, at_least=3), 120)
    victim.kill()
    # The API's reaper sees no heartbeat and no lock holder: re-queued, never "running".
    lost = stack.poll(client, job_id, lambda s: s["state"] != "running", 30)
    stack.snapshots["requeued_after_kill"] = lost
    assert lost["state"] == "queued" and "worker lost" in lost["progress"]["message"]

    # A deploy: SIGTERM stops the job at its next step and hands it back at once.
    w3 = stack.worker("w3")
    seen = stack.poll(client, job_id, _generating(attempt=2, at_least=0), 120)
    assert w3.terminate() == 0
    handed = stack.poll(client, job_id, lambda s: s["state"] != "running", 10)
    stack.snapshots["requeued_after_sigterm"] = handed
    assert handed["state"] == "queued" and "worker shut down" in handed["progress"]["message"]
    assert seen["attempts"] == 2

    stack.worker("w4")
    done = stack.poll(client, job_id, lambda s: s["state"] not in ("queued", "running"), 240)
    assert done["state"] == "succeeded", done.get("error")
    assert done["attempts"] == 3 and done["published_version"] == "v1"
    index = json.loads((stack.artifacts / "runs" / job_id / "images" / "images.json").read_text())
    assert index["summary"]["cached"] >= 3  # the images of earlier attempts were reused


def test_redis_down_jobs_503_classify_still_serves(stack: Stack, trained: dict[str, Any]) -> None:
    client = stack.client(redis_url="redis://127.0.0.1:1/0")
    r = client.get("/jobs")
    assert r.status_code == 503 and "unreachable" in r.json()["detail"]
    texts, pairs = [t for t, _ in PAIRS], [p for _, p in PAIRS]
    r = client.post("/classify", json={"texts": texts, "text_pairs": pairs, "model": "cwi-tiny"})
    assert r.status_code == 200, r.text
