"""What a job runs: the pipeline, with image generation spread over the workers.

Imported only inside a job process (it pulls torch in through training/): the job
runner imports it lazily so that the runner itself stays light.
"""

from __future__ import annotations

from contracts.artifacts import is_complete
from contracts.config import PipelineConfig
from training.data import prepare_data
from training.pipeline import PipelineResult, run_pipeline
from worker.job_context import FanOut, JobReporter
from worker.settings import WorkerSettings
from worker.shards import DATA_DIR, IMAGES_DIR, generate_with_workers


def execute_pipeline(
    cfg: PipelineConfig,
    job_id: str,
    settings: WorkerSettings,
    reporter: JobReporter,
    fan_out: FanOut | None,
    *,
    worker: str,
) -> PipelineResult:
    """Run (or resume) the whole pipeline of ``job_id`` in ``<artifacts>/runs/<job_id>``.

    With ``fan_out`` and ``generator.num_shards > 1``, data is prepared here, the shards
    go to every worker (worker/shards.py), and the pipeline then finds the images cached.
    """
    run_dir = settings.run_dir(job_id)
    ctx = reporter.context()
    if (
        fan_out is not None
        and cfg.generator.num_shards > 1
        and not is_complete(run_dir / IMAGES_DIR)
    ):
        if not is_complete(run_dir / DATA_DIR):
            prepare_data(cfg, run_dir / DATA_DIR, ctx)
        generate_with_workers(
            cfg,
            run_dir,
            ctx,
            store=reporter.store,
            job_id=job_id,
            settings=settings,
            worker=worker,
            fan_out=fan_out,
        )
    repository = settings.model_repository if cfg.export.publish else None
    return run_pipeline(
        cfg,
        run_dir,
        ctx,
        repository=repository,
        job_id=job_id,
        keep_last=settings.keep_last_versions,
    )
