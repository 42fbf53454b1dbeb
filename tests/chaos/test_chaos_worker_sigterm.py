"""A worker asked to stop (SIGTERM: a deploy, a scale-down) while it draws a generation
shard for another worker's job: it abandons the shard at its next batch, releases the
shard's lock and exits; the job's own task takes the rest of the shard over and the job
succeeds. Real Celery worker processes, real Redis, tiny random-weight models."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

from worker.shards import shard_lock

if TYPE_CHECKING:  # the fixture's type
    from tests.worker.conftest import Stack

pytestmark = [pytest.mark.slow, pytest.mark.redis]


def test_a_stopped_worker_abandons_its_shard_and_the_job_finishes(stack: Stack) -> None:
    """Weakness: a worker's warm shutdown waited for its shard task to draw every image of
    the shard (minutes on a real generator), holding the deploy up."""
    client = stack.client()
    stack.worker("owner")  # takes the job's own task: it fans shards out and claims them too
    cfg = stack.job("shard-stop", slow_images=True)
    cfg["generator"]["num_shards"] = 3
    job_id = client.post("/jobs/train", json=cfg).json()["job_id"]
    helper = stack.worker("helper")  # idle: it takes the shard tasks
    store = client.app.state.jobqueue.store  # type: ignore[attr-defined]

    def helper_shard() -> int | None:
        for i in range(3):
            holder = store.lock_holder(shard_lock(job_id, i))
            if holder is not None and holder.startswith("helper@"):
                return i
        return None

    deadline = time.monotonic() + 180
    while (shard := helper_shard()) is None:
        assert time.monotonic() < deadline, "the helper never drew a shard"
        time.sleep(0.1)
    assert helper.terminate() == 0
    log = helper.log.read_text()
    assert f"shard {shard} abandoned" in log, log[-2000:]
    holder = store.lock_holder(shard_lock(job_id, shard))
    assert holder is None or not holder.startswith("helper@")  # released, or taken over
    done = stack.poll(client, job_id, lambda s: s["state"] not in ("queued", "running"), 300)
    assert done["state"] == "succeeded", done.get("error")
