"""Student distillation and the CE-only baseline, with tiny RANDOM-weight models."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, DistilBertConfig, DistilBertModel

from contracts.artifacts import TextModelMeta, is_complete
from contracts.config import PipelineConfig, parse_config
from contracts.errors import ArtifactError, Cancelled
from models.text import ClassifierInput, embedding_width, encode, load_student, load_tokenizer
from models.tiny import make_tiny_image_model, minilm_path
from tests.support.keyword_colour import make_keyword_colour_data
from training.data.prepare import Example, PreparedData
from training.lugpi.distill import distill_student, train_baseline
from training.teachers.train_teacher import train_teacher
from training.tracking.progress import RunContext

SIZES = {"train": 40, "dev": 12, "test": 12}
TEXTS = ["the river was cold", "a stone bridge over the water in winter"]


def _cfg(text_model: Path, image_model: Path, **distill: object) -> PipelineConfig:
    raw: dict[str, object] = {
        "seed": 3,
        "device": "cpu",
        "data": {"train": "synthetic", "unlabelled": "synthetic-unlabelled"},
        "teachers": [
            {"name": "tiny", "text_model": str(text_model), "image_model": str(image_model),
             "hidden_size": 48, "epochs": 1, "batch_size": 16, "learning_rate": 1e-3}
        ],
        "student": {"text_model": str(text_model), "max_length": 16, "epochs": 2,
                    "batch_size": 16, "learning_rate": 1e-3},
        "distill": {"alpha": 3.0, "beta": 1.0, "tau": 2.0, **distill},
    }  # fmt: skip
    return parse_config(raw)


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory, tiny_text_model: Path
) -> tuple[PipelineConfig, PreparedData, dict[str, list[Path]], Path]:
    root = tmp_path_factory.mktemp("distill")
    cfg = _cfg(tiny_text_model, make_tiny_image_model(root / "tiny-vit-random"))
    data, images = make_keyword_colour_data(root / "data", SIZES, label_noise=0.2)
    teacher = train_teacher(cfg, cfg.teachers[0], data, images, root / "teacher", RunContext())
    return cfg, data, images, teacher


def test_classifier_input_is_e_s_for_bert_random(tiny_text_model: Path) -> None:
    model = load_student(str(tiny_text_model), ["a", "b"]).eval()
    capture = ClassifierInput(model)
    enc = encode(load_tokenizer(str(tiny_text_model)), TEXTS, None, 16)
    with torch.no_grad():
        model(**enc)
        pooled = model.bert(**enc).pooler_output
    assert embedding_width(model) == 32
    torch.testing.assert_close(capture.pop(), pooled)


def test_classifier_input_is_e_s_for_distilbert_random(tmp_path: Path) -> None:
    config = DistilBertConfig(vocab_size=30522, dim=32, n_layers=1, n_heads=2, hidden_dim=64)
    DistilBertModel(config).save_pretrained(tmp_path)
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=2).eval()
    capture = ClassifierInput(model)
    enc = encode(load_tokenizer(str(minilm_path())), TEXTS, None, 16)
    enc.pop("token_type_ids")
    with torch.no_grad():
        model(**enc)
        cls = model.distilbert(**enc).last_hidden_state[:, 0]
        expected = torch.relu(model.pre_classifier(cls))
    torch.testing.assert_close(capture.pop(), expected)


def test_e_s_in_train_mode_is_the_classifier_input_before_dropout_random(
    tiny_text_model: Path,
) -> None:
    """In training, BERT's head is classifier(dropout(pooled)): e_S must be ``pooled``.
    Same seed before both forwards => the encoder's own dropout draws the same masks."""
    model = load_student(str(tiny_text_model), ["a", "b"]).train()
    capture = ClassifierInput(model)
    seen: list[torch.Tensor] = []
    model.classifier.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    enc = encode(load_tokenizer(str(tiny_text_model)), TEXTS, None, 16)
    torch.manual_seed(0)
    model(**enc)
    e_s = capture.pop()
    torch.manual_seed(0)
    pooled = model.bert(**enc).pooler_output
    torch.testing.assert_close(e_s, pooled)
    # The classifier did consume a dropped-out copy (p = 0.1 zeroes some of 64 values).
    assert not torch.equal(seen[0], pooled) and bool((seen[0] == 0).any())
    assert e_s.requires_grad  # the beta term trains the encoder through it


def test_e_s_in_train_mode_for_distilbert_is_before_dropout_random(tmp_path: Path) -> None:
    config = DistilBertConfig(
        vocab_size=30522, dim=32, n_layers=1, n_heads=2, hidden_dim=64, seq_classif_dropout=0.5
    )
    DistilBertModel(config).save_pretrained(tmp_path)
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=2).train()
    capture = ClassifierInput(model)
    enc = encode(load_tokenizer(str(minilm_path())), TEXTS, None, 16)
    enc.pop("token_type_ids")
    torch.manual_seed(0)
    model(**enc)
    e_s = capture.pop()
    torch.manual_seed(0)
    cls = model.distilbert(**enc).last_hidden_state[:, 0]
    torch.testing.assert_close(e_s, torch.relu(model.pre_classifier(cls)))


def _meta(model_dir: Path) -> TextModelMeta:
    return TextModelMeta.model_validate_json((model_dir / "lugpi.json").read_text())


