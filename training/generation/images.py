"""Drawing images: the one way a prompt becomes a picture, for training and for serving.

Both the generate stage (training/generation/generate_images.py) and the worker's teacher
service draw through ``cached_images``: the same cache key, the same prompt cut to the
generator's own tokenizer, and one CPU ``torch.Generator`` per image, whose starting noise
is the same on every device, so a GPU worker draws the picture a CPU run drew for the same
prompt and seed. Images live in a content-addressed cache, ``<cache>/<key[:2]>/<key>.png`` with
key = sha256 of (generator, revision, prompt, seed, steps, size, guidance), each PNG
written atomically, so a crashed or repeated run redoes nothing it already has.

Any diffusers text-to-image pipeline works, by hub id or local directory, plus
``tiny-random``: a tiny Stable-Diffusion-shaped pipeline with RANDOM weights that draws
noise (models/tiny_diffusion.py), for tests and the offline preset.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from contracts.artifacts import atomic_file, build_dir_once
from contracts.config import PipelineConfig
from contracts.errors import ModelLoadError
from models.hub import looks_like_path
from models.tiny_diffusion import TINY_RANDOM_VERSION, build_tiny_pipeline
from training.data.prompts import fit_to_tokenizer
from training.devices import resolve_device

TINY_RANDOM = "tiny-random"


@dataclass(frozen=True)
class ImageJob:
    prompt: str  # as prepared; cut to the generator's tokenizer only when drawn
    seed: int
    key: str


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


def image_job(cfg: PipelineConfig, prompt: str, seed: int) -> ImageJob:
    return ImageJob(prompt, seed, cache_key(cfg, prompt, seed))


def image_path(cache_dir: Path, job: ImageJob) -> Path:
    return cache_dir / job.key[:2] / f"{job.key}.png"


def load_text2image(cfg: PipelineConfig, cache_dir: Path) -> Any:
    """Load the configured pipeline (fp16 on CUDA, fp32 on CPU) with its progress bar off."""
    import torch
    from diffusers import AutoPipelineForText2Image
    from diffusers.utils import logging as diffusers_logging

    model = cfg.generator.model
    if model == TINY_RANDOM:
        model = str(tiny_random_dir(cache_dir))
    elif looks_like_path(model) and not Path(model).expanduser().exists():
        raise ModelLoadError(f"generator.model: {model} does not exist (a local pipeline dir)")
    device = resolve_device(cfg.device)
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


def tiny_random_dir(cache_dir: Path) -> Path:
    """Build the tiny random pipeline once per cache, atomically (shards may race)."""
    final = cache_dir / "_generators" / TINY_RANDOM_VERSION
    return build_dir_once(final, build_tiny_pipeline, "model_index.json")


class LazyPipeline:
    """Loads the generator on first use, so a fully cached run never loads it."""

    def __init__(self, cfg: PipelineConfig, cache_dir: Path) -> None:
        self.cfg, self.cache_dir, self._pipe = cfg, cache_dir, None

    def get(self) -> Any:
        if self._pipe is None:
            self._pipe = load_text2image(self.cfg, self.cache_dir)
        return self._pipe


def draw(cfg: PipelineConfig, pipe: Any, jobs: Sequence[ImageJob]) -> list[Image.Image]:
    """One image per job, in one call of the pipeline."""
    import torch

    g = cfg.generator
    tokenizer = getattr(pipe, "tokenizer", None)
    prompts = [fit_to_tokenizer(j.prompt, tokenizer) if tokenizer else j.prompt for j in jobs]
    # One generator per image: an image depends on its own seed, not on its batch-mates.
    # CPU generators draw the same starting noise whatever device the pipeline runs on.
    generators = [torch.Generator("cpu").manual_seed(j.seed) for j in jobs]
    with torch.inference_mode():
        images: list[Image.Image] = pipe(
            prompt=prompts,
            num_inference_steps=g.steps,
            guidance_scale=g.guidance_scale,
            height=g.image_size,
            width=g.image_size,
            generator=generators,
            output_type="pil",
        ).images
    return images


def save_png(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        image.save(tmp, format="PNG")


def cached_images(
    cfg: PipelineConfig,
    cache_dir: Path,
    jobs: Sequence[ImageJob],
    pipe: LazyPipeline,
    on_batch: Callable[[int], None] | None = None,
) -> list[Path]:
    """Make sure every job's PNG is in the cache, drawing the missing ones
    ``generator.batch_size`` at a time; ``on_batch(n)`` after each batch drawn. Returns
    the jobs' paths, in order."""
    paths = [image_path(cache_dir, j) for j in jobs]
    missing = {j.key: (j, p) for j, p in zip(jobs, paths, strict=True) if not p.is_file()}
    todo = list(missing.values())  # a prompt asked for twice is drawn once
    size = cfg.generator.batch_size
    for i in range(0, len(todo), size):
        batch = todo[i : i + size]
        for (_, path), image in zip(
            batch, draw(cfg, pipe.get(), [j for j, _ in batch]), strict=True
        ):
            save_png(image, path)
        if on_batch is not None:
            on_batch(len(batch))
    return paths
