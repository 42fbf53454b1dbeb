"""The imagine stage: one generated image per example, cached, resumable, sharded.

Any diffusers text-to-image pipeline works, by hub id or local directory: the paper's
``stabilityai/stable-diffusion-2`` by default, or ``stabilityai/sd-turbo`` with
``steps: 1, guidance_scale: 0`` (one UNet pass instead of 50 guided ones), plus
``tiny-random``: a tiny Stable-Diffusion-shaped pipeline with RANDOM weights that draws
noise (training/tiny_diffusion.py), for tests and the offline preset.

Work is one image per sample, as the paper draws them (train, dev, test, and unlabelled
when distill.use_unlabelled), each seeded by the run seed, its split, its position and
its prompt: two samples with the same prompt get different pictures, and no train image
is ever a test image. With ``generator.share_identical_prompts`` samples with the same
prompt share the image of the first one instead (cheaper where prompts repeat); the
stage record then says how many samples share an image, across train and test too.
A rerun draws the same pictures. Images live in a content-addressed cache,
``<cache>/<key[:2]>/<key>.png`` with key = sha256 of (generator, revision, prompt, seed,
steps, size, guidance), each PNG written atomically, so a crashed or repeated run redoes
nothing it already has. The key uses the prepared prompt; the model gets it cut to its
own tokenizer's context. Size, steps and guidance default per known generator
(contracts/config.py: stable-diffusion-2 at 768 px, sd-turbo in one unguided step).

The work list splits into ``generator.num_shards`` contiguous ranges; independent
processes (Celery workers) each run ``generate_images(..., shard=i)`` and a final
``generate_images(...)`` (shard None) finds everything cached and writes ``images.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contracts.artifacts import STAGE_FILE, StageRecord, atomic_dir, is_complete, write_json_atomic
from contracts.config import PipelineConfig
from contracts.errors import ArtifactError, ModelLoadError
from contracts.jobs import Stage
from training.data import PreparedData
from training.progress import RunContext
from training.prompts import fit_to_tokenizer
from training.tiny_diffusion import TINY_RANDOM_VERSION, build_tiny_pipeline

ImageIndex = dict[str, list[Path]]  # split -> one PNG per example, aligned with data.splits
INDEX_FILE = "images.json"
TINY_RANDOM = "tiny-random"
SPLIT_ORDER = ("train", "dev", "test", "unlabelled")


@dataclass(frozen=True)
class ImageJob:
    prompt: str  # as prepared; cut to the generator's tokenizer only when drawn
    seed: int
    key: str


@dataclass(frozen=True)
class Shard:
    index: int
    start: int  # range [start, stop) of GenerationPlan.jobs
    stop: int


@dataclass
class GenerationPlan:
    jobs: list[ImageJob]  # one per sample, or per distinct prompt when shared
    shards: list[Shard]
    cache_dir: Path
    example_jobs: dict[str, list[int]]  # split -> index into jobs, per example

    def path(self, job: ImageJob) -> Path:
        return self.cache_dir / job.key[:2] / f"{job.key}.png"

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


def plan_shards(n_jobs: int, num_shards: int) -> list[Shard]:
    """``num_shards`` contiguous ranges covering ``range(n_jobs)`` once (some may be empty)."""
    size, extra = divmod(n_jobs, num_shards)
    shards, start = [], 0
    for i in range(num_shards):
        stop = start + size + (1 if i < extra else 0)
        shards.append(Shard(i, start, stop))
        start = stop
    return shards


def generator_id(model: str) -> str:
    """What names the generator in the cache key: a local dir by its absolute path."""
    if model == TINY_RANDOM:
        return TINY_RANDOM_VERSION
    return str(Path(model).resolve()) if Path(model).exists() else model


def prompt_seed(run_seed: int, prompt: str) -> int:
    """The seed of an image drawn for a prompt alone (a text classified at serving time)."""
    digest = hashlib.sha256(f"{run_seed}\0{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


def sample_seed(run_seed: int, split: str, index: int, prompt: str) -> int:
    """The seed of one sample's image: its own, so that equal prompts differ in picture."""
    digest = hashlib.sha256(f"{run_seed}\0{split}\0{index}\0{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


def cache_key(cfg: PipelineConfig, prompt: str, seed: int) -> str:
    g = cfg.generator
    parts = [
        generator_id(g.model),
        g.revision,
        prompt,
        seed,
        g.steps,
        g.image_size,
        g.guidance_scale,
    ]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def resolve_cache_dir(cfg: PipelineConfig, out_dir: Path) -> Path:
    """``generator.cache_dir`` (share it across runs), else ``image-cache`` beside ``out_dir``."""
    return (
        Path(cfg.generator.cache_dir) if cfg.generator.cache_dir else out_dir.parent / "image-cache"
    )


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
                jobs.append(ImageJob(ex.prompt, seed, cache_key(cfg, ex.prompt, seed)))
            ids.append(by_prompt[ex.prompt])
        example_jobs[split] = ids
    shards = plan_shards(len(jobs), cfg.generator.num_shards)
    return GenerationPlan(jobs, shards, cache_dir, example_jobs)


def _looks_like_path(model: str) -> bool:
    # Hub ids are "name" or "org/name"; anything else with a slash is meant as a path.
    return model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model


def _device(cfg: PipelineConfig) -> str:
    import torch

    if cfg.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return cfg.device


def load_text2image(cfg: PipelineConfig, cache_dir: Path) -> Any:
    """Load the configured pipeline (fp16 on CUDA, fp32 on CPU) with its progress bar off."""
    import torch
    from diffusers import AutoPipelineForText2Image
    from diffusers.utils import logging as diffusers_logging

    model = cfg.generator.model
    if model == TINY_RANDOM:
        model = str(_tiny_random_dir(cache_dir))
    elif _looks_like_path(model) and not Path(model).expanduser().exists():
        raise ModelLoadError(f"generator.model: {model} does not exist (a local pipeline dir)")
    device = _device(cfg)
    dtype = torch.float16 if device == "cuda" else torch.float32
    diffusers_logging.disable_progress_bar()
    try:
        pipe = AutoPipelineForText2Image.from_pretrained(
            str(Path(model).expanduser()) if Path(model).expanduser().exists() else model,
            revision=cfg.generator.revision,
            torch_dtype=dtype,
        )
    except (OSError, ValueError, KeyError) as e:
        raise ModelLoadError(
            f"generator.model {cfg.generator.model!r}: cannot load a diffusers text-to-image "
            f"pipeline ({type(e).__name__}: {str(e)[:300]}). Give a local directory with "
            "model_index.json, or a hub id on a machine with network access."
        ) from e
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def _tiny_random_dir(cache_dir: Path) -> Path:
    """Build the tiny random pipeline once per cache, atomically (shards may race)."""
    final = cache_dir / "_generators" / TINY_RANDOM_VERSION
    if (final / "model_index.json").is_file():
        return final
    tmp = final.with_name(f"{final.name}.tmp-{secrets.token_hex(4)}")
    build_tiny_pipeline(tmp)
    try:
        os.replace(tmp, final)
    except OSError:  # another process won the race; use theirs
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _save_png(image: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    try:
        image.save(tmp, format="PNG")
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ArtifactError(f"cannot write image {path}: {e.strerror or e}; disk full?") from e


class LazyPipeline:
    """Loads the generator on first use, so a fully cached run never loads it."""

    def __init__(self, cfg: PipelineConfig, cache_dir: Path) -> None:
        self.cfg, self.cache_dir, self._pipe = cfg, cache_dir, None

    def get(self) -> Any:
        if self._pipe is None:
            self._pipe = load_text2image(self.cfg, self.cache_dir)
        return self._pipe


def run_shard(
    cfg: PipelineConfig,
    plan: GenerationPlan,
    shard: int,
    ctx: RunContext,
    pipe: LazyPipeline | None = None,
) -> int:
    """Draw the missing images of one shard; return how many were drawn."""
    import torch

    if not 0 <= shard < len(plan.shards):
        raise ArtifactError(
            f"shard {shard} out of range: generator.num_shards is {len(plan.shards)}"
        )
    g = cfg.generator
    s = plan.shards[shard]
    todo = [job for job in plan.jobs[s.start : s.stop] if not plan.path(job).is_file()]
    total, done = s.stop - s.start, s.stop - s.start - len(todo)
    ctx.step(Stage.GENERATE, done, total, f"shard {shard}: {done} cached")
    pipe = pipe or LazyPipeline(cfg, plan.cache_dir)
    for i in range(0, len(todo), g.batch_size):
        batch = todo[i : i + g.batch_size]
        model = pipe.get()
        tokenizer = getattr(model, "tokenizer", None)
        prompts = [fit_to_tokenizer(j.prompt, tokenizer) if tokenizer else j.prompt for j in batch]
        # One generator per sample: an image depends on its own seed, not on the batch.
        # CPU generators draw the same starting noise whatever device the pipeline runs on.
        gens = [torch.Generator("cpu").manual_seed(j.seed) for j in batch]
        with torch.inference_mode():
            images = model(
                prompt=prompts,
                num_inference_steps=g.steps,
                guidance_scale=g.guidance_scale,
                height=g.image_size,
                width=g.image_size,
                generator=gens,
                output_type="pil",
            ).images
        for job, image in zip(batch, images, strict=True):
            _save_png(image, plan.path(job))
        done += len(batch)
        ctx.step(Stage.GENERATE, done, total, f"shard {shard}")
    return len(todo)


def generate_images(
    cfg: PipelineConfig,
    data: PreparedData,
    out_dir: Path,
    ctx: RunContext,
    shard: int | None = None,
) -> Path:
    """Draw the images; ``shard=None`` draws all and writes the stage dir with ``images.json``.

    With ``shard=i`` only shard i is drawn into the cache and nothing else is written.
    """
    cache_dir = resolve_cache_dir(cfg, out_dir)
    plan = plan_generation(cfg, data, cache_dir)
    if shard is not None:
        run_shard(cfg, plan, shard, ctx)
        return out_dir
    pipe, drawn, started = LazyPipeline(cfg, cache_dir), 0, time.perf_counter()
    for s in plan.shards:
        offset = s.start

        def report(stage: Stage, done: int, total: int, msg: str, offset: int = offset) -> None:
            ctx.report(stage, offset + done, len(plan.jobs), msg)

        drawn += run_shard(cfg, plan, s.index, RunContext(report, ctx.cancel_requested), pipe)
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
        record = StageRecord(
            stage=Stage.GENERATE.value,
            finished_at=datetime.now(UTC),
            seconds=round(seconds, 3),
            summary=summary,
        )
        write_json_atomic(tmp / STAGE_FILE, record.model_dump(mode="json"))
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