def test_distill_writes_a_loadable_student(
    tmp_path: Path, setup: tuple[PipelineConfig, PreparedData, dict[str, list[Path]], Path]
) -> None:
    cfg, data, images, teacher = setup
    out = distill_student(cfg, data, images, [teacher], tmp_path / "student", RunContext())
    assert is_complete(out)
    meta = _meta(out)
    assert (meta.kind, meta.labels, meta.max_length) == ("student", data.labels, 16)
    assert set(meta.metrics["dev"]) >= {"accuracy", "macro_f1"}
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.id2label == dict(enumerate(data.labels))
    # The e_S projection (32 -> 48) belongs to the loss: nothing of it is exported.
    assert not any(k.startswith("proj") for k in model.state_dict())
    history = json.loads((out / "history.json").read_text())
    assert len(history["steps"]) == 2 * math.ceil(SIZES["train"] / 16)
    assert [e["epoch"] for e in history["epochs"]] == [1, 2]
    assert {"ce", "kd", "emb"} <= set(history["steps"][0])
    assert history["steps"][0]["emb"] > 0
    # The loss it was trained with, in its stage record and in lugpi.json (the bundle's source).
    record = json.loads((out / "stage.json").read_text())["summary"]
    assert record["teachers"] == ["tiny"]
    assert record["loss"]["kd_form"] == "paper" and record["loss"]["embedding_loss"] == "mse"
    assert (meta.model_extra or {})["loss"] == record["loss"]


def test_alpha_beta_zero_student_is_the_baseline(
    tmp_path: Path, setup: tuple[PipelineConfig, PreparedData, dict[str, list[Path]], Path]
) -> None:
    cfg, data, images, teacher = setup
    ctx = RunContext()
    baseline = train_baseline(cfg, data, tmp_path / "baseline", ctx)
    plain = cfg.model_copy(
        update={"distill": cfg.distill.model_copy(update={"alpha": 0.0, "beta": 0.0})}
    )
    ablated = distill_student(plain, data, images, [teacher], tmp_path / "ablated", ctx)
    full = distill_student(cfg, data, images, [teacher], tmp_path / "full", ctx)
    weights = {
        name: AutoModelForSequenceClassification.from_pretrained(d).state_dict()
        for name, d in {"baseline": baseline, "ablated": ablated, "full": full}.items()
    }
    # Same init, batch order and budget: with the teacher terms off, the very same weights.
    for key, value in weights["baseline"].items():
        torch.testing.assert_close(weights["ablated"][key], value)
    assert _meta(baseline).kind == "baseline"
    w = "classifier.weight"
    assert not torch.allclose(weights["full"][w], weights["baseline"][w])


def test_teacher_trained_on_other_labels_is_rejected(
    tmp_path: Path, setup: tuple[PipelineConfig, PreparedData, dict[str, list[Path]], Path]
) -> None:
    cfg, _, _, teacher = setup
    other, images = make_keyword_colour_data(tmp_path, {"train": 6, "dev": 3}, num_classes=3)
    with pytest.raises(ArtifactError, match="retrain the teacher"):
        distill_student(cfg, other, images, [teacher], tmp_path / "student", RunContext())
    assert not (tmp_path / "student").exists()


def test_teacher_guided_training_uses_unlabelled_texts(
    tmp_path: Path, setup: tuple[PipelineConfig, PreparedData, dict[str, list[Path]], Path]
) -> None:
    cfg, data, images, teacher = setup
    extra, extra_images = make_keyword_colour_data(tmp_path, {"unlabelled": 8}, seed=9)
    unlabelled = [Example(e.text, None, None, e.prompt) for e in extra.splits["unlabelled"]]
    with_unl = PreparedData(data.labels, False, {**data.splits, "unlabelled": unlabelled})
    tgt = cfg.model_copy(
        update={"distill": cfg.distill.model_copy(update={"use_unlabelled": True})}
    )

    with pytest.raises(ArtifactError, match="unlabelled"):  # no images for them yet
        distill_student(tgt, with_unl, images, [teacher], tmp_path / "s", RunContext())
    all_images = {**images, **extra_images}
    out = distill_student(
        tgt, with_unl, all_images, [teacher, teacher], tmp_path / "s", RunContext()
    )
    meta = _meta(out).model_dump()
    assert meta["train_examples"] == {"train": SIZES["train"], "unlabelled": 8}
    assert meta["teachers"] == ["tiny", "tiny"]
    history = json.loads((out / "history.json").read_text())
    assert len(history["steps"]) == 2 * math.ceil((SIZES["train"] + 8) / 16)


def test_cancel_stops_at_the_next_batch_and_leaves_nothing(
    tmp_path: Path, setup: tuple[PipelineConfig, PreparedData, dict[str, list[Path]], Path]
) -> None:
    cfg, data, _, _ = setup
    calls: list[int] = []
    ctx = RunContext(report=lambda stage, done, total, msg: calls.append(done),
                     cancel_requested=lambda: len(calls) >= 2)  # fmt: skip
    with pytest.raises(Cancelled):
        train_baseline(cfg, data, tmp_path / "baseline", ctx)
    assert len(calls) == 2
    assert list(tmp_path.iterdir()) == []
