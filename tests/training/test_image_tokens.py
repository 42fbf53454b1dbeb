"""The frozen image-encoder token store, with tiny RANDOM-weight encoders: tokens are
computed once per image across stages and runs, and never reused for another encoder."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from contracts.config import PipelineConfig, parse_config
from models.image import load_image_encoder
from models.teacher import Teacher, pixel_inputs, predict_teacher
from models.text import load_text_encoder, load_tokenizer
from models.tiny import make_tiny_image_model
from tests.support.keyword_colour import make_keyword_colour_data
from training.data.prepare import PreparedData
from training.evaluation.evaluate import evaluate
from training.lugpi.distill import distill_student
from training.students.train_loop import select_runtime
from training.teachers.image_tokens import TokenCache, encoder_fingerprint, teacher_image_inputs
from training.teachers.train_teacher import train_teacher
from training.tracking.progress import RunContext

CPU = select_runtime("cpu", mixed_precision=False)


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory, tiny_text_model: Path
) -> tuple[Path, PreparedData, dict[str, list[Path]]]:
    root = tmp_path_factory.mktemp("tokens")
    image_model = make_tiny_image_model(root / "tiny-vit-random")
    data, images = make_keyword_colour_data(
        root / "data", {"train": 24, "dev": 8, "test": 8}, num_classes=3
    )
    return image_model, data, images


def _teacher(text_model: Path, image_model: Path, seed: int = 0) -> Teacher:
    torch.manual_seed(seed)
    return Teacher(
        load_text_encoder(str(text_model)),
        load_image_encoder(str(image_model)),
        load_tokenizer(str(text_model)),
        num_labels=3,
        fusion_heads=8,
        hidden_size=24,
        freeze_image_encoder=True,
    ).eval()


def test_tokens_are_stored_once_and_read_back_identical(
    tmp_path: Path, tiny_text_model: Path, setup: tuple[Path, PreparedData, dict[str, list[Path]]]
) -> None:
    image_model, _, images = setup
    teacher = _teacher(tiny_text_model, image_model)
    paths = images["train"] + images["dev"]
    first = TokenCache(teacher, paths, CPU, batch_size=8, store=tmp_path)
    assert (first.computed, first.loaded) == (len(set(paths)), 0)
    again = TokenCache(teacher, paths, CPU, batch_size=8, store=tmp_path)
    assert (again.computed, again.loaded) == (0, len(set(paths)))
    assert torch.equal(first.tokens, again.tokens)
    # And they are the encoder's own tokens (stored as float16).
    pixels = teacher.image_encoder.preprocess([*map(_rgb, images["train"][:4])])
    direct = teacher.encode_images(pixels).to(torch.float16)
    rows = first.inputs(images["train"])([0, 1, 2, 3])["image_tokens"]
    assert torch.equal(rows, direct)
    # No stray temporary files beside the tokens.
    assert not list(tmp_path.rglob(".*tmp*"))


def test_another_encoder_never_reads_these_tokens(
    tmp_path: Path, tiny_text_model: Path, setup: tuple[Path, PreparedData, dict[str, list[Path]]]
) -> None:
    image_model, _, images = setup
    teacher = _teacher(tiny_text_model, image_model)
    TokenCache(teacher, images["dev"], CPU, batch_size=8, store=tmp_path)
    other = _teacher(tiny_text_model, image_model)
    assert other.image_encoder is not None
    with torch.no_grad():
        next(other.image_encoder.parameters()).add_(0.1)  # same architecture, other weights
    assert encoder_fingerprint(other.image_encoder, None) != encoder_fingerprint(
        teacher.image_encoder, None
    )
    cache = TokenCache(other, images["dev"], CPU, batch_size=8, store=tmp_path)
    assert cache.loaded == 0 and cache.computed == len(set(images["dev"]))


def test_fingerprint_of_the_offline_efficientnet_is_stable() -> None:
    """EfficientNet-Lite0 (pretrained, shipped on PyPI) has BatchNorm's 0-dim counters."""
    a = encoder_fingerprint(load_image_encoder("efficientnet-lite0"), None)
    assert a == encoder_fingerprint(load_image_encoder("efficientnet-lite0"), None)
    assert a != encoder_fingerprint(load_image_encoder("efficientnet-lite0"), torch.bfloat16)


def test_teacher_outputs_from_stored_tokens_match_pixels(
    tmp_path: Path, tiny_text_model: Path, setup: tuple[Path, PreparedData, dict[str, list[Path]]]
) -> None:
    image_model, data, images = setup
    teacher = _teacher(tiny_text_model, image_model)
    kw = {"max_length": 16, "batch_size": 8, "device": torch.device("cpu")}
    texts = data.texts("test")
    cached = teacher_image_inputs(teacher, images["test"], CPU, 8, tmp_path)
    a, _ = predict_teacher(teacher, texts, None, cached, **kw)  # type: ignore[arg-type]
    b, _ = predict_teacher(teacher, texts, None, pixel_inputs(teacher, images["test"]), **kw)  # type: ignore[arg-type]
    np.testing.assert_allclose(a, b, atol=5e-3)  # float16 tokens against float32


def test_stages_share_the_store(
    tmp_path: Path, tiny_text_model: Path, setup: tuple[Path, PreparedData, dict[str, list[Path]]]
) -> None:
    """teacher -> distill -> evaluate: each image is encoded once in all."""
    image_model, data, images = setup
    cfg = _cfg(tiny_text_model, image_model)
    ctx, store = RunContext(), tmp_path / "store"
    teacher = train_teacher(
        cfg, cfg.teachers[0], data, images, tmp_path / "teacher", ctx, token_store=store
    )
    stored = {p: p.stat().st_mtime_ns for p in store.rglob("*.npy")}
    assert len(stored) == _distinct_contents(images["train"] + images["dev"])
    student = distill_student(
        cfg, data, images, [teacher], tmp_path / "student", ctx, token_store=store
    )
    # Read back, not encoded again: no file was rewritten.
    assert {p: p.stat().st_mtime_ns for p in store.rglob("*.npy")} == stored
    out = evaluate(
        cfg, data, images, [teacher], student, None, tmp_path / "eval", ctx, token_store=store
    )
    everything = images["train"] + images["dev"] + images["test"]
    assert len(list(store.rglob("*.npy"))) == _distinct_contents(everything)
    results = json.loads((out / "results.json").read_text())["models"]
    assert results["teacher:mm"]["test"]["n"] == len(data.splits["test"])


def _cfg(text_model: Path, image_model: Path) -> PipelineConfig:
    return parse_config({
        "seed": 0,
        "device": "cpu",
        "data": {"train": "synthetic"},
        "teachers": [{"name": "mm", "text_model": str(text_model),
                      "image_model": str(image_model), "hidden_size": 24, "epochs": 1,
                      "batch_size": 8, "learning_rate": 1e-3}],
        "student": {"text_model": str(text_model), "max_length": 16, "epochs": 1,
                    "batch_size": 8, "learning_rate": 1e-3},
    })  # fmt: skip


def _distinct_contents(paths: list[Path]) -> int:
    """Tokens are keyed by the image's bytes: the synthetic set repeats some images."""
    return len({hashlib.sha256(p.read_bytes()).digest() for p in paths})


def _rgb(path: Path) -> object:
    from models.image import load_image

    return load_image(path)
