"""Cancel racing finish. The publish step is the job's commit point:

- a cancel accepted before it wins: the attempt stops there and publishes nothing;
- once a job is publishing, a cancel is refused (409) and the job ends succeeded with
  the version it published;
- a worker lost while publishing has its job resumed (the publish is found again), never
  turned into "cancelled" with its published version forgotten.

Both orders on the real stores (SQLite and Redis), driven through the worker's own
reporter and the HTTP route.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import ApiSettings
from contracts.errors import Cancelled
from contracts.jobs import JobState, Stage
from jobs.lifecycle import finish_attempt, reap_stale_jobs, request_cancel, start_attempt
from jobs.store import JobStore, SqliteJobStore
from worker.job_context import JobReporter


def _reporter(store: JobStore, job_id: str, attempt: int) -> JobReporter:
    return JobReporter(store, job_id, attempt, min_interval=0.0, deadline=time.time() + 600)


def _at_publish_point(store: JobStore) -> tuple[str, int, JobReporter]:
    """A running attempt that just reached the pipeline's last cancel point."""
    job = store.create({}).job_id
    rec = start_attempt(store, job, "w")
    assert rec is not None
    reporter = _reporter(store, job, rec.attempts)
    ctx = reporter.context()
    ctx.step(Stage.EXPORT, 1, 1, "exported")
    ctx.step(Stage.PUBLISH, 0, 1, "publishing")  # what Run._publish does before publishing
    return job, rec.attempts, reporter


def test_a_cancel_before_the_publish_point_wins(store: JobStore) -> None:
    job = store.create({}).job_id
    rec = start_attempt(store, job, "w")
    assert rec is not None
    ctx = _reporter(store, job, rec.attempts).context()
    ctx.step(Stage.EXPORT, 1, 1, "exported")
    assert request_cancel(store, job).cancel_requested
    with pytest.raises(Cancelled):
        ctx.step(Stage.PUBLISH, 0, 1, "publishing")


def test_a_cancel_after_the_publish_point_is_refused(store: JobStore) -> None:
    """Weakness: a cancel accepted after the last cancel point answered "cancel requested"
    although the job went on to publish and end succeeded."""
    job, attempt, _ = _at_publish_point(store)
    rec = request_cancel(store, job)
    assert not rec.cancel_requested and rec.publishing
    finish_attempt(store, job, attempt, JobState.SUCCEEDED, published=("m", "v3"))
    done = store.get(job)
    assert done.state is JobState.SUCCEEDED and done.published_version == "v3"
    assert not done.cancel_requested


def test_a_worker_lost_while_publishing_is_resumed_not_cancelled(
    store: JobStore,
) -> None:
    """Weakness: a worker that died after publishing, with a cancel pending, left its job
    "cancelled" and the published version unrecorded."""
    job, _, _ = _at_publish_point(store)
    request_cancel(store, job)
    time.sleep(0.1)
    (reaped,) = reap_stale_jobs(store, stale_after=0.05, max_attempts=3, requeue=None)
    assert reaped.state is JobState.QUEUED, reaped  # the next attempt finds its version
    assert not reaped.cancel_requested


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = ApiSettings(
        allow_unauthenticated_admin=True,  # loopback test client, no keys
        artifacts_dir=tmp_path / "artifacts",
        model_repository=tmp_path / "repo",
        poll_interval_s=0,
    )
    SqliteJobStore(tmp_path / "artifacts" / SqliteJobStore.FILE_NAME).close()
    with TestClient(create_app(settings)) as c:
        yield c


def test_the_cancel_route_answers_409_once_the_job_is_publishing(client: TestClient) -> None:
    """The HTTP face of the rule: 409 with the reason, and the record unchanged."""
    queue = client.app.state.jobqueue  # type: ignore[attr-defined]
    job, _, _ = _at_publish_point(queue.store)  # running: the embedded runner leaves it be
    r = client.post(f"/jobs/{job}/cancel")
    assert r.status_code == 409, r.text
    assert "publishing" in r.json()["detail"]
    assert client.get(f"/jobs/{job}").json()["cancel_requested"] is False
