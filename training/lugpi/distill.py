"""The distill and baseline stages: the text-only student, with and without its teachers.

Both train ``cfg.student`` with the same architecture, epochs, batch size, learning rate
and seed (same initial weights, same batch order), so the only difference is the loss:
the student uses the LUGPI loss (training/students/losses.py), the baseline plain CE; both
train through the shared student trainer (training/students/trainer.py).

Teachers are frozen, so their logits and embeddings are computed once per training example
before the student's first step (docs/method.md), then the teachers are freed. With
``distill.use_unlabelled`` the "unlabelled" split joins the training set with label id -1:
those examples carry the teachers' soft labels and embedding targets only (Teacher Guided
Training).

Output (an atomic stage directory; transformers ``save_pretrained`` format)::

    student/  config.json  model.safetensors  tokenizer files  lugpi.json  history.json
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from contracts.artifacts import ImageIndex, is_complete
from contracts.config import PipelineConfig
from contracts.errors import ArtifactError
from contracts.jobs import Stage
from models.teacher import AnyTeacher, load_teacher, predict_teacher
from training.data.prepare import PreparedData
from training.lugpi.cross_fit import fold_teacher_dir, folds
from training.students.train_loop import Runtime, select_runtime
from training.students.trainer import TeacherTargets, train_text_classifier
from training.teachers.image_tokens import teacher_image_inputs
from training.teachers.train_teacher import check_images
from training.tracking.progress import RunContext


def training_splits(cfg: PipelineConfig, data: PreparedData) -> list[str]:
    """ "train", and "unlabelled" too when Teacher Guided Training is on and has data."""
    if cfg.distill.use_unlabelled and data.splits.get("unlabelled"):
        return ["train", "unlabelled"]
    return ["train"]


def compute_teacher_targets(
    cfg: PipelineConfig,
    data: PreparedData,
    images: ImageIndex,
    teacher_dirs: list[Path],
    splits: list[str],
    runtime: Runtime,
    ctx: RunContext,
    token_store: Path | None = None,
) -> TeacherTargets:
    """Run each saved teacher once over ``splits`` (concatenated in that order). ``images``
    may lack entries when every teacher is text-only. ``token_store``: frozen image-encoder
    tokens shared with the teacher stage (training/teachers/image_tokens.py)."""
    if not teacher_dirs:
        raise ArtifactError("distill needs at least one teacher directory; run the teacher stage")
    logits, embeddings, names = [], [], []
    for tdir in teacher_dirs:
        teacher, meta = load_teacher(tdir)
        if meta.labels != data.labels or meta.text_pair != data.text_pair:
            raise ArtifactError(
                f"{tdir}: teacher was trained on labels {meta.labels} (text pair: "
                f"{meta.text_pair}) but the data has {data.labels} (text pair: "
                f"{data.text_pair}); retrain the teacher on this data"
            )
        if meta.modality != "text":  # a text-only teacher needs no images
            check_images(data, images, splits)
        teacher.to(runtime.device)
        message = f"teacher {meta.name} outputs"

        def tick(done: int, total: int, message: str = message) -> None:
            ctx.step(Stage.DISTILL, done, total, message)

        def outputs(
            model: AnyTeacher, split: str, idx: np.ndarray | None, max_length: int = meta.max_length
        ) -> tuple[Any, Any]:
            """``model``'s logits and e_T on ``split`` (only its samples ``idx`` if given)."""
            texts, pairs, imgs = data.texts(split), data.pairs(split), images.get(split, [])
            if idx is not None:
                texts = [texts[j] for j in idx]
                pairs = [pairs[j] for j in idx] if pairs is not None else None
                imgs = [imgs[j] for j in idx] if imgs else []
            return predict_teacher(
                model,
                texts,
                pairs,
                teacher_image_inputs(model, imgs, runtime, cfg.student.batch_size, token_store),
                max_length=max_length,
                batch_size=cfg.student.batch_size,
                device=runtime.device,
                amp_dtype=runtime.amp_dtype,
                on_batch=tick,
            )

        k = cfg.distill.cross_fit_folds
        parts = []
        for s in splits:
            if s != "train" or k < 2:
                parts.append(outputs(teacher, s, None))
                continue
            # Cross-fitting: fold i's targets from the fold teacher that never saw fold i.
            n = len(data.splits["train"])
            fold_logits = np.zeros((n, len(data.labels)), np.float32)
            fold_embs: np.ndarray | None = None
            for i, held_out in enumerate(folds(n, k, cfg.seed)):
                fold_dir = fold_teacher_dir(tdir, i, k)
                if not is_complete(fold_dir):
                    raise ArtifactError(
                        f"distill.cross_fit_folds is {k} but fold teacher {fold_dir} is "
                        "missing; run the teacher stage with this config"
                    )
                fold_teacher, _ = load_teacher(fold_dir)
                fold_teacher.to(runtime.device)
                lo, emb = outputs(fold_teacher, "train", held_out)
                del fold_teacher
                if fold_embs is None:
                    fold_embs = np.zeros((n, emb.shape[1]), np.float32)
                fold_logits[held_out], fold_embs[held_out] = lo, emb
            parts.append((fold_logits, fold_embs))
        logits.append(torch.from_numpy(np.concatenate([p[0] for p in parts])))
        embeddings.append(torch.from_numpy(np.concatenate([p[1] for p in parts])))
        names.append(meta.name)
        del teacher  # only its outputs are needed from here on
    return TeacherTargets(torch.stack(logits), embeddings, names)


def distill_student(
    cfg: PipelineConfig,
    data: PreparedData,
    images: ImageIndex,
    teacher_dirs: list[Path],
    out_dir: Path,
    ctx: RunContext,
    *,
    token_store: Path | None = None,
) -> Path:
    """Train the text-only student with the LUGPI loss against the saved teachers."""
    started = time.perf_counter()
    runtime = select_runtime(cfg.device, cfg.mixed_precision)
    splits = training_splits(cfg, data)
    # The teachers' outputs (one forward pass) are a small part of the stage; training the rest.
    with ctx.part(0.0, TARGETS_SHARE):
        targets = compute_teacher_targets(
            cfg, data, images, teacher_dirs, splits, runtime, ctx, token_store
        )
    with ctx.part(TARGETS_SHARE, 1.0):
        return train_text_classifier(
            cfg, data, "student", targets, splits, runtime, out_dir, ctx, started
        )


# The share of a distillation stage (job progress) spent on the teachers' outputs.
TARGETS_SHARE = 0.15


def train_baseline(cfg: PipelineConfig, data: PreparedData, out_dir: Path, ctx: RunContext) -> Path:
    """Train the same student architecture on the labelled train split with CE only."""
    started = time.perf_counter()
    runtime = select_runtime(cfg.device, cfg.mixed_precision)
    return train_text_classifier(
        cfg, data, "baseline", None, ["train"], runtime, out_dir, ctx, started
    )
