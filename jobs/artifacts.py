"""Deleting jobs' artifacts: a finished job's run directory (stage outputs, images, the
job log; often gigabytes) goes, its record and any model it published stay.

One implementation for the admin route (``DELETE /jobs/{id}/artifacts``), the CLI
(``lugpi-jobs delete-artifacts|prune-artifacts``, jobs/cli.py) and the reapers' pruning
(``LUGPI_JOB_ARTIFACTS_KEEP_DAYS``). A job that is not finished is refused: its worker may
still be writing there, and a resumed attempt needs its finished stages. Torch-free.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import uuid
from datetime import timedelta
from pathlib import Path

from contracts.errors import Conflict
from contracts.jobs import JobState
from contracts.layout import RUNS_DIR, RunLayout
from jobs.store import JobStore, now_utc

log = logging.getLogger(__name__)

TRASH_PREFIX = ".deleting-"


def _size(root: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):  # removed meanwhile
                total += (Path(dirpath) / name).lstat().st_size
    return total


def _remove(root: Path) -> int:
    """Move ``root`` aside in one rename (no half-deleted run directory under the job's
    name), then delete it; the bytes it held."""
    if not root.exists():
        return 0
    size = _size(root)
    trash = root.with_name(f"{TRASH_PREFIX}{root.name}-{uuid.uuid4().hex[:8]}")
    root.rename(trash)
    shutil.rmtree(trash, ignore_errors=True)
    return size


def delete_job_artifacts(store: JobStore, artifacts_dir: Path, job_id: str) -> int:
    """Delete a finished job's run directory; the bytes freed (0 if already gone).
    ``JobNotFound`` for an unknown job, ``Conflict`` for one that is not finished."""
    rec = store.get(job_id)
    if not rec.state.terminal:
        raise Conflict(
            f"job {job_id} is {rec.state.value}; its artifacts can be deleted once it has "
            "finished (cancel it first)"
        )
    freed = _remove(RunLayout.for_job(Path(artifacts_dir), job_id).root)
    if freed:
        log.info("job %s: artifacts deleted (%d bytes)", job_id, freed)
    return freed


def prune_job_artifacts(store: JobStore, artifacts_dir: Path, keep_days: float) -> list[str]:
    """Delete the run directories of jobs that finished more than ``keep_days`` ago (and
    leftovers of interrupted deletions); the ids of the jobs pruned."""
    runs = Path(artifacts_dir) / RUNS_DIR
    if not runs.is_dir():
        return []
    for leftover in runs.glob(f"{TRASH_PREFIX}*"):
        shutil.rmtree(leftover, ignore_errors=True)
    cutoff = now_utc() - timedelta(days=keep_days)
    pruned = []
    for state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED):
        for job_id in store.ids_in_state(state):
            rec = store.get(job_id)
            root = RunLayout.for_job(Path(artifacts_dir), job_id).root
            if rec.finished_at is not None and rec.finished_at < cutoff and root.exists():
                delete_job_artifacts(store, artifacts_dir, job_id)
                pruned.append(job_id)
    return pruned
