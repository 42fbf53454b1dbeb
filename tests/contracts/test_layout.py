"""The run directory's names come from one object (contracts.layout.RunLayout)."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.jobs import Stage
from contracts.layout import RunLayout
from worker.settings import WorkerSettings


def test_a_jobs_run_dir_is_the_same_for_the_worker_and_the_layout(tmp_path: Path) -> None:
    settings = WorkerSettings(artifacts_dir=tmp_path)
    job = "0" * 32
    assert settings.run_dir(job) == RunLayout.for_job(tmp_path, job).root == tmp_path / "runs" / job


def test_stage_dirs_and_files() -> None:
    run = RunLayout(Path("r"))
    assert [run.stage(s).name for s in (Stage.PREPARE, Stage.GENERATE, Stage.EXPORT)] == [
        "data",
        "images",
        "export",
    ]
    assert run.teacher("clip").name == "teacher-clip"
    assert run.student("amalgamated").name == "student-amalgamated"
    assert run.image_cache() == Path("r/image-cache")
    assert run.image_cache("/shared/cache") == Path("/shared/cache")
    assert (run.config.name, run.published.name, run.job_log.name) == (
        "config.yaml",
        "published.json",
        "job.log",
    )
    with pytest.raises(ValueError, match="one directory per model"):
        run.stage(Stage.TEACHER)
