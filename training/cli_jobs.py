"""``lugpi jobs delete-artifacts|prune-artifacts``: free the disk that training jobs'
run directories hold, as the admin route ``DELETE /jobs/{id}/artifacts`` does.

The job store and artifacts directory are the API's and workers' own (``LUGPI_REDIS_URL``,
``LUGPI_ARTIFACTS_DIR``). Records and published models stay.
"""

from __future__ import annotations

from typing import Annotated

import typer

from contracts.errors import LugpiError

jobs_app = typer.Typer(help="Training jobs' artifacts (LUGPI_ARTIFACTS_DIR, LUGPI_REDIS_URL).")


def _fail(e: LugpiError) -> typer.Exit:
    typer.echo(f"error: {e}", err=True)
    return typer.Exit(2)


@jobs_app.command("delete-artifacts")
def delete_artifacts(
    job_id: Annotated[str, typer.Argument(help="The job's id (32 hex digits).")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a finished job's run directory (stage outputs, images, log, results)."""
    from contracts.settings import SharedSettings
    from jobs.artifacts import delete_job_artifacts
    from jobs.store import check_job_id, open_jobstore

    settings = SharedSettings()
    try:
        job_id = check_job_id(job_id)
        store = open_jobstore(settings.redis_url, settings.artifacts_dir)
        try:
            store.get(job_id)
            if not yes:
                typer.confirm(f"Delete the artifacts of job {job_id}?", abort=True)
            freed = delete_job_artifacts(store, settings.artifacts_dir, job_id)
        finally:
            store.close()
    except LugpiError as e:
        raise _fail(e) from e
    typer.echo(f"job {job_id}: {freed / 1e6:.1f} MB freed")


@jobs_app.command("prune-artifacts")
def prune_artifacts(
    keep_days: Annotated[
        float, typer.Option(min=0.0, help="Keep the artifacts of jobs finished since then.")
    ],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete the run directories of every job that finished more than KEEP_DAYS ago (what
    LUGPI_JOB_ARTIFACTS_KEEP_DAYS makes the API do hourly)."""
    from contracts.settings import SharedSettings
    from jobs.artifacts import prune_job_artifacts
    from jobs.store import open_jobstore

    settings = SharedSettings()
    if not yes:
        typer.confirm(
            f"Delete the artifacts of jobs finished over {keep_days:g} days ago in "
            f"{settings.artifacts_dir}?",
            abort=True,
        )
    try:
        store = open_jobstore(settings.redis_url, settings.artifacts_dir)
        try:
            pruned = prune_job_artifacts(store, settings.artifacts_dir, keep_days)
        finally:
            store.close()
    except LugpiError as e:
        raise _fail(e) from e
    for job_id in pruned:
        typer.echo(f"deleted the artifacts of job {job_id}")
    typer.echo(f"{len(pruned)} job(s) pruned")
