"""Cross-fitted teacher targets (``distill.cross_fit_folds = k``).

A teacher that has fit its training set gives near one-hot soft labels on it, which is
where distillation carries least. With cross-fitting the training split is cut into k
seeded folds; for every teacher, k more teachers are trained, fold teacher i on the
training set without fold i, and the student's targets on fold i come from fold teacher i:
from a model that never saw those samples. The teacher trained on everything is still the
one evaluated, and it labels any unlabelled texts (Teacher Guided Training).

Fold teachers are stage directories of their own, beside their teacher's::

    teacher-<name>.fold<i>of<k>/

(``.`` cannot occur in a teacher name, so these never collide with another teacher.)
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from contracts.artifacts import ImageIndex, is_complete
from contracts.config import PipelineConfig, TeacherConfig
from training.data.prepare import PreparedData
from training.teachers.train_teacher import train_teacher
from training.tracking.progress import RunContext


def folds(n: int, k: int, seed: int) -> list[np.ndarray]:
    """k disjoint, sorted index arrays covering range(n), sizes differing by at most one."""
    order = np.random.default_rng([seed, k]).permutation(n)
    return [np.sort(order[i::k]) for i in range(k)]


def fold_teacher_dir(teacher_dir: Path, i: int, k: int) -> Path:
    return teacher_dir.with_name(f"{teacher_dir.name}.fold{i}of{k}")


def without_fold(
    data: PreparedData, images: ImageIndex, held_out: np.ndarray
) -> tuple[PreparedData, ImageIndex]:
    """The data and image index with the ``held_out`` training samples removed (dev, test
    and every other split unchanged), for training fold teacher i."""
    drop = set(held_out.tolist())
    keep = [j for j in range(len(data.splits["train"])) if j not in drop]
    splits = {**data.splits, "train": [data.splits["train"][j] for j in keep]}
    kept_images = dict(images)
    if "train" in images:
        kept_images["train"] = [images["train"][j] for j in keep]
    return replace(data, splits=splits), kept_images


def train_fold_teachers(
    cfg: PipelineConfig,
    teacher: TeacherConfig,
    data: PreparedData,
    images: ImageIndex,
    teacher_dir: Path,
    ctx: RunContext,
    *,
    token_store: Path | None = None,
) -> list[Path]:
    """Train (or find complete) the k fold teachers of ``teacher``; return their dirs."""
    k = cfg.distill.cross_fit_folds
    out = []
    for i in range(k):
        fold_dir = fold_teacher_dir(teacher_dir, i, k)
        if not is_complete(fold_dir):
            train_fold_teacher(cfg, teacher, data, images, teacher_dir, i, ctx, token_store)
        out.append(fold_dir)
    return out


def train_fold_teacher(
    cfg: PipelineConfig,
    teacher: TeacherConfig,
    data: PreparedData,
    images: ImageIndex,
    teacher_dir: Path,
    i: int,
    ctx: RunContext,
    token_store: Path | None = None,
) -> Path:
    """Train fold teacher ``i`` of ``teacher`` (every training sample but fold i's)."""
    k = cfg.distill.cross_fit_folds
    held_out = folds(len(data.splits["train"]), k, cfg.seed)[i]
    fold_data, fold_images = without_fold(data, images, held_out)
    fold_dir = fold_teacher_dir(teacher_dir, i, k)
    store = token_store
    return train_teacher(cfg, teacher, fold_data, fold_images, fold_dir, ctx, token_store=store)
