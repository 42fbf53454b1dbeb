"""Image generation spread over Celery workers: 1 worker process vs 2.

    .venv/bin/python benchmarks/bench_generate_workers.py [--prompts 192] [--steps 20]

For each worker count, starts that many real workers (``python -m worker``, solo pool,
one torch thread each), submits one job whose generation is split into shards, and
measures the generate stage: from the job's first generate report to the first report of
the next stage, as the job record's ``stage_seconds["generate"]`` has it. The job is then
cancelled (training is not what is measured). The generator is the tiny RANDOM-weight
Stable-Diffusion-shaped pipeline on CPU, built beforehand so no run pays for that;
each run has its own empty image cache (same data, same prompts).

Needs Redis (``--redis-url``, default DB 14, flushed: give a DB nothing else uses).
On a shared machine the ratio is bounded by the free cores: read ``load_before``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from contracts.layout import RunLayout  # noqa: E402
from jobs.lifecycle import QUEUE_JOBS, TASK_RUN_JOB, request_cancel  # noqa: E402
from jobs.store import RedisJobStore  # noqa: E402
from training.generation.generate_images import INDEX_FILE  # noqa: E402

CWI = Path(os.environ.get("LUGPI_SHARED_DATASETS", REPO.parent / "shared" / "datasets")) / "cwi2018"


def job_config(root: Path, cache: Path, prompts: int, steps: int, shards: int) -> dict[str, Any]:
    tiny = {"text_model": str(root / "tiny-text"), "image_model": str(root / "tiny-image")}
    return {
        "name": "bench-generate",
        "device": "cpu",
        "data": {
            "train": str(CWI / "News_Train.tsv"),
            "dev": str(CWI / "News_Dev.tsv"),
            "format": "cwi2018",
            "prompt_style": "cwi",
            # CWI prompts are target phrases: some repeat, so ask for a few more rows.
            "max_train_samples": int(prompts * 1.3),
            "max_eval_samples": 2,
        },
        "generator": {
            "model": "tiny-random",
            "steps": steps,
            "guidance_scale": 1.0,
            "image_size": 64,
            "batch_size": 2,
            "num_shards": shards,
            "cache_dir": str(cache),
        },
        "teachers": [{"name": "tiny", **tiny, "hidden_size": 16, "fusion_heads": 2}],
        "student": {"text_model": tiny["text_model"], "max_length": 32},
        "baseline": False,
    }


def start_workers(n: int, root: Path, redis_url: str, tag: str) -> list[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUGPI_")}
    env.update(
        LUGPI_REDIS_URL=redis_url,
        LUGPI_ARTIFACTS_DIR=str(root / "artifacts"),
        LUGPI_MODEL_REPOSITORY=str(root / "repo"),
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONPATH=str(REPO),
    )
    procs = []
    for i in range(n):
        log = (root / f"{tag}-worker{i}.log").open("wb")
        cmd = [sys.executable, "-m", "worker", f"--hostname=bench{n}-{i}@%h"]
        procs.append(subprocess.Popen(cmd, env=env, cwd=REPO, stdout=log, stderr=log))
    for i in range(n):  # warm: started, and torch & co imported (worker/app.py preload)
        path = root / f"{tag}-worker{i}.log"
        while b"preloaded the training libraries" not in path.read_bytes():
            time.sleep(0.2)
    return procs


def measure(n_workers: int, args: argparse.Namespace, root: Path, cache: Path) -> dict[str, Any]:
    from celery import Celery

    store = RedisJobStore(args.redis_url)
    celery = Celery("bench", broker=args.redis_url, set_as_current=False)
    procs = start_workers(n_workers, root, args.redis_url, tag=cache.name)
    try:
        load = os.getloadavg()[0]
        cfg = job_config(root, cache, args.prompts, args.steps, args.shards)
        job = store.create(cfg).job_id
        celery.send_task(TASK_RUN_JOB, args=[job], queue=QUEUE_JOBS)
        while True:
            rec = store.get(job)
            if rec.state.terminal:
                raise RuntimeError(f"job ended before generation finished: {rec.error}")
            if "generate" in rec.stage_seconds:
                break
            time.sleep(0.2)
        request_cancel(store, job)
        while not store.get(job).state.terminal:
            time.sleep(0.2)
        index = RunLayout.for_job(root / "artifacts", job).images / INDEX_FILE
        summary = json.loads(index.read_text())["summary"]
        seconds = rec.stage_seconds["generate"]
        return {
            "workers": n_workers,
            "images": summary["images"],
            "generate_s": round(seconds, 2),
            "images_per_s": round(summary["images"] / seconds, 3),
            "load_1min_at_start": round(load, 2),
            "final_state": store.get(job).state.value,
        }
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
        store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--prompts", type=int, default=192, help="about this many images")
    parser.add_argument("--steps", type=int, default=20, help="denoising steps per image")
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2, help="1 round = one run of each")
    parser.add_argument("--work-dir", help="keep runs and worker logs here (default: a temp dir)")
    args = parser.parse_args()

    import redis

    redis.Redis.from_url(args.redis_url).flushdb()
    with tempfile.TemporaryDirectory(prefix="bench-gen-") as tmp:
        root = Path(args.work_dir or tmp)
        from models.tiny import make_tiny_image_model, make_tiny_text_model
        from training.generation.images import tiny_random_dir

        make_tiny_text_model(root / "tiny-text")
        make_tiny_image_model(root / "tiny-image")
        # 1, 2, 2, 1, ...: alternating, so that a change of the machine's load over time
        # does not favour one side.
        order = [n for i in range(args.rounds) for n in ((1, 2) if i % 2 == 0 else (2, 1))]
        load_before = os.getloadavg()
        results = []
        for run, n in enumerate(order):  # an empty image cache per run, generator prebuilt
            cache = root / "artifacts" / f"image-cache-{run}"
            tiny_random_dir(cache)
            results.append(measure(n, args, root, cache))
    rate = {
        n: statistics.median(r["images_per_s"] for r in results if r["workers"] == n)
        for n in (1, 2)
    }
    report = {
        "machine": {
            "usable_cores": len(os.sched_getaffinity(0)),
            "load_before": load_before,
            "load_after": os.getloadavg(),
        },
        "setup": {"generator": "tiny-random (RANDOM weights), 64 px", **vars(args)},
        "runs": results,
        "median_images_per_s": rate,
        "speedup_2_vs_1": round(rate[2] / rate[1], 2),
        # Each round's two runs were back to back, under about the same outside load.
        "speedup_per_round": [
            round(two["images_per_s"] / one["images_per_s"], 2)
            for pair in zip(results[::2], results[1::2], strict=True)
            for one, two in [sorted(pair, key=lambda r: r["workers"])]
        ],
    }
    print(json.dumps(report, indent=2))
    for r in results:
        print(
            f"{r['workers']} worker(s): {r['images']} images in {r['generate_s']} s "
            f"= {r['images_per_s']} images/s"
        )
    print(
        f"speed-up with 2 workers: {report['speedup_2_vs_1']}x (median rates), "
        f"per round: {report['speedup_per_round']}"
    )
    redis.Redis.from_url(args.redis_url).flushdb()
    return 0


if __name__ == "__main__":
    sys.exit(main())
