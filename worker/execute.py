"""What a job runs: the pipeline, its image shards spread over the workers.

Imported only inside a job process (it pulls torch in through training/): the job
runner imports it lazily so that the runner itself stays light.
"""

from __future__ import annotations

from contracts.config import PipelineConfig
from training.pipeline import PipelineResult, run_pipeline
from worker.job_context import FanOut, JobReporter
from worker.settings import WorkerSettings
from worker.shards import WorkerShards


def execute_pipeline(
    cfg: PipelineConfig,
    job_id: str,
    settings: WorkerSettings,
    reporter: JobReporter,
    fan_out: FanOut | None,
    *,
    worker: str,
) -> PipelineResult:
    """Run (or resume) the whole pipeline of ``job_id`` in its run directory.

    With ``fan_out`` and ``generator.num_shards > 1`` (or TGT with
    ``text_generator.num_shards > 1``) the generation shards go to every worker
    (worker/shards.py: ``WorkerShards``); otherwise they run here.
    """
    shards = None
    split = cfg.generator.num_shards > 1 or (cfg.tgt.enabled and cfg.text_generator.num_shards > 1)
    if fan_out is not None and split:
        shards = WorkerShards(reporter.store, job_id, settings, worker, fan_out)
    repository = settings.model_repository if cfg.export.publish else None
    return run_pipeline(
        cfg,
        settings.run_dir(job_id),
        reporter.context(),
        repository=repository,
        job_id=job_id,
        keep_last=settings.keep_last_versions,
        shards=shards,
    )
