"""Queued jobs in Celery mode have an owner: a job whose task message was lost (or
acknowledged by a delivery that could not run it, or sent to a queue no worker consumes)
is sent again, and failed with the reason after a while, never left queued forever.
Real Redis (broker and job store, the test DB), the API's real Celery sender."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import redis

from api.jobqueue import CeleryJobQueue
from api.settings import ApiSettings
from contracts.jobs import JobState
from jobs.lifecycle import QUEUE_JOBS, TASK_RUN_JOB

pytestmark = pytest.mark.redis


def _queue(redis_url: str, **clocks: float) -> CeleryJobQueue:
    return CeleryJobQueue(ApiSettings(redis_url=redis_url, **clocks))


@pytest.fixture
def broker(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def _messages_for(broker: redis.Redis, job_id: str) -> int:
    """Task messages for ``job_id`` waiting in the jobs queue (kombu keeps a Redis list)."""
    found = 0
    for raw in broker.lrange(QUEUE_JOBS, 0, -1):
        headers = json.loads(raw)["headers"]
        found += headers["task"] == TASK_RUN_JOB and job_id in headers["argsrepr"]
    return found


def test_a_job_whose_message_was_dropped_is_sent_again(redis_url: str, broker: redis.Redis) -> None:
    """Weakness: in Celery mode a queued job is only as alive as its message; with the
    message dropped the job stayed "queued" forever and nobody noticed."""
    queue = _queue(redis_url, queued_resend_s=3.0, queued_timeout_s=3600)
    try:
        job = queue.store.create({}).job_id
        queue.submit(job)
        assert _messages_for(broker, job) == 1
        broker.delete(QUEUE_JOBS)  # the message is lost (a broker restart, an ack away)
        queue.reap()
        assert _messages_for(broker, job) == 0  # too early: it may still be on its way
        time.sleep(3.2)
        queue.reap()
        assert _messages_for(broker, job) == 1
        rec = queue.store.get(job)
        assert rec.state is JobState.QUEUED and rec.progress is not None
        assert "sent again" in rec.progress.message
        queue.reap()  # the next resend waits twice as long: no flood of duplicates
        assert _messages_for(broker, job) == 1
    finally:
        queue.stop()


def test_a_job_no_worker_starts_fails_with_the_reason(redis_url: str, broker: redis.Redis) -> None:
    """Weakness: with no worker on the queue a job waited "queued" forever, with no
    reason given anywhere."""
    queue = _queue(redis_url, queued_resend_s=3600, queued_timeout_s=0.5)
    try:
        job = queue.store.create({}).job_id
        queue.submit(job)
        held = queue.store.create({}).job_id  # a worker is starting this one: left alone
        assert queue.store.acquire_lock(held, "w:1:x", 60)
        time.sleep(0.7)
        queue.reap()
        rec = queue.store.get(job)
        assert rec.state is JobState.FAILED, rec
        assert "no worker started the job" in (rec.error or "")
        assert QUEUE_JOBS in (rec.error or "")
        assert queue.store.get(held).state is JobState.QUEUED
    finally:
        queue.stop()
