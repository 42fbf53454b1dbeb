"""Metrics, tables and the evaluate stage (tiny RANDOM-weight models)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import f1_score

from contracts.artifacts import is_complete, read_stage
from contracts.config import PipelineConfig, parse_config
from contracts.errors import ArtifactError
from models.text import load_text_classifier, predict_logits
from models.tiny import make_tiny_image_model
from runtime.metrics import accuracy_f1, confusion_matrix
from tests.support.keyword_colour import make_keyword_colour_data
from training.data.prepare import PreparedData
from training.evaluation.evaluate import (
    ResultRow,
    classification_report,
    evaluate,
    markdown_table,
)
from training.lugpi.distill import distill_student, train_baseline
from training.teachers.train_teacher import train_teacher
from training.tracking.progress import RunContext


def test_metrics_by_hand() -> None:
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 0])
    assert confusion_matrix(y_true, y_pred, 3).tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    report = classification_report(y_true, y_pred, ["a", "b", "c"])
    # F1 = 2tp / (2tp + fp + fn): a = 2/4, b = 4/5, c = 2/3.
    assert report["per_class_f1"] == pytest.approx({"a": 0.5, "b": 0.8, "c": 2 / 3})
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert report["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert report["n"] == 6


def test_macro_f1_skips_classes_absent_from_truth_and_predictions() -> None:
    rng = np.random.default_rng(1)
    y_true, y_pred = rng.integers(0, 3, 50), rng.integers(0, 3, 50)
    y_pred[y_pred == 2] = 0
    y_true[y_true == 2] = 1  # class 2 never occurs; a 4th label exists but never occurs either
    got = accuracy_f1(y_true, y_pred, 4)
    assert got["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert got["accuracy"] == pytest.approx(float((y_true == y_pred).mean()))


def test_markdown_table_takes_plain_rows() -> None:
    rows = [ResultRow("Baseline", {"accuracy": 0.8614, "macro_f1": 0.5}), ResultRow("X", {})]
    assert markdown_table(rows).splitlines() == [
        "| Model | Accuracy | Macro-F1 |",
        "|---|---:|---:|",
        "| Baseline | 0.861 | 0.500 |",
        "| X | - | - |",
    ]


@pytest.fixture(scope="module")
def run(
    tmp_path_factory: pytest.TempPathFactory, tiny_text_model: Path
) -> tuple[PipelineConfig, PreparedData, dict[str, list[Path]], Path]:
    root = tmp_path_factory.mktemp("evaluate")
    image_model = make_tiny_image_model(root / "tiny-vit-random")
    cfg = parse_config(
        {
            "device": "cpu",
            "data": {"train": "synthetic"},
            "teachers": [{"name": "tiny", "text_model": str(tiny_text_model),
                          "image_model": str(image_model), "hidden_size": 32, "epochs": 2,
                          "batch_size": 16, "learning_rate": 1e-3}],
            "student": {"text_model": str(tiny_text_model), "max_length": 16, "epochs": 2,
                        "batch_size": 16, "learning_rate": 1e-3},
        }
    )  # fmt: skip
    data, images = make_keyword_colour_data(
        root / "data", {"train": 40, "dev": 12, "test": 15}, num_classes=3
    )
    ctx = RunContext()
    train_teacher(cfg, cfg.teachers[0], data, images, root / "teacher", ctx)
    distill_student(cfg, data, images, [root / "teacher"], root / "student", ctx)
    train_baseline(cfg, data, root / "baseline", ctx)
    return cfg, data, images, root


def test_evaluate_writes_results_tables_and_curves(
    tmp_path: Path, run: tuple[PipelineConfig, PreparedData, dict[str, list[Path]], Path]
) -> None:
    cfg, data, images, root = run
    out = evaluate(
        cfg, data, images, [root / "teacher"], root / "student", root / "baseline",
        tmp_path / "evaluate", RunContext(), ablation_dirs={"beta=0": root / "baseline"},
    )  # fmt: skip
    assert is_complete(out)
    results = json.loads((out / "results.json").read_text())
    assert results["labels"] == data.labels and results["report_split"] == "test"
    models = results["models"]
    assert set(models) == {"teacher:tiny", "student", "baseline", "ablation:beta=0"}
    for entry in models.values():
        for split, n in (("dev", 12), ("test", 15)):
            metrics = entry[split]
            assert metrics["n"] == n
            assert np.asarray(metrics["confusion"]).shape == (3, 3)
            assert set(metrics["per_class_f1"]) == set(data.labels)

    # The reported accuracy is the saved student's, recomputed independently here.
    model, tokenizer, meta = load_text_classifier(root / "student")
    logits = predict_logits(
        model, tokenizer, data.texts("test"), None, max_length=meta.max_length, batch_size=4,
        device=torch.device("cpu"),
    )  # fmt: skip
    expected = float((logits.argmax(-1) == np.asarray(data.label_ids("test"))).mean())
    assert models["student"]["test"]["accuracy"] == pytest.approx(expected)

    md = (out / "results.md").read_text()
    assert "Table 1" in md and "Table 2" in md
    assert "| Baseline (text only, CE) |" in md and "| Teacher tiny (text + image) |" in md
    student_row = next(line for line in md.splitlines() if line.startswith("| Student (LUGPI)"))
    assert f"{expected:.3f}" in student_row
    with Image.open(out / "curves.png") as im:
        assert im.format == "PNG" and im.size[0] > 300


def test_teacher_for_other_labels_is_an_artifact_error(
    tmp_path: Path, run: tuple[PipelineConfig, PreparedData, dict[str, list[Path]], Path]
) -> None:
    cfg, _, _, root = run
    other, images = make_keyword_colour_data(tmp_path / "d", {"train": 4, "dev": 2, "test": 2})
    with pytest.raises(ArtifactError, match="teacher labels"):
        evaluate(
            cfg, other, images, [root / "teacher"], root / "student", None, tmp_path / "e",
            RunContext(),
        )  # fmt: skip
    assert not (tmp_path / "e").exists()


def test_the_stage_record_times_the_scoring_not_only_the_writing(
    tmp_path: Path, run: tuple[PipelineConfig, PreparedData, dict[str, list[Path]], Path]
) -> None:
    """The offline run's evaluate record said 1 s for minutes of scoring: it timed only the
    files. Each progress report sleeps here, so scoring takes a known least time."""
    cfg, data, images, root = run
    steps = 0

    def slow_report(*_: object) -> None:
        nonlocal steps
        steps += 1
        time.sleep(0.5)

    out = evaluate(
        cfg, data, images, [root / "teacher"], root / "student", root / "baseline",
        tmp_path / "evaluate", RunContext(report=slow_report),
    )  # fmt: skip
    assert steps >= 6  # 3 models x 2 splits, at least a batch each
    assert read_stage(out).seconds >= 0.5 * steps
