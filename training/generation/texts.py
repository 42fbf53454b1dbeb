"""Generated texts as a cached, sharded, resumable work list, like the images.

A work list is a list of ``TextRequest``s (source text, seed, steering). Each generated
text lives in a content-addressed cache, ``<cache>/<key[:2]>/<key>.json``, with key =
sha256 of (generator identity, revision, kind, source, prefix, protected words, seed,
every sampling setting), written atomically; so a crashed or repeated run redoes only
the texts it lacks, and runs that share the cache share their texts.

The list splits into ``text_generator.num_shards`` contiguous ranges with the same
planner as the images (``training.sharding``); independent processes each run
``run_text_shard(..., shard=i)`` and the stage then finds every text cached; within one
run the shards are ``ShardedWork`` that the pipeline's shard strategy runs (in turn here;
claimed under locks by a worker's job).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from contracts.artifacts import write_text_atomic
from contracts.config import BUILTIN_TEXT_GENERATORS, PipelineConfig, TextGeneratorConfig
from contracts.errors import ArtifactError
from contracts.jobs import Stage
from models.text_generator import TextGenerator, TextRequest
from training.devices import resolve_device
from training.generation.tiny_text_generator import builtin_generator_dir, builtin_version
from training.sharding import InProcess, Shard, ShardedWork, ShardStrategy, plan_shards
from training.tracking.progress import RunContext


@dataclass(frozen=True)
class TextJob:
    request: TextRequest
    key: str


@dataclass
class TextGenerationPlan:
    jobs: list[TextJob]
    shards: list[Shard]
    cache_dir: Path

    def path(self, job: TextJob) -> Path:
        return self.cache_dir / job.key[:2] / f"{job.key}.json"


def draw_seed(run_seed: int, source: str, draw: int) -> int:
    """Seed of the ``draw``-th text generated from ``source``: stable across processes."""
    digest = hashlib.sha256(f"{run_seed}\0{draw}\0{source}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**62 - 1)


def generator_identity(cfg: TextGeneratorConfig) -> str:
    """What names the generator in the cache key: a local directory by its absolute path,
    a built-in by its name and version."""
    if cfg.model in BUILTIN_TEXT_GENERATORS:
        return builtin_version(cfg.model)
    path = Path(cfg.model).expanduser()
    return str(path.resolve()) if path.exists() else cfg.model


def text_cache_key(g: TextGeneratorConfig, request: TextRequest) -> str:
    sampling = g.model_dump(exclude={"model", "batch_size", "num_shards", "cache_dir"})
    parts = [
        generator_identity(g),
        sampling,
        request.source,
        request.prefix,
        sorted(request.protect),
        request.seed,
    ]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def resolve_text_cache(cfg: PipelineConfig, run_dir: Path) -> Path:
    from contracts.layout import RunLayout

    return RunLayout(run_dir).text_cache(cfg.text_generator.cache_dir)


def plan_texts(
    cfg: PipelineConfig, requests: Sequence[TextRequest], cache_dir: Path
) -> TextGenerationPlan:
    """Distinct requests (first occurrence order) split into the configured shards. Equal
    requests (a training text that appears twice) become one job, so a caller that needs a
    text per request reads them with ``texts_for``, never by position in ``jobs``."""
    jobs: list[TextJob] = []
    seen: set[str] = set()
    for r in requests:
        key = text_cache_key(cfg.text_generator, r)
        if key not in seen:
            seen.add(key)
            jobs.append(TextJob(r, key))
    return TextGenerationPlan(
        jobs, plan_shards(len(jobs), cfg.text_generator.num_shards), cache_dir
    )


class LazyTextGenerator:
    """Loads (or, for a built-in, trains) the generator on first use only."""

    def __init__(self, cfg: PipelineConfig, cache_dir: Path) -> None:
        self.cfg, self.cache_dir = cfg, cache_dir
        self._gen: TextGenerator | None = None

    def get(self) -> TextGenerator:
        if self._gen is None:
            device = resolve_device(self.cfg.device)
            self._gen = TextGenerator(
                self.cfg.text_generator, self.cache_dir, device, builtin=builtin_generator_dir
            )
        return self._gen


def _save(path: Path, job: TextJob, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"text": text, "source": job.request.source, "seed": job.request.seed}
    write_text_atomic(path, json.dumps(body, ensure_ascii=False))


def run_text_shard(
    cfg: PipelineConfig,
    plan: TextGenerationPlan,
    shard: int,
    ctx: RunContext,
    generator: LazyTextGenerator | None = None,
    stage: Stage = Stage.TGT,
) -> int:
    """Generate the missing texts of one shard; return how many were generated. ``stage``:
    the job stage it is reported as (TGT's texts, or StrataNet's)."""
    if not 0 <= shard < len(plan.shards):
        raise ArtifactError(
            f"shard {shard} out of range: text_generator.num_shards is {len(plan.shards)}"
        )
    s = plan.shards[shard]
    todo = [j for j in plan.jobs[s.start : s.stop] if not plan.path(j).is_file()]
    total, done = s.stop - s.start, s.stop - s.start - len(todo)
    ctx.step(stage, done, total, f"texts, shard {shard}: {done} cached")
    generator = generator or LazyTextGenerator(cfg, plan.cache_dir)
    bs = cfg.text_generator.batch_size
    for i in range(0, len(todo), bs):
        batch = todo[i : i + bs]
        texts = generator.get().generate([j.request for j in batch])
        for job, text in zip(batch, texts, strict=True):
            _save(plan.path(job), job, text)
        done += len(batch)
        ctx.step(stage, done, total, f"texts, shard {shard}")
    return len(todo)


def text_work(
    cfg: PipelineConfig,
    plan: TextGenerationPlan,
    generator: LazyTextGenerator,
    stage: Stage = Stage.TGT,
) -> ShardedWork:
    """The plan as work for a ``ShardStrategy``: a text is done when it is cached."""

    def done_in(shard: Shard) -> int:
        return sum(plan.path(j).is_file() for j in plan.jobs[shard.start : shard.stop])

    def run(shard: Shard, ctx: RunContext) -> None:
        run_text_shard(cfg, plan, shard.index, ctx, generator, stage)

    return ShardedWork(stage, "texts", plan.shards, done_in, run)


def generate_texts(
    cfg: PipelineConfig,
    plan: TextGenerationPlan,
    ctx: RunContext,
    strategy: ShardStrategy | None = None,
    stage: Stage = Stage.TGT,
) -> tuple[list[str], int]:
    """Every shard, run by ``strategy`` (default: here, in turn; cached texts cost nothing);
    the texts in plan order and how many were newly generated."""
    generator = LazyTextGenerator(cfg, plan.cache_dir)
    before = sum(plan.path(j).is_file() for j in plan.jobs)
    (strategy or InProcess()).run(text_work(cfg, plan, generator, stage), ctx)
    return [read_text(plan, j) for j in plan.jobs], len(plan.jobs) - before


def texts_for(
    cfg: PipelineConfig, plan: TextGenerationPlan, requests: Sequence[TextRequest]
) -> list[str]:
    """One generated text per request, in request order (equal requests share a text)."""
    by_key = {job.key: job for job in plan.jobs}
    return [read_text(plan, by_key[text_cache_key(cfg.text_generator, r)]) for r in requests]


def generate_for(
    cfg: PipelineConfig,
    requests: Sequence[TextRequest],
    cache_dir: Path,
    ctx: RunContext,
    strategy: ShardStrategy | None = None,
    stage: Stage = Stage.TGT,
) -> tuple[list[str], int]:
    """Plan, generate what is missing, and return one text per request (in request order)
    and how many were newly generated."""
    plan = plan_texts(cfg, requests, cache_dir)
    _, made = generate_texts(cfg, plan, ctx, strategy, stage)
    return texts_for(cfg, plan, requests), made


def read_text(plan: TextGenerationPlan, job: TextJob) -> str:
    try:
        return str(json.loads(plan.path(job).read_text(encoding="utf-8"))["text"])
    except (OSError, json.JSONDecodeError, KeyError) as e:
        raise ArtifactError(f"{plan.path(job)}: unreadable generated text ({e})") from e
