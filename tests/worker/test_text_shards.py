"""TGT's generated texts, and then their images, spread over workers like the images.

A second worker's ``generate_shard`` task (called here as Celery calls it, with a real
Redis or SQLite job store) generates one text shard; the job's own task (``WorkerShards``,
as a worker runs the pipeline with fan-out) sends a task for every shard still missing,
naming its kind, and does the rest. Models: the shared tiny text generator TRAINED HERE
(conftest), the smoke preset's tiny-random image generator (RANDOM weights: noise).
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import pytest

from contracts.config import PipelineConfig, load_config
from jobs.lifecycle import start_attempt
from jobs.store import JobStore
from training.generation.texts import plan_texts, resolve_text_cache
from training.pipeline import Run, resolve_paths
from training.tgt.texts import neighbour_requests
from training.tracking.progress import RunContext
from worker.settings import WorkerSettings
from worker.shards import WorkerShards, run_shard_for_job, shard_lock, shard_work

pytestmark = pytest.mark.slow


def _cfg(shared: Path, tmp: Path, generator: Path) -> PipelineConfig:
    sets: dict[str, object] = {}
    for split, n in (("train", 60), ("dev", 30), ("test", 30)):
        src = shared / "cwi2018" / f"News_{split.capitalize()}.tsv"
        with src.open(encoding="utf-8") as f:
            (tmp / f"{split}.tsv").write_text("".join(islice(f, n)), encoding="utf-8")
        sets[f"data.{split}"] = str(tmp / f"{split}.tsv")
    sets |= {
        "data.max_train_samples": 9,
        "data.max_eval_samples": 8,
        "generator.num_shards": 2,
        "text_generator.model": str(generator),
        "text_generator.num_shards": 3,
        "text_generator.batch_size": 8,
        "tgt.enabled": True,
        "tgt.k": 2,
        "tgt.modes": ["augment"],
    }
    return resolve_paths(load_config("smoke", sets), tmp)


def test_text_and_tgt_image_shards_go_to_other_workers_by_kind_trained_generator(
    store: JobStore, shared_datasets: Path, tmp_path: Path, tiny_text_generator: Path
) -> None:
    cfg = _cfg(shared_datasets, tmp_path, tiny_text_generator)
    settings = WorkerSettings(artifacts_dir=tmp_path / "artifacts")
    job_id = store.create(cfg.model_dump(mode="json")).job_id
    assert start_attempt(store, job_id, "w1") is not None
    run_dir = settings.run_dir(job_id)
    run = Run(cfg, run_dir, RunContext())
    run.make("prepare")
    plan = plan_texts(cfg, neighbour_requests(cfg, run.data), resolve_text_cache(cfg, run_dir))
    assert [s.size for s in plan.shards] == [6, 6, 6]  # 9 texts x k=2, in 3 shards

    def cached(i: int) -> int:
        s = plan.shards[i]
        return sum(plan.path(j).is_file() for j in plan.jobs[s.start : s.stop])

    # Worker w2 takes the message for text shard 1: it rebuilds the same plan from the
    # job's config and run dir and fills exactly that shard of the cache.
    assert run_shard_for_job(store, job_id, 1, settings, worker="w2", kind="texts")
    assert [cached(i) for i in range(3)] == [0, 6, 0]
    assert store.lock_holder(shard_lock(job_id, 1, "texts")) is None  # released
    assert not run_shard_for_job(store, job_id, 1, settings, worker="w2", kind="texts")  # done

    # The job's own task: one message per missing shard, with its kind; it does the rest.
    sent: list[tuple[str, int, str]] = []
    fan_out = WorkerShards(store, job_id, settings, "w1", lambda *m: sent.append(m))
    Run(cfg, run_dir, RunContext(), fan_out).make("tgt")
    texts_sent = [(job_id, 0, "texts"), (job_id, 2, "texts")]
    assert sent[:2] == texts_sent
    images_sent = sent[2:]
    assert images_sent and {k for _, _, k in images_sent} == {"tgt-images"}
    assert [cached(i) for i in range(3)] == [6, 6, 6]
    # The image shards a worker would rebuild are the stage's: all drawn now, so a late
    # message for one of them does nothing.
    images = shard_work("tgt-images", cfg, run_dir)
    assert images.done() == images.total > 0
    assert not run_shard_for_job(store, job_id, 0, settings, worker="w2", kind="tgt-images")
    # Image shard locks do not collide with text shard locks of the same index.
    assert shard_lock(job_id, 0, "texts") != shard_lock(job_id, 0, "tgt-images")
    assert shard_lock(job_id, 0) == f"{job_id}:shard:0"  # images: the name it always had
