"""The process that runs one job attempt's stages: ``python -m worker.attempt_process SPEC``.

Started by ``worker.runner.run_job``, which keeps the job's lock and heartbeat and watches
this process from outside: a stage that hangs (a model load on a stalled disk, a deadlock)
cannot outlive the job's time limit or a lost lock, because the runner kills the process,
which no thread of the stage itself could do. So the Celery worker (whose solo pool
ignores task time limits) and the embedded job process are always freed.

SPEC is a JSON file written by the runner; the outcome (the attempt's terminal state,
metrics, published version, or "stopping"/"lost") is written beside it, atomically, as
the last thing this process does. No outcome file means the process died.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from contracts.artifacts import write_text_atomic
from contracts.config import PipelineConfig
from contracts.errors import Cancelled, JobTimeout, LugpiError
from jobs.lifecycle import TASK_GENERATE_SHARD, AttemptLost
from jobs.store import JobStore, open_jobstore
from worker.job_context import STOPPING, FanOut, JobReporter, WorkerStopping
from worker.library_noise import quiet_libraries
from worker.settings import WorkerSettings

log = logging.getLogger("worker.attempt")

SPEC_FILE, OUTCOME_FILE = "spec.json", "outcome.json"
_PR_SET_PDEATHSIG = 1


def _die_with(parent: int) -> None:
    """Never outlive the runner: nobody would own this attempt any more (its lock lapses
    and the reaper hands the job on), so it must not keep writing the run directory."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    def watch() -> None:  # also where prctl is missing, and if the parent died before it
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="watch-runner", daemon=True).start()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """From the runner: stop at the next step and hand the job back. A second: now."""
    if not STOPPING.is_set():
        STOPPING.set()
        return
    raise SystemExit(128 + signum)


def celery_fan_out(settings: WorkerSettings) -> FanOut:
    """Send generation shards to the workers' shard queue, by task name."""
    from worker.app import create_app

    app = create_app(settings)

    def send(job_id: str, shard: int, kind: str) -> None:
        app.send_task(TASK_GENERATE_SHARD, args=[job_id, shard], kwargs={"kind": kind})

    return send


def _outcome(store: JobStore, spec: dict[str, Any], settings: WorkerSettings) -> dict[str, Any]:
    job_id, attempt = spec["job_id"], spec["attempt"]
    rec = store.get(job_id)
    started = rec.started_at.timestamp() if rec.started_at else time.time()
    reporter = JobReporter(
        store,
        job_id,
        attempt,
        min_interval=settings.progress_interval_s,
        deadline=started + settings.job_timeout_s,
        started_at=started,
    )
    module, _, name = str(spec["stages"]).partition(":")
    stages = getattr(importlib.import_module(module), name)
    fan_out = celery_fan_out(settings) if spec["fan_out"] and settings.redis_url else None
    out: dict[str, Any]
    try:
        cfg = PipelineConfig.model_validate(rec.config)
        result = stages(cfg, job_id, settings, reporter, fan_out, worker=spec["worker"])
        out = {"state": "succeeded", "metrics": result.metrics, "published": result.published}
    except AttemptLost as e:
        log.error("job %s: %s; leaving it to its new owner", job_id, e)
        out = {"state": "lost", "why": str(e)}
    except WorkerStopping as e:
        out = {"state": "stopping", "why": str(e)}
    except Cancelled as e:
        log.info("job %s: %s", job_id, e)
        out = {"state": "cancelled", "message": str(e)}
    except (JobTimeout, LugpiError) as e:
        log.warning("job %s failed: %s", job_id, e)
        out = {"state": "failed", "error": str(e), "message": "failed"}
    except Exception as e:
        log.exception("job %s crashed", job_id)
        out = {"state": "failed", "error": f"internal error: {type(e).__name__}: {e}"}
    out["stage_time"] = reporter.stage_time()
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m worker.attempt_process SPEC.json", file=sys.stderr)
        return 2
    spec_file = Path(args[0])
    spec = json.loads(spec_file.read_text())
    _die_with(int(spec["parent"]))
    signal.signal(signal.SIGTERM, _on_sigterm)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    for name in ("worker", "training"):
        logging.getLogger(name).setLevel(logging.INFO)
    settings = WorkerSettings.model_validate(spec["settings"])
    quiet_libraries(settings.verbose_job_log)  # before the stages import them
    store = open_jobstore(settings.redis_url, settings.artifacts_dir)
    try:
        out = _outcome(store, spec, settings)
    finally:
        store.close()
    write_text_atomic(spec_file.with_name(OUTCOME_FILE), json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
