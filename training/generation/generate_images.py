"""The generate stage: one generated image per example, cached, resumable, sharded.

Work is one image per sample, as the paper draws them (train, dev, test, and unlabelled
when distill.use_unlabelled), each seeded by the run seed, its split, its position and
its prompt: two samples with the same prompt get different pictures, and no train image
is ever a test image. With ``generator.share_identical_prompts`` samples with the same
prompt share the image of the first one instead (cheaper where prompts repeat); the
stage record then says how many samples share an image, across train and test too.
A rerun draws the same pictures. How an image is drawn and cached (the key, the CPU
generators, the atomic PNG) is ``training/generation/images.py``, shared with the teacher service.
Size, steps and guidance default per known generator (contracts/config.py:
stable-diffusion-2 at 768 px, sd-turbo in one unguided step).

The work list splits into ``generator.num_shards`` contiguous ranges; independent
processes (Celery workers) each run ``generate_images(..., shard=i)`` and a final
``generate_images(...)`` (shard None) finds everything cached and writes ``images.json``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from contracts.artifacts import (
    ImageIndex,
    atomic_dir,
    is_complete,
    write_json_atomic,
    write_stage_record,
)
from contracts.config import PipelineConfig
from contracts.errors import ArtifactError
from contracts.jobs import Stage
from contracts.layout import RunLayout
from training.data.prepare import PreparedData
from training.generation.images import (
    ImageJob,
    LazyPipeline,
    cached_images,
    image_job,
    image_path,
    sample_seed,
)
from training.sharding import (
    InProcess,
    Shard,
    ShardedWork,
    ShardKind,
    ShardStrategy,
    plan_shards,
)
from training.tracking.progress import RunContext

INDEX_FILE = "images.json"
SPLIT_ORDER = ("train", "dev", "test", "unlabelled")


@dataclass
class GenerationPlan:
    jobs: list[ImageJob]  # one per sample, or per distinct prompt when shared
    shards: list[Shard]
    cache_dir: Path
    example_jobs: dict[str, list[int]]  # split -> index into jobs, per example

    def path(self, job: ImageJob) -> Path:
        return image_path(self.cache_dir, job)

    def cached(self, shard: Shard) -> int:
        return sum(self.path(j).is_file() for j in self.jobs[shard.start : shard.stop])

    def work(
        self,
        cfg: PipelineConfig,
        pipe: LazyPipeline,
        stage: Stage = Stage.GENERATE,
        kind: ShardKind = "images",
    ) -> ShardedWork:
        """This plan for a ``ShardStrategy``: a shard is done when its images are cached."""

        def run(shard: Shard, ctx: RunContext) -> None:
            run_shard(cfg, self, shard.index, ctx, pipe)

        return ShardedWork(stage, kind, self.shards, self.cached, run)

    def sharing(self) -> dict[str, int]:
        """How many samples share their image with another sample; and how many test
        samples have an image that a training sample has too."""
        uses: dict[int, int] = {}
        for ids in self.example_jobs.values():
            for j in ids:
                uses[j] = uses.get(j, 0) + 1
        train = set(self.example_jobs.get("train", []))
        return {
            "samples_sharing_an_image": sum(n for n in uses.values() if n > 1),
            "test_samples_with_a_train_image": sum(
                j in train for j in self.example_jobs.get("test", [])
            ),
        }


def resolve_cache_dir(cfg: PipelineConfig, out_dir: Path) -> Path:
    """``generator.cache_dir`` (share it across runs), else the run's ``image-cache/``
    (``out_dir`` is the run's ``images/``)."""
    return RunLayout(out_dir.parent).image_cache(cfg.generator.cache_dir)


def plan_generation(cfg: PipelineConfig, data: PreparedData, cache_dir: Path) -> GenerationPlan:
    """The deterministic work list: every process that plans the same config agrees."""
    jobs: list[ImageJob] = []
    by_prompt: dict[str, int] = {}
    example_jobs: dict[str, list[int]] = {}
    # Unlabelled texts need images only when the teachers label them for the student.
    splits = [s for s in SPLIT_ORDER if s in data.splits]
    if not cfg.distill.use_unlabelled:
        splits = [s for s in splits if s != "unlabelled"]
    share = cfg.generator.share_identical_prompts
    for split in splits:
        ids = []
        for i, ex in enumerate(data.splits[split]):
            if not share or ex.prompt not in by_prompt:
                seed = sample_seed(cfg.seed, split, i, ex.prompt)
                by_prompt[ex.prompt] = len(jobs)
                jobs.append(image_job(cfg, ex.prompt, seed))
            ids.append(by_prompt[ex.prompt])
        example_jobs[split] = ids
    shards = plan_shards(len(jobs), cfg.generator.num_shards)
    return GenerationPlan(jobs, shards, cache_dir, example_jobs)


def run_shard(
    cfg: PipelineConfig,
    plan: GenerationPlan,
    shard: int,
    ctx: RunContext,
    pipe: LazyPipeline | None = None,
) -> int:
    """Draw the missing images of one shard; return how many were drawn."""
    if not 0 <= shard < len(plan.shards):
        raise ArtifactError(
            f"shard {shard} out of range: generator.num_shards is {len(plan.shards)}"
        )
    s = plan.shards[shard]
    jobs = plan.jobs[s.start : s.stop]
    todo = sum(not plan.path(job).is_file() for job in jobs)
    total, done = len(jobs), len(jobs) - todo
    ctx.step(Stage.GENERATE, done, total, f"shard {shard}: {done} cached")

    def drew(n: int) -> None:
        nonlocal done
        done += n
        ctx.step(Stage.GENERATE, done, total, f"shard {shard}")

    cached_images(cfg, plan.cache_dir, jobs, pipe or LazyPipeline(cfg, plan.cache_dir), drew)
    return todo


def generate_images(
    cfg: PipelineConfig,
    data: PreparedData,
    out_dir: Path,
    ctx: RunContext,
    shard: int | None = None,
    strategy: ShardStrategy | None = None,
) -> Path:
    """Draw the images; ``shard=None`` draws all (its shards run by ``strategy``, by
    default here in turn) and writes the stage dir with ``images.json``.

    With ``shard=i`` only shard i is drawn into the cache and nothing else is written.
    """
    cache_dir = resolve_cache_dir(cfg, out_dir)
    plan = plan_generation(cfg, data, cache_dir)
    if shard is not None:
        run_shard(cfg, plan, shard, ctx)
        return out_dir
    started = time.perf_counter()
    drawn = len(plan.jobs) - sum(plan.cached(s) for s in plan.shards)
    (strategy or InProcess()).run(plan.work(cfg, LazyPipeline(cfg, cache_dir)), ctx)
    seconds = time.perf_counter() - started
    with atomic_dir(out_dir, Stage.GENERATE.value) as tmp:
        # Relative paths keep a run dir movable when the cache lives inside it.
        inside = cache_dir.resolve().is_relative_to(out_dir.parent.resolve())

        def name(p: Path) -> str:
            return os.path.relpath(p.resolve(), out_dir.resolve()) if inside else str(p.resolve())

        splits = {
            split: [name(plan.path(plan.jobs[j])) for j in ids]
            for split, ids in plan.example_jobs.items()
        }
        summary: dict[str, object] = {
            "generator": cfg.generator.model,
            "image_size": cfg.generator.image_size or "native",
            "steps": cfg.generator.steps,
            "guidance_scale": cfg.generator.guidance_scale,
            "share_identical_prompts": cfg.generator.share_identical_prompts,
            "images": len(plan.jobs),
            "drawn": drawn,
            "cached": len(plan.jobs) - drawn,
            "images_per_s": round(drawn / seconds, 3) if drawn else None,
        }
        if cfg.generator.share_identical_prompts:
            summary |= plan.sharing()
        write_json_atomic(tmp / INDEX_FILE, {"summary": summary, "splits": splits})
        write_stage_record(tmp, Stage.GENERATE, seconds, summary)
    return out_dir


def load_image_index(stage_dir: Path) -> ImageIndex:
    """Read ``images.json``; ``ArtifactError`` if the stage or any image is missing."""
    if not is_complete(stage_dir):
        raise ArtifactError(f"{stage_dir}: no finished generate stage; run `lugpi generate`")
    try:
        raw = json.loads((stage_dir / INDEX_FILE).read_text())
        index = {
            split: [(stage_dir / p).resolve() for p in paths]
            for split, paths in raw["splits"].items()
        }
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ArtifactError(f"{stage_dir / INDEX_FILE}: unreadable ({e}); rerun generate") from e
    for path in {p for paths in index.values() for p in paths}:
        if not path.is_file():
            raise ArtifactError(f"{stage_dir}: image {path} is missing; delete the dir, rerun")
    return index
