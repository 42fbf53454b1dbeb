"""Cross-fitted teacher targets, with tiny RANDOM-weight models (a 2-layer BERT, a ViT)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from contracts.config import parse_config
from contracts.errors import ArtifactError, ConfigError
from models.teacher import load_teacher, predict_teacher
from models.tiny import make_tiny_image_model
from tests.training.method_fixture import make_privileged_image_task
from training.lugpi.cross_fit import fold_teacher_dir, folds, train_fold_teachers, without_fold
from training.lugpi.distill import compute_teacher_targets
from training.students.train_loop import select_runtime
from training.teachers.image_tokens import teacher_image_inputs
from training.teachers.train_teacher import train_teacher
from training.tracking.progress import RunContext


def test_folds_partition_the_training_set_and_are_seeded() -> None:
    parts = folds(11, 3, seed=0)
    assert sorted(np.concatenate(parts).tolist()) == list(range(11))
    assert sorted(len(p) for p in parts) == [3, 4, 4]
    assert all((a == b).all() for a, b in zip(parts, folds(11, 3, seed=0), strict=True))
    assert any((a != b).any() for a, b in zip(parts, folds(11, 3, seed=1), strict=True))


def test_without_fold_drops_the_held_out_samples_and_their_images(tmp_path: Path) -> None:
    data, images = make_privileged_image_task(
        tmp_path, {"train": 6, "dev": 2}, seed=0, label_noise=0.0, informative_images=True
    )
    kept, kept_images = without_fold(data, images, np.array([1, 4]))
    assert kept.splits["train"] == [data.splits["train"][j] for j in (0, 2, 3, 5)]
    assert kept_images["train"] == [images["train"][j] for j in (0, 2, 3, 5)]
    assert kept.splits["dev"] == data.splits["dev"] and kept_images["dev"] == images["dev"]


def test_cross_fit_folds_of_one_is_refused() -> None:
    with pytest.raises(ConfigError, match="cross_fit_folds"):
        parse_config({"data": {"train": "x.jsonl"}, "distill": {"cross_fit_folds": 1}})


@pytest.mark.slow
def test_each_fold_is_labelled_by_the_teacher_that_did_not_see_it_random(
    tmp_path: Path, tiny_text_model: Path
) -> None:
    image_model = make_tiny_image_model(tmp_path / "tiny-vit-random")
    teacher = {"name": "tiny", "text_model": str(tiny_text_model), "image_model": str(image_model),
               "hidden_size": 48, "epochs": 1, "batch_size": 16, "learning_rate": 1e-3}  # fmt: skip
    cfg = parse_config(
        {
            "seed": 1,
            "device": "cpu",
            "data": {"train": "synthetic"},
            "teachers": [teacher],
            "student": {"text_model": str(tiny_text_model), "max_length": 16, "batch_size": 16},
            "distill": {"cross_fit_folds": 2},
        }
    )
    data, images = make_privileged_image_task(
        tmp_path / "data", {"train": 24, "dev": 8}, seed=0, label_noise=0.2, informative_images=True
    )
    ctx, runtime = RunContext(), select_runtime("cpu", False)
    full = train_teacher(cfg, cfg.teachers[0], data, images, tmp_path / "teacher-tiny", ctx)
    with pytest.raises(ArtifactError, match=r"fold teacher .*fold0of2 is missing"):
        compute_teacher_targets(cfg, data, images, [full], ["train"], runtime, ctx)
    fold_dirs = train_fold_teachers(cfg, cfg.teachers[0], data, images, full, ctx)
    assert fold_dirs == [fold_teacher_dir(full, i, 2) for i in range(2)]
    targets = compute_teacher_targets(cfg, data, images, [full], ["train"], runtime, ctx)
    texts = data.texts("train")
    for i, held_out in enumerate(folds(24, 2, cfg.seed)):
        model, meta = load_teacher(fold_dirs[i])
        assert meta.name == "tiny"
        logits, emb = predict_teacher(
            model,
            [texts[j] for j in held_out],
            None,
            teacher_image_inputs(model, [images["train"][j] for j in held_out], runtime, 16, None),
            max_length=meta.max_length,
            batch_size=16,
            device=torch.device("cpu"),
        )
        np.testing.assert_allclose(targets.logits[0, held_out].numpy(), logits, atol=1e-5)
        np.testing.assert_allclose(targets.embeddings[0][held_out].numpy(), emb, atol=1e-5)
    # Not the full teacher's outputs: that one saw every training sample.
    plain = cfg.model_copy(
        update={"distill": cfg.distill.model_copy(update={"cross_fit_folds": 0})}
    )
    own = compute_teacher_targets(plain, data, images, [full], ["train"], runtime, ctx)
    assert not torch.allclose(own.logits, targets.logits)
