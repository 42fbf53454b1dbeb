"""``lugpi-jobs``: free the disk that training jobs' run directories hold, as the admin
route ``DELETE /jobs/{id}/artifacts`` does.

    lugpi-jobs delete-artifacts JOB_ID [--yes]
    lugpi-jobs prune-artifacts --keep-days N [--yes]

Its own command, beside the job store rather than in ``lugpi`` (the training CLI): it
imports neither torch nor typer, so it runs wherever the API does, the API-only install
and image included. The store and artifacts directory are the API's and workers' own
(``LUGPI_REDIS_URL``, ``LUGPI_ARTIFACTS_DIR``). Job records and published models stay.
"""

from __future__ import annotations

import argparse
import sys

from contracts.errors import LugpiError
from contracts.settings import SharedSettings
from jobs.artifacts import delete_job_artifacts, prune_job_artifacts
from jobs.store import check_job_id, open_jobstore


def _confirm(question: str) -> bool:
    try:
        return input(f"{question} [y/N]: ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lugpi-jobs", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("delete-artifacts", help="Delete a finished job's run directory.")
    one.add_argument("job_id", help="The job's id (32 hex digits).")
    one.add_argument("--yes", "-y", action="store_true", help="Do not ask for confirmation.")
    old = sub.add_parser(
        "prune-artifacts",
        help="Delete the run directories of jobs finished more than --keep-days ago "
        "(what LUGPI_JOB_ARTIFACTS_KEEP_DAYS makes the API do hourly).",
    )
    old.add_argument("--keep-days", type=float, required=True)
    old.add_argument("--yes", "-y", action="store_true", help="Do not ask for confirmation.")
    args = parser.parse_args(argv)

    settings = SharedSettings()
    try:
        store = open_jobstore(settings.redis_url, settings.artifacts_dir)
        try:
            if args.command == "delete-artifacts":
                job_id = check_job_id(args.job_id)
                store.get(job_id)  # unknown: say so before asking
                if not args.yes and not _confirm(f"Delete the artifacts of job {job_id}?"):
                    print("aborted", file=sys.stderr)
                    return 1
                freed = delete_job_artifacts(store, settings.artifacts_dir, job_id)
                print(f"job {job_id}: {freed / 1e6:.1f} MB freed")
            else:
                question = (
                    f"Delete the artifacts of jobs finished over {args.keep_days:g} days ago "
                    f"in {settings.artifacts_dir}?"
                )
                if not args.yes and not _confirm(question):
                    print("aborted", file=sys.stderr)
                    return 1
                pruned = prune_job_artifacts(store, settings.artifacts_dir, args.keep_days)
                for job_id in pruned:
                    print(f"deleted the artifacts of job {job_id}")
                print(f"{len(pruned)} job(s) pruned")
        finally:
            store.close()
    except LugpiError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
