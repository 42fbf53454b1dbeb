"""The single-modality teachers (Table 1's image-only row, the image-free control) through
the training stages, with tiny RANDOM-weight models on the synthetic keyword/colour task."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from contracts.artifacts import is_complete
from contracts.config import PipelineConfig, parse_config
from contracts.errors import ConfigError
from models.teacher import load_teacher, pixel_inputs, predict_teacher
from models.tiny import make_tiny_image_model
from tests.support.keyword_colour import make_keyword_colour_data
from training.data.prepare import PreparedData
from training.evaluation.evaluate import evaluate
from training.lugpi.distill import distill_student, train_baseline
from training.pipeline import Run
from training.teachers.train_teacher import train_teacher
from training.tracking.progress import RunContext

SIZES = {"train": 40, "dev": 12, "test": 12}


def _cfg(text_model: Path, image_model: Path) -> PipelineConfig:
    common = {
        "text_model": str(text_model),
        "image_model": str(image_model),
        "hidden_size": 24,
        "epochs": 1,
        "batch_size": 16,
        "learning_rate": 1e-3,
    }
    return parse_config({
        "seed": 1,
        "device": "cpu",
        "data": {"train": "synthetic"},
        "teachers": [{"name": "text-only", "modality": "text", **common},
                     {"name": "image-only", "modality": "image", **common}],
        "student": {"text_model": str(text_model), "max_length": 16, "epochs": 1,
                    "batch_size": 16, "learning_rate": 1e-3},
    })  # fmt: skip


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory, tiny_text_model: Path
) -> tuple[PipelineConfig, PreparedData, dict[str, list[Path]], Path]:
    root = tmp_path_factory.mktemp("modalities")
    cfg = _cfg(tiny_text_model, make_tiny_image_model(root / "tiny-vit-random"))
    data, images = make_keyword_colour_data(root / "data", SIZES, num_classes=3)
    return cfg, data, images, root


def test_text_teacher_trains_and_distills_without_any_images(
    tmp_path: Path, setup: tuple[PipelineConfig, PreparedData, dict[str, list[Path]], Path]
) -> None:
    cfg, data, _, _ = setup
    text_only = cfg.teachers[0]
    ctx = RunContext()
    teacher = train_teacher(cfg, text_only, data, {}, tmp_path / "teacher", ctx)
    model, meta = load_teacher(teacher)
    assert (meta.modality, meta.image_width, model.image_encoder) == ("text", None, None)
    assert not (teacher / "image_encoder").exists()
    student = distill_student(cfg, data, {}, [teacher], tmp_path / "student", ctx)
    history = json.loads((student / "history.json").read_text())
    assert history["steps"][0]["kd"] > 0 and history["steps"][0]["emb"] > 0
    out = evaluate(cfg, data, {}, [teacher], student, None, tmp_path / "evaluate", ctx)
    models = json.loads((out / "results.json").read_text())["models"]
    assert models["teacher:text-only"]["modality"] == "text"
    assert models["teacher:text-only"]["test"]["n"] == SIZES["test"]
    assert "| Teacher text-only (text only) |" in (out / "results.md").read_text()


def test_image_only_teacher_reads_no_text(
    tmp_path: Path, setup: tuple[PipelineConfig, PreparedData, dict[str, list[Path]], Path]
) -> None:
    cfg, data, images, _ = setup
    ctx = RunContext()
    teacher = train_teacher(cfg, cfg.teachers[1], data, images, tmp_path / "teacher", ctx)
    model, meta = load_teacher(teacher)
    assert (meta.modality, meta.text_width, meta.fusion_width) == ("image", None, 32)
    assert model.text_encoder is None and not (teacher / "text_encoder").exists()
    # Other texts in the same order of images cannot change an image-only model's outputs.
    kw = {"max_length": 16, "batch_size": 8, "device": torch.device("cpu")}
    texts = data.texts("test")
    a, _ = predict_teacher(model, texts, None, pixel_inputs(model, images["test"]), **kw)  # type: ignore[arg-type]
    b, _ = predict_teacher(model, texts[::-1], None, pixel_inputs(model, images["test"]), **kw)  # type: ignore[arg-type]
    assert (a == b).all()
    baseline = train_baseline(cfg, data, tmp_path / "baseline", ctx)
    out = evaluate(cfg, data, images, [teacher], baseline, None, tmp_path / "evaluate", ctx)
    models = json.loads((out / "results.json").read_text())["models"]
    assert models["teacher:image-only"]["modality"] == "image"
    assert "| Teacher image-only (image only) |" in (out / "results.md").read_text()


def test_pipeline_with_only_a_text_teacher_draws_no_images(
    tmp_path: Path, setup: tuple[PipelineConfig, PreparedData, dict[str, list[Path]], Path]
) -> None:
    cfg, data, _, _ = setup
    files = {}
    for split, examples in data.splits.items():
        files[split] = str(tmp_path / f"{split}.jsonl")
        lines = [json.dumps({"text": e.text, "label": e.label}) for e in examples]
        Path(files[split]).write_text("\n".join(lines) + "\n")
    data_cfg = cfg.data.model_copy(update=files)
    text_cfg = cfg.model_copy(update={"teachers": cfg.teachers[:1], "data": data_cfg})
    run = Run(text_cfg, tmp_path / "run", RunContext())
    assert not run.reads_images
    for command in ("prepare", "generate", "teacher", "distill", "baseline"):
        run.make(command)
    run.evaluate()
    assert not (tmp_path / "run" / "images").exists()
    done = ("teacher-text-only", "student-text-only")
    assert all(is_complete(tmp_path / "run" / d) for d in done)
    assert set(run.metrics()) == {"teacher-text-only", "student-text-only", "baseline"}


def test_run_dir_pinned_before_modality_existed_still_resumes(
    tmp_path: Path, setup: tuple[PipelineConfig, PreparedData, dict[str, list[Path]], Path]
) -> None:
    cfg = setup[0].model_copy(update={"teachers": setup[0].teachers[:1]})
    old = cfg.model_dump(mode="json")
    for teacher in old["teachers"]:
        del teacher["modality"]  # as config.yaml was written before the field was added
    old["teachers"][0]["name"] = "t"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    current = parse_config(old)
    assert current.teachers[0].modality == "text+image"
    Run(current, tmp_path, RunContext()).pin_config()  # the default is no change
    changed = current.model_copy(update={"seed": current.seed + 1})
    with pytest.raises(ConfigError, match="different config"):
        Run(changed, tmp_path, RunContext()).pin_config()
