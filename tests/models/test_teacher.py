"""The multimodal teacher and the encoders, with tiny RANDOM-weight models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from contracts.errors import ConfigError, ModelLoadError
from models.hub import EFFICIENTNET_LITE0, resolve_model
from models.image import load_image_encoder
from models.teacher import (
    Teacher,
    TeacherMeta,
    TeacherOutput,
    load_teacher,
    pixel_inputs,
    predict_teacher,
    save_teacher,
)
from models.text import encode, load_text_encoder, load_tokenizer
from models.tiny import make_tiny_image_model, minilm_path

TEXTS = ["the river was cold", "a stone bridge over the water in winter"]


@pytest.fixture(scope="module")
def tiny_image_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_image_model(tmp_path_factory.mktemp("tiny-vit-random"))


def _teacher(text_dir: Path, image_name: str, **kw: object) -> Teacher:
    args: dict[str, object] = {
        "num_labels": 3,
        "fusion_heads": 8,
        "hidden_size": 24,
        "freeze_image_encoder": True,
    }
    args.update(kw)
    torch.manual_seed(0)
    return Teacher(
        load_text_encoder(str(text_dir)),
        load_image_encoder(image_name),
        load_tokenizer(str(text_dir)),
        **args,  # type: ignore[arg-type]
    ).eval()


def _pixels(teacher: Teacher, n: int) -> torch.Tensor:
    colours = [(200, 30, 30), (30, 30, 200), (30, 200, 30)]
    return teacher.image_encoder.preprocess(
        [Image.new("RGB", (32, 32), colours[i]) for i in range(n)]
    )


def _forward(teacher: Teacher, enc: dict[str, torch.Tensor], pixels: torch.Tensor) -> TeacherOutput:
    with torch.no_grad():
        return teacher(enc, pixel_values=pixels)


def test_resolve_model_aliases_paths_and_hub_ids(tmp_path: Path) -> None:
    assert Path(resolve_model("all-minilm-l6-v2")) == minilm_path()
    assert resolve_model(EFFICIENTNET_LITE0) == EFFICIENTNET_LITE0
    assert resolve_model(str(tmp_path)) == str(tmp_path.resolve())
    assert resolve_model("distilbert-base-uncased") == "distilbert-base-uncased"
    missing = str(tmp_path / "no-such-encoder")
    with pytest.raises(ModelLoadError, match="no-such-encoder") as err:
        resolve_model(missing)
    assert "all-minilm-l6-v2" in str(err.value)


def test_missing_encoder_path_is_a_model_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="efficientnet-lite0"):
        load_text_encoder(str(tmp_path / "gone"))
    # A hub id with no hub (HF_HUB_OFFLINE=1 in tests) fails the same way, naming the id.
    with pytest.raises(ModelLoadError, match="nobody/no-such-vit"):
        load_image_encoder("nobody/no-such-vit")


def test_shapes_with_tiny_vit_random(tiny_text_model: Path, tiny_image_model: Path) -> None:
    teacher = _teacher(tiny_text_model, str(tiny_image_model))
    assert teacher.image_encoder.has_cls and teacher.image_cls is None
    pixels = _pixels(teacher, 2)
    assert teacher.encode_images(pixels).shape == (2, (32 // 8) ** 2 + 1, 32)
    out = _forward(teacher, encode(teacher.tokenizer, TEXTS, None, 16), pixels)
    assert out.logits.shape == (2, 3)
    assert out.embedding.shape == (2, 24)


def test_efficientnet_lite0_gives_49_tokens_and_a_learned_cls(tiny_text_model: Path) -> None:
    teacher = _teacher(tiny_text_model, EFFICIENTNET_LITE0)
    assert not teacher.image_encoder.has_cls and teacher.image_cls is not None
    pixels = _pixels(teacher, 1)
    assert pixels.shape == (1, 3, 224, 224)
    assert teacher.encode_images(pixels).shape == (1, 49, 1280)
    out = _forward(teacher, encode(teacher.tokenizer, TEXTS[:1], None, 16), pixels)
    assert out.logits.shape == (1, 3)


def test_padding_does_not_change_the_output(tiny_text_model: Path, tiny_image_model: Path) -> None:
    teacher = _teacher(tiny_text_model, str(tiny_image_model))
    pixels = _pixels(teacher, 2)
    enc = encode(teacher.tokenizer, TEXTS, None, 32)
    pad = enc["attention_mask"] == 0
    assert pad[0].any(), "the first text must be padded for this test to mean anything"
    base = _forward(teacher, enc, pixels)

    garbage = dict(enc)
    garbage["input_ids"] = enc["input_ids"].masked_fill(pad, 2023)  # a real word, not [PAD]
    longer = teacher.tokenizer(TEXTS, padding="max_length", max_length=24, return_tensors="pt")
    for variant in (garbage, dict(longer)):
        out = _forward(teacher, variant, pixels)
        torch.testing.assert_close(out.logits, base.logits, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(out.embedding, base.embedding, atol=1e-5, rtol=1e-4)

    # ...whereas a real token does change it (so the check above can fail).
    changed = dict(enc)
    changed["input_ids"] = enc["input_ids"].clone()
    changed["input_ids"][0, 1] = 2023
    assert not torch.allclose(_forward(teacher, changed, pixels).logits[0], base.logits[0])


def test_frozen_encoder_stays_frozen_and_cached_tokens_match(
    tiny_text_model: Path, tiny_image_model: Path
) -> None:
    teacher = _teacher(tiny_text_model, str(tiny_image_model))
    teacher.train()
    assert not teacher.image_encoder.training and teacher.text_encoder.training
    assert not any(p.requires_grad for p in teacher.image_encoder.parameters())
    teacher.eval()
    pixels = _pixels(teacher, 2)
    enc = encode(teacher.tokenizer, TEXTS, None, 16)
    with torch.no_grad():
        from_pixels = teacher(enc, pixel_values=pixels)
        from_tokens = teacher(enc, image_tokens=teacher.encode_images(pixels))
    torch.testing.assert_close(from_tokens.logits, from_pixels.logits)

    trainable = _teacher(tiny_text_model, str(tiny_image_model), freeze_image_encoder=False)
    assert all(p.requires_grad for p in trainable.image_encoder.parameters())


def test_fusion_heads_must_divide_the_width(tiny_text_model: Path, tiny_image_model: Path) -> None:
    with pytest.raises(ConfigError, match="fusion_heads=5"):
        _teacher(tiny_text_model, str(tiny_image_model), fusion_heads=5)


def test_save_and_load_round_trip(
    tmp_path: Path, tiny_text_model: Path, tiny_image_model: Path
) -> None:
    teacher = _teacher(tiny_text_model, str(tiny_image_model))
    with torch.no_grad():  # move off the init so a load that silently re-initialises fails
        teacher.classifier.bias.add_(0.5)
    meta = TeacherMeta(
        name="t", text_model=str(tiny_text_model), image_model=str(tiny_image_model),
        labels=["a", "b", "c"], text_pair=False, max_length=16, text_width=32, image_width=32,
        fusion_width=32, fusion_heads=8, hidden_size=24, freeze_image_encoder=True,
    )  # fmt: skip
    save_teacher(teacher, meta, tmp_path)
    loaded, loaded_meta = load_teacher(tmp_path)
    assert loaded_meta == meta
    images = [Image.new("RGB", (40, 40), (i * 90, 50, 200 - i * 90)) for i in range(2)]
    kw = {"max_length": 16, "batch_size": 1, "device": torch.device("cpu")}
    before = predict_teacher(teacher, TEXTS, None, pixel_inputs(teacher, images), **kw)  # type: ignore[arg-type]
    after = predict_teacher(loaded, TEXTS, None, pixel_inputs(loaded, images), **kw)  # type: ignore[arg-type]
    for a, b in zip(before, after, strict=True):
        assert a.shape[0] == 2
        assert (abs(a - b) < 1e-5).all()


def _single_modality(text_dir: Path, image_dir: Path, modality: str) -> Teacher:
    """A text-only teacher or an image-only model (fusion width 32, the tiny text width)."""
    torch.manual_seed(0)
    reads_text = modality == "text"
    return Teacher(
        load_text_encoder(str(text_dir)) if reads_text else None,
        None if reads_text else load_image_encoder(str(image_dir)),
        load_tokenizer(str(text_dir)) if reads_text else None,
        num_labels=3, fusion_heads=8, hidden_size=24, freeze_image_encoder=True,
        width=None if reads_text else 32,
    ).eval()  # fmt: skip


@pytest.mark.parametrize("modality", ["text", "image"])
def test_single_modality_shapes_and_missing_inputs_are_ignored(
    modality: str, tiny_text_model: Path, tiny_image_model: Path
) -> None:
    teacher = _single_modality(tiny_text_model, tiny_image_model, modality)
    assert teacher.modality == modality
    assert teacher.mlp_hidden.in_features == 32  # one CLS, not two
    pixels = _pixels(_teacher(tiny_text_model, str(tiny_image_model)), 2)
    enc = encode(load_tokenizer(str(tiny_text_model)), TEXTS, None, 16)
    with torch.no_grad():
        out = teacher(enc, pixel_values=pixels)
        alone = teacher(enc) if modality == "text" else teacher(pixel_values=pixels)
    assert out.logits.shape == (2, 3) and out.embedding.shape == (2, 24)
    # The other modality's input changes nothing: the teacher does not read it.
    torch.testing.assert_close(alone.logits, out.logits)
    if modality == "text":
        assert pixel_inputs(teacher, [])([0, 1]) == {}
        with pytest.raises(ValueError, match="no images"):
            teacher.encode_images(pixels)
    else:
        assert teacher.tokenizer is None and teacher.image_cls is None  # the ViT has a CLS
        with pytest.raises(ValueError, match="exactly one"):
            teacher(enc)


def test_a_teacher_needs_at_least_one_encoder() -> None:
    with pytest.raises(ValueError, match="text encoder, an image encoder or both"):
        Teacher(None, None, None, num_labels=2, fusion_heads=1, hidden_size=4,
                freeze_image_encoder=True, width=8)  # fmt: skip


@pytest.mark.parametrize("modality", ["text", "image"])
def test_single_modality_save_and_load_round_trip(
    modality: str, tmp_path: Path, tiny_text_model: Path, tiny_image_model: Path
) -> None:
    teacher = _single_modality(tiny_text_model, tiny_image_model, modality)
    with torch.no_grad():
        teacher.classifier.bias.add_(0.5)
    meta = TeacherMeta(
        name="t", modality=modality, text_model=str(tiny_text_model),  # type: ignore[arg-type]
        image_model=str(tiny_image_model), labels=["a", "b", "c"], text_pair=False,
        max_length=16, text_width=32 if modality == "text" else None,
        image_width=None if modality == "text" else 32, fusion_width=32, fusion_heads=8,
        hidden_size=24, freeze_image_encoder=True,
    )  # fmt: skip
    save_teacher(teacher, meta, tmp_path)
    # Only the encoder the teacher has is saved.
    assert (tmp_path / "text_encoder").exists() == (modality == "text")
    assert (tmp_path / "image_encoder").exists() == (modality == "image")
    loaded, loaded_meta = load_teacher(tmp_path)
    assert loaded_meta == meta and loaded.modality == modality
    images = [Image.new("RGB", (40, 40), (i * 90, 50, 200 - i * 90)) for i in range(2)]
    kw = {"max_length": 16, "batch_size": 1, "device": torch.device("cpu")}
    before = predict_teacher(teacher, TEXTS, None, pixel_inputs(teacher, images), **kw)  # type: ignore[arg-type]
    after = predict_teacher(loaded, TEXTS, None, pixel_inputs(loaded, images), **kw)  # type: ignore[arg-type]
    for a, b in zip(before, after, strict=True):
        assert a.shape[0] == 2
        assert (abs(a - b) < 1e-5).all()
