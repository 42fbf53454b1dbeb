"""How long and how fast a model trains (training/students/budget.py): epochs from the data
size unless given, the warm-up, and ``learning_rate: auto`` (one run per rate from the same
start, the best on dev kept), as the stage records state them.

Tiny RANDOM-weight models on the synthetic keyword task: seconds. Whether the default
budget learns a real task is tests/training/test_default_budget_learns.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from contracts.config import (
    AUTO_LEARNING_RATES,
    DEFAULT_MIN_STEPS,
    PipelineConfig,
    parse_config,
)
from contracts.errors import ConfigError
from contracts.jobs import Stage
from models.tiny import make_tiny_image_model
from runtime.metrics import accuracy_f1
from tests.support.keyword_colour import make_keyword_colour_data
from training.lugpi.distill import train_baseline
from training.students.budget import (
    TrainingPlan,
    choose_learning_rate,
    fit_planned,
    planned_epochs,
)
from training.students.train_loop import Budget, select_runtime
from training.teachers.train_teacher import train_teacher
from training.tracking.progress import RunContext

SIZES = {"train": 48, "dev": 16}


def test_epochs_come_from_the_data_size_unless_given() -> None:
    # 200 examples at batch 16: 13 steps an epoch, 24 epochs for the 300-step floor.
    epochs, why = planned_epochs(200, 16, None, 300)
    assert epochs == 24 and "13 steps an epoch" in why and "300 steps" in why
    # A large set: the floor is met by the least number of epochs (3).
    epochs, why = planned_epochs(4000, 32, None, 300)
    assert epochs == 3 and "3 epochs (the least)" in why
    # An explicit number of epochs is obeyed, even below the floor.
    assert planned_epochs(200, 16, 1.0, 300) == (1.0, "set in the config")
    assert planned_epochs(200, 16, None, 0)[0] == 3


def test_the_default_config_leaves_epochs_to_the_data_with_a_warm_up() -> None:
    cfg = PipelineConfig.model_validate({"data": {"train": "x"}})
    assert cfg.student.epochs is None and cfg.teachers[0].epochs is None
    assert cfg.student.min_steps == DEFAULT_MIN_STEPS == 300
    assert cfg.student.warmup_ratio == 0.1
    auto = parse_config(
        {"data": {"train": "x"}, "student": {"learning_rate": "auto"},
         "teachers": [{"learning_rate": "auto"}]}
    )  # fmt: skip
    assert auto.student.learning_rate == "auto" == auto.teachers[0].learning_rate
    with pytest.raises(ConfigError, match=r"student\.learning_rate"):
        parse_config({"data": {"train": "x"}, "student": {"learning_rate": "fast"}})
    # The online TGT exploration would spend its teacher queries once per rate.
    with pytest.raises(ConfigError, match="'auto' trains the student once per rate"):
        parse_config(
            {"data": {"train": "x"}, "student": {"learning_rate": "auto"},
             "teachers": [{"modality": "text"}],
             "tgt": {"enabled": True, "modes": ["gradient"]}}
        )  # fmt: skip


def test_the_rate_choice_is_accuracy_then_macro_f1_then_the_smaller_rate() -> None:
    dev = {
        1e-4: {"accuracy": 0.8, "macro_f1": 0.7},
        5e-5: {"accuracy": 0.8, "macro_f1": 0.7},
        2e-4: {"accuracy": 0.8, "macro_f1": 0.75},
    }
    assert choose_learning_rate(dev) == 2e-4
    dev[2e-4]["macro_f1"] = 0.7
    assert choose_learning_rate(dev) == 5e-5
    dev[1e-4]["accuracy"] = 0.81
    assert choose_learning_rate(dev) == 1e-4


def _cfg(text_model: Path, image_model: Path, **student: object) -> PipelineConfig:
    return parse_config(
        {
            "seed": 2,
            "device": "cpu",
            "data": {"train": "synthetic"},
            "teachers": [
                {"name": "tiny", "text_model": str(text_model), "image_model": str(image_model),
                 "hidden_size": 32, "batch_size": 16, "learning_rate": 1e-3}
            ],
            "student": {"text_model": str(text_model), "max_length": 16, "batch_size": 16,
                        "min_steps": 12, **student},
        }
    )  # fmt: skip


def _summary(stage_dir: Path) -> dict[str, object]:
    summary: dict[str, object] = json.loads((stage_dir / "stage.json").read_text())["summary"]
    return summary


@pytest.mark.slow
def test_a_teacher_and_a_baseline_record_their_planned_budget(
    tmp_path: Path, tiny_text_model: Path
) -> None:
    cfg = _cfg(tiny_text_model, make_tiny_image_model(tmp_path / "vit"), learning_rate=1e-3)
    data, images = make_keyword_colour_data(tmp_path / "data", SIZES)
    baseline = _summary(train_baseline(cfg, data, tmp_path / "baseline", RunContext()))
    # 48 examples at batch 16: 3 steps an epoch; the floor of 12 steps needs 4 epochs.
    assert baseline["budget"] == {
        "examples": 48,
        "batch_size": 16,
        "epochs": 4.0,
        "epochs_reason": "auto: 48 examples / batch 16 = 3 steps an epoch; 4 epochs for at "
        "least 12 steps",
        "steps": 12,
        "warmup_steps": 1,
        "warmup_ratio": 0.1,
        "learning_rate": 1e-3,
        "learning_rate_reason": "set in the config",
    }
    history = json.loads((tmp_path / "baseline" / "history.json").read_text())
    assert [round(s["lr"], 6) for s in history["steps"][:2]] == [1e-3, round(1e-3 * 10 / 11, 6)]
    teacher_dir = train_teacher(
        cfg, cfg.teachers[0], data, images, tmp_path / "teacher", RunContext()
    )
    teacher = _summary(teacher_dir)["budget"]
    assert isinstance(teacher, dict)
    assert teacher["epochs"] == 4.0 and teacher["steps"] == 12 and teacher["warmup_steps"] == 1


@pytest.mark.slow
def test_learning_rate_auto_keeps_the_best_rate_on_dev_trained_from_the_same_start(
    tmp_path: Path, tiny_text_model: Path
) -> None:
    """Through the student trainer: a baseline per rate, the record lists every rate's dev
    metrics and the choice, and the kept model is what a plain run at the chosen rate
    trains, bit for bit. (Here every rate of the grid is too small for a random-weight
    model, so the first rate wins; the next test sees a later rate win.)"""
    image_model = tmp_path / "vit"  # not read: a baseline has no teacher
    data, _ = make_keyword_colour_data(tmp_path / "data", SIZES, label_noise=0.2)
    auto = _cfg(tiny_text_model, image_model, epochs=2, learning_rate="auto")
    summary = _summary(train_baseline(auto, data, tmp_path / "auto", RunContext()))
    record = summary["budget"]
    assert isinstance(record, dict)
    search = record["learning_rate_search"]
    assert list(search) == [f"{r:g}" for r in AUTO_LEARNING_RATES]
    chosen = choose_learning_rate({float(r): m for r, m in search.items()})
    assert record["learning_rate"] == chosen and record["learning_rate_reason"].startswith("auto")
    dev = summary["dev"]
    assert isinstance(dev, dict)
    assert {k: dev[k] for k in ("accuracy", "macro_f1")} == search[f"{chosen:g}"]
    plain = _cfg(tiny_text_model, image_model, epochs=2, learning_rate=chosen)
    train_baseline(plain, data, tmp_path / "plain", RunContext())
    kept = load_file(tmp_path / "auto" / "model.safetensors")
    alone = load_file(tmp_path / "plain" / "model.safetensors")
    assert kept.keys() == alone.keys()
    for name, tensor in kept.items():
        assert tensor.equal(alone[name]), name
    # The history saved is the chosen run's: the same steps (losses, rates) as the plain run.
    history = json.loads((tmp_path / "auto" / "history.json").read_text())
    plain_history = json.loads((tmp_path / "plain" / "history.json").read_text())
    assert history["steps"] == plain_history["steps"]


def _tiny_task(rate_plan: tuple[float, ...]) -> tuple[nn.Module, dict[str, float], dict]:
    """A dropout MLP on a linearly separable task, fit by ``fit_planned`` over the rates."""
    gen = torch.Generator().manual_seed(0)
    x, dev_x = torch.randn(64, 8, generator=gen), torch.randn(32, 8, generator=gen)
    y, dev_y = (x[:, 0] > 0).long(), (dev_x[:, 0] > 0).long()
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))

    def step_fn(idx: np.ndarray) -> tuple[torch.Tensor, dict[str, float]]:
        return F.cross_entropy(model(x[idx]), y[idx]), {}

    def eval_fn() -> dict[str, float]:
        return accuracy_f1(dev_y.numpy(), model(dev_x).argmax(-1).numpy(), 2)

    plan = TrainingPlan(Budget(64, 16, 3.0, rate_plan[0]), "given", rate_plan)
    runtime = select_runtime("cpu", mixed_precision=False)
    fitted = fit_planned(plan, model, [model], step_fn, eval_fn, runtime, RunContext(),
                         Stage.BASELINE)  # fmt: skip
    return model, fitted.best, fitted.record


def test_every_rate_starts_from_the_same_weights_and_dropout_stream() -> None:
    model, best, record = _tiny_task((1e-4, 1e-2, 1e-1))
    chosen = record["learning_rate"]
    assert chosen != 1e-4, record  # a later rate won: its run started after a restore
    alone, alone_best, _ = _tiny_task((chosen,))
    assert best == alone_best
    for name, tensor in model.state_dict().items():
        assert tensor.equal(alone.state_dict()[name]), name
