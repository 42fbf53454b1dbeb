"""Image generation with a tiny Stable-Diffusion-shaped pipeline with RANDOM weights.

The images are noise; what is tested is the machinery: loading through diffusers'
from_pretrained, seeding, the content-addressed cache, resuming and sharding.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from contracts.config import PipelineConfig, parse_config
from contracts.errors import ModelLoadError
from contracts.jobs import Stage
from models.tiny_diffusion import build_tiny_pipeline
from training.data.prepare import Example, PreparedData
from training.generation import generate_images as gen
from training.generation import images as imaging
from training.tracking.progress import RunContext

PROMPTS = {
    "train": ["barren islands", "coral", "flashpoint", "coral", "oil and gas"],
    "dev": ["coral", "armed conflict"],
    "test": ["Asia"],
}


@pytest.fixture(scope="module")
def tiny_random_sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny-sd-random"))


def _data() -> PreparedData:
    splits = {
        split: [Example(f"text {p}", p, "complex", p) for p in prompts]
        for split, prompts in PROMPTS.items()
    }
    return PreparedData(labels=["complex", "simple"], text_pair=True, splits=splits)


def _cfg(model: Path | str, cache: Path, **generator: object) -> PipelineConfig:
    g = {"model": str(model), "steps": 1, "guidance_scale": 1.0, "image_size": 32}
    g |= {"batch_size": 3, "cache_dir": str(cache), **generator}
    return parse_config({"data": {"train": "unused.jsonl"}, "device": "cpu", "generator": g})


def _summary(stage_dir: Path) -> dict[str, object]:
    return json.loads((stage_dir / "images.json").read_text())["summary"]  # type: ignore[no-any-return]


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im, dtype=np.int16)


def test_random_pipeline_draws_one_image_per_sample(tiny_random_sd: Path, tmp_path: Path) -> None:
    reports: list[tuple[Stage, int, int]] = []
    ctx = RunContext(report=lambda s, d, t, m: reports.append((s, d, t)))
    cfg = _cfg(tiny_random_sd, tmp_path / "cache")
    out = gen.generate_images(cfg, _data(), tmp_path / "run" / "images", ctx)
    index = gen.load_image_index(out)
    assert {k: len(v) for k, v in index.items()} == {k: len(v) for k, v in PROMPTS.items()}
    # "coral" appears three times across splits: three samples, three seeds, three pictures.
    corals = [index["train"][1], index["train"][3], index["dev"][0]]
    assert len(set(corals)) == 3
    assert np.abs(_pixels(corals[0]) - _pixels(corals[1])).max() > 10
    assert len({p for paths in index.values() for p in paths}) == 8
    summary = _summary(out)
    assert summary["drawn"] == summary["images"] == 8
    assert summary["share_identical_prompts"] is False
    with Image.open(index["test"][0]) as im:
        assert im.size == (32, 32) and im.mode == "RGB"
    assert reports[-1] == (Stage.GENERATE, 8, 8)
    assert not list((tmp_path / "cache").rglob("*.tmp-*"))


def test_shared_prompts_option_draws_once_per_prompt_and_reports_it(
    tiny_random_sd: Path, tmp_path: Path
) -> None:
    data = _data()
    data.splits["test"].append(data.splits["train"][0])  # a test sample with a train prompt
    cfg = _cfg(tiny_random_sd, tmp_path / "cache", share_identical_prompts=True)
    out = gen.generate_images(cfg, data, tmp_path / "run" / "images", RunContext())
    index = gen.load_image_index(out)
    assert index["train"][1] == index["train"][3] == index["dev"][0]
    assert index["test"][1] == index["train"][0]
    summary = _summary(out)
    assert summary["drawn"] == 6 and summary["share_identical_prompts"] is True
    # coral x3, barren islands x2 (train and test).
    assert summary["samples_sharing_an_image"] == 5
    assert summary["test_samples_with_a_train_image"] == 1


@pytest.mark.parametrize(
    ("model", "size", "steps", "guidance"),
    [
        ("stabilityai/stable-diffusion-2", 768, 50, 7.5),
        ("stabilityai/stable-diffusion-2-base", 512, 50, 7.5),
        ("stabilityai/sd-turbo", 512, 1, 0.0),
        ("/models/copies/sd-turbo", 512, 1, 0.0),  # a local copy named like the hub id
        ("/models/my-own-pipeline", None, 50, 7.5),  # unknown: the pipeline's native size
    ],
)
def test_generation_defaults_follow_the_known_generator(
    model: str, size: int | None, steps: int, guidance: float
) -> None:
    g = parse_config({"data": {"train": "x.jsonl"}, "generator": {"model": model}}).generator
    assert (g.image_size, g.steps, g.guidance_scale) == (size, steps, guidance)
    explicit = {"model": model, "image_size": 256, "steps": 4, "guidance_scale": 2.0}
    g = parse_config({"data": {"train": "x.jsonl"}, "generator": explicit}).generator
    assert (g.image_size, g.steps, g.guidance_scale) == (256, 4, 2.0)


def test_unknown_generator_draws_at_its_native_size(tiny_random_sd: Path, tmp_path: Path) -> None:
    cfg = _cfg(tiny_random_sd, tmp_path / "cache", image_size=None)
    assert cfg.generator.image_size is None
    out = gen.generate_images(cfg, _data(), tmp_path / "run" / "images", RunContext())
    with Image.open(gen.load_image_index(out)["test"][0]) as im:
        assert im.size == (64, 64)  # the tiny pipeline's sample_size x VAE scale
    assert _summary(out)["image_size"] == "native"


def test_rerun_draws_nothing_and_never_loads_the_pipeline(
    tiny_random_sd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _cfg(tiny_random_sd, tmp_path / "cache")
    gen.generate_images(cfg, _data(), tmp_path / "a" / "images", RunContext())

    def fail(*args: object) -> None:
        raise AssertionError("pipeline loaded although every image is cached")

    monkeypatch.setattr(imaging, "load_text2image", fail)
    out = gen.generate_images(cfg, _data(), tmp_path / "b" / "images", RunContext())
    assert _summary(out)["drawn"] == 0 and _summary(out)["cached"] == 8


def test_shards_cover_every_prompt_once_and_resume(tiny_random_sd: Path, tmp_path: Path) -> None:
    for n_jobs, n_shards in [(6, 4), (2, 5), (0, 2), (100, 7)]:
        shards = gen.plan_shards(n_jobs, n_shards)
        covered = [i for s in shards for i in range(s.start, s.stop)]
        assert len(shards) == n_shards and covered == list(range(n_jobs))
    cfg = _cfg(tiny_random_sd, tmp_path / "cache", num_shards=4)
    plan = gen.plan_generation(cfg, _data(), tmp_path / "cache")
    drawn = [gen.run_shard(cfg, plan, i, RunContext()) for i in (2, 0, 3, 1)]
    assert sum(drawn) == 8 and drawn == [
        s.stop - s.start for s in (plan.shards[i] for i in (2, 0, 3, 1))
    ]
    out = gen.generate_images(cfg, _data(), tmp_path / "run" / "images", RunContext())
    assert _summary(out)["drawn"] == 0


def test_images_are_deterministic_given_the_seed(tiny_random_sd: Path, tmp_path: Path) -> None:
    def draw(name: str, seed: int, batch_size: int) -> gen.ImageIndex:
        cfg = _cfg(tiny_random_sd, tmp_path / name, batch_size=batch_size)
        cfg = cfg.model_copy(update={"seed": seed})
        return gen.load_image_index(
            gen.generate_images(cfg, _data(), tmp_path / name / "i", RunContext())
        )

    a, b, other = draw("a", 0, 3), draw("b", 0, 1), draw("c", 1, 3)
    for pa, pb in zip(a["train"], b["train"], strict=True):
        # Same seed: same picture, whatever the batch it was drawn in (float noise <= 1 level).
        assert np.abs(_pixels(pa) - _pixels(pb)).max() <= 1
    assert np.abs(_pixels(a["test"][0]) - _pixels(other["test"][0])).max() > 10


def test_tiny_random_name_builds_and_loads_through_from_pretrained(tmp_path: Path) -> None:
    cfg = _cfg("tiny-random", tmp_path / "cache")
    pipe = imaging.load_text2image(cfg, tmp_path / "cache")
    assert type(pipe).__name__ == "StableDiffusionPipeline"
    assert (tmp_path / "cache" / "_generators" / "tiny-random-v1" / "model_index.json").is_file()
    assert pipe.tokenizer.model_max_length == 77


def test_missing_generator_path_is_a_model_load_error(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path / "no" / "such-pipeline", tmp_path / "cache")
    with pytest.raises(ModelLoadError, match=r"no/such-pipeline does not exist"):
        gen.generate_images(cfg, _data(), tmp_path / "run" / "images", RunContext())
    assert not (tmp_path / "run" / "images").exists()


@pytest.mark.parametrize("guidance", [0.0, 7.5])
def test_turbo_and_classifier_free_guidance_settings_draw(
    tiny_random_sd: Path, tmp_path: Path, guidance: float
) -> None:
    # 0.0: sd-turbo's setting (no negative branch); 7.5: the paper's CFG (batch doubled).
    cfg = _cfg(tiny_random_sd, tmp_path / "cache", guidance_scale=guidance)
    out = gen.generate_images(cfg, _data(), tmp_path / "run" / "images", RunContext())
    assert _summary(out)["drawn"] == 8


def test_unreachable_hub_id_is_a_model_load_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = _cfg("lugpi-tests/no-such-pipeline", tmp_path / "cache")
    with pytest.raises(ModelLoadError, match=r"'lugpi-tests/no-such-pipeline': cannot load"):
        imaging.load_text2image(cfg, tmp_path / "cache")
