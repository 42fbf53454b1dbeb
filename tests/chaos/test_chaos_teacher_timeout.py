"""The worker side of the teacher timeout: a request that waited longer than
``teacher_timeout_s`` (the API gave up on it and answered 503) is dropped unanswered,
before any model is loaded, so a backlog of stale requests cannot keep a GPU busy."""

from __future__ import annotations

import time
from pathlib import Path

from worker.settings import WorkerSettings
from worker.teacher_service import classify_with_teacher


def test_a_stale_teacher_request_is_dropped_before_any_work(tmp_path: Path) -> None:
    """Weakness: WorkerSettings.teacher_timeout_s was declared but never read, so a worker
    ran every queued teacher request however long ago its caller had given up."""
    settings = WorkerSettings(artifacts_dir=tmp_path, teacher_timeout_s=5.0)
    stale = {"job_id": "0" * 32, "texts": ["a"], "sent_at": time.time() - 60}
    out = classify_with_teacher(stale, settings)
    assert "waited" in out["error"] and "teacher_timeout_s" in out["error"], out
    fresh = {**stale, "sent_at": time.time()}
    out = classify_with_teacher(fresh, settings)  # not dropped: fails on the missing run
    assert "not on this worker" in out["error"], out
