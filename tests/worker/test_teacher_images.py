"""The teacher service draws a text's image the way training draws it, and keeps it.

Tiny Stable-Diffusion-shaped pipeline with RANDOM weights (its images are noise): what is
tested is that both sides go through one drawing path (prompt cut, CPU generators, cache
key), so the pictures are the same, and that the service caches what it draws.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from contracts.config import PipelineConfig, parse_config
from models.tiny_diffusion import build_tiny_pipeline
from training.generation.generate_images import (
    GenerationPlan,
    plan_shards,
    resolve_cache_dir,
    run_shard,
)
from training.generation.images import image_job, image_path, prompt_seed
from training.tracking.progress import RunContext
from worker import teacher_service

PROMPT = "a lighthouse on barren islands"


@pytest.fixture(scope="module")
def tiny_random_sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny-sd-random"))


def _cfg(model: Path) -> PipelineConfig:
    g = {"model": str(model), "steps": 2, "guidance_scale": 1.0, "image_size": 32}
    return parse_config({"data": {"train": "unused.jsonl"}, "device": "cpu", "generator": g})


def test_random_service_image_of_an_uncached_prompt_is_trainings_and_is_cached(
    tiny_random_sd: Path, tmp_path: Path
) -> None:
    cfg = _cfg(tiny_random_sd)
    run_dir = tmp_path / "runs" / "job"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    job = image_job(cfg, PROMPT, prompt_seed(cfg.seed, PROMPT))
    service_cache = resolve_cache_dir(cfg, run_dir / "images")
    assert not image_path(service_cache, job).exists()

    served, drawn = teacher_service._images(cfg, run_dir, [PROMPT, PROMPT])
    assert drawn == 1  # asked twice, drawn once
    assert image_path(service_cache, job).is_file()  # the service caches what it draws

    # Training's generate stage, drawing the same (prompt, seed) into a cache of its own.
    training_cache = tmp_path / "training-cache"
    plan = GenerationPlan([job], plan_shards(1, 1), training_cache, {"train": [0]})
    assert run_shard(cfg, plan, 0, RunContext()) == 1
    with Image.open(plan.path(job)) as im:
        trained = np.asarray(im.convert("RGB"), dtype=np.int16)
    for image in served:
        assert np.array_equal(np.asarray(image, dtype=np.int16), trained)

    again, drawn = teacher_service._images(cfg, run_dir, [PROMPT])
    assert drawn == 0
    assert np.array_equal(np.asarray(again[0], dtype=np.int16), trained)
