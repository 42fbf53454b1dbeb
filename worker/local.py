"""The embedded job process: ``python -m worker.local <job_id>``.

Started by the API's ``LocalProcessJobQueue`` when no Redis is configured (the newcomer's
setup: no Redis, no Docker, no GPU). It runs one job to its end with the same code path
as a Celery worker (worker/runner.py) against the SQLite job store, then exits.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
from types import FrameType

from jobs.store import SqliteJobStore, check_job_id
from worker.job_context import STOPPING
from worker.runner import run_job
from worker.settings import WorkerSettings


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """First SIGTERM: stop at the next step and put the job back in the queue (the next
    API start resumes it). A second one: exit now (SystemExit unwinds the job, so the lock
    is released and no half-written stage directory is left; the reaper resumes it)."""
    if not STOPPING.is_set():
        STOPPING.set()
        return
    raise SystemExit(128 + signum)


def _watch_parent(parent: int) -> None:
    """End the job when the API that started it is gone (killed, not shut down), so no
    orphan keeps training while a new API starts the queue again."""
    while os.getppid() == parent:
        threading.Event().wait(2.0)
    os.kill(os.getpid(), signal.SIGTERM)  # stop at the next step, back to the queue
    threading.Event().wait(30.0)
    os.kill(os.getpid(), signal.SIGTERM)  # no step for 30 s: stop now


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m worker.local <job_id>", file=sys.stderr)
        return 2
    job_id = check_job_id(args[0])
    # Our own progress at INFO; libraries (onnxruntime's quantizer...) only when they warn.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    for name in ("worker", "training"):
        logging.getLogger(name).setLevel(logging.INFO)
    signal.signal(signal.SIGTERM, _on_sigterm)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    settings = WorkerSettings()
    store = SqliteJobStore(settings.artifacts_dir / SqliteJobStore.FILE_NAME)
    try:
        run_job(store, job_id, settings, worker=f"local@{socket.gethostname()}")
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
