"""Start a Celery worker: ``lugpi-worker`` or ``python -m worker``.

The same as ``celery -A worker.app worker --pool=solo --concurrency=1 -Q <queues>``
with the settings' defaults filled in: one task per process (CUDA is not fork-safe,
and one job should own the GPU), every LUGPI queue unless told otherwise.
"""

from __future__ import annotations

import argparse
import sys

from contracts.errors import ConfigError
from worker.settings import WorkerSettings


def start_worker(
    queues: list[str] | None = None,
    pool: str | None = None,
    concurrency: int = 1,
    loglevel: str = "info",
    hostname: str | None = None,
) -> None:
    """Run a worker in this process until it is stopped (Ctrl-C / SIGTERM: warm shutdown,
    the running task finishes first; a second signal stops at once and the job is
    resumed later by another worker)."""
    settings = WorkerSettings()
    if not settings.redis_url:
        raise ConfigError(
            "LUGPI_REDIS_URL is not set: a worker takes its jobs from Redis, e.g. "
            "LUGPI_REDIS_URL=redis://localhost:6379/0. Without Redis no worker is needed: "
            "the API runs jobs itself (embedded mode)."
        )
    from worker.app import app

    argv = [
        "worker",
        f"--pool={pool or settings.pool}",
        f"--concurrency={concurrency}",
        f"--queues={','.join(queues or settings.queues)}",
        f"--loglevel={loglevel}",
        # No need to sync revoked-task lists or gossip: jobs are cancelled through the store.
        "--without-mingle",
        "--without-gossip",
    ]
    if hostname:
        argv.append(f"--hostname={hostname}")
    app.worker_main(argv)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    parser.add_argument("--queues", help="comma-separated; default: all LUGPI queues")
    parser.add_argument("--pool", choices=["solo", "threads"])
    parser.add_argument("--hostname", help="worker name, e.g. gpu0@%%h")
    args = parser.parse_args(argv)
    try:
        start_worker(
            queues=args.queues.split(",") if args.queues else None,
            pool=args.pool,
            hostname=args.hostname,
        )
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
