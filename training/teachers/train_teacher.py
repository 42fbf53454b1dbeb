"""The teacher stage: train one multimodal teacher (text + generated image) with CE, or
one of its controls (``modality`` 'image': image only; 'text': text only, no images).

Output (an atomic stage directory)::

    teacher-<name>/  model.safetensors  teacher.json  text_encoder/  image_encoder/
                     metrics.json  history.json  stage.json

(``text_encoder/`` or ``image_encoder/`` is absent when the teacher lacks that modality.)

With ``freeze_image_encoder`` the encoder's tokens are computed once per distinct image
file (or read from the token store, training/teachers/image_tokens.py) and held in memory for the
run, so each step only runs the text encoder and the fusion head.

TeacherConfig has no max_length, weight decay, warmup or step floor of its own: the teacher
reads the same texts as the student, so it takes those from ``cfg.student``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from contracts.artifacts import (
    ImageIndex,
    atomic_dir,
    write_json_atomic,
    write_stage_record,
)
from contracts.config import PipelineConfig, TeacherConfig
from contracts.errors import ArtifactError
from contracts.jobs import Stage
from models.image import load_image_encoder
from models.teacher import (
    Teacher,
    TeacherMeta,
    pixel_inputs,
    predict_teacher,
    save_teacher,
)
from models.text import encode, load_text_encoder, load_tokenizer, text_encoder_width
from runtime.metrics import accuracy_f1
from training import distributed
from training.data.prepare import PreparedData
from training.students.budget import fit_planned, plan_training
from training.students.train_loop import seed_everything, select_runtime
from training.teachers.image_tokens import TokenCache
from training.tracking.progress import RunContext

# The share of a teacher's stage (job progress) spent computing its image tokens.
TOKENS_SHARE = 0.15


def check_images(data: PreparedData, images: ImageIndex, splits: Sequence[str]) -> None:
    """Each split needs one image path per example, in the same order."""
    for split in splits:
        n_img, n_ex = len(images.get(split, [])), len(data.splits.get(split, []))
        if n_img != n_ex:
            raise ArtifactError(
                f"image index has {n_img} images for split {split!r} but the data has {n_ex} "
                "examples; rerun the generate stage on this data"
            )


def build_teacher(tcfg: TeacherConfig, num_labels: int) -> Teacher:
    """Pretrained encoders for the modalities the teacher reads; fresh fusion block and MLP."""
    reads_text, reads_images = tcfg.modality != "image", tcfg.modality != "text"
    return Teacher(
        load_text_encoder(tcfg.text_model) if reads_text else None,
        load_image_encoder(tcfg.image_model) if reads_images else None,
        load_tokenizer(tcfg.text_model) if reads_text else None,
        num_labels=num_labels,
        fusion_heads=tcfg.fusion_heads,
        hidden_size=tcfg.hidden_size,
        freeze_image_encoder=tcfg.freeze_image_encoder,
        # Image-only: keep the multimodal teacher's fusion width (the text model's).
        width=None if reads_text else text_encoder_width(tcfg.text_model),
    )


def train_teacher(
    cfg: PipelineConfig,
    teacher: TeacherConfig,
    data: PreparedData,
    images: ImageIndex,
    out_dir: Path,
    ctx: RunContext,
    *,
    token_store: Path | None = None,
) -> Path:
    """Train one teacher on data.splits["train"] (+ their images unless it reads text only);
    keep the best dev epoch. A text-only teacher needs no image index entries at all.
    ``token_store``: where frozen image-encoder tokens are kept across stages and runs."""
    started = time.perf_counter()
    reads_images = teacher.modality != "text"
    if reads_images:
        check_images(data, images, ("train", "dev"))
    runtime = select_runtime(cfg.device, cfg.mixed_precision)
    seed_everything(cfg.seed)
    model = build_teacher(teacher, len(data.labels)).to(runtime.device)
    max_length = cfg.student.max_length
    texts, pairs = data.texts("train"), data.pairs("train")
    y = torch.tensor(data.label_ids("train"), dtype=torch.long)
    y_dev = np.asarray(data.label_ids("dev"))
    cache_seconds = 0.0
    if reads_images and teacher.freeze_image_encoder:
        with ctx.part(0.0, TOKENS_SHARE):  # job progress: one pass, then the training steps
            cache = TokenCache(
                model,
                images["train"] + images["dev"],
                runtime,
                teacher.batch_size,
                on_batch=lambda d, t: ctx.step(Stage.TEACHER, d, t, "image tokens"),
                store=token_store,
            )
        train_images, dev_images = cache.inputs(images["train"]), cache.inputs(images["dev"])
        cache_seconds = cache.seconds
    else:  # pixels per batch; for a text-only teacher these inputs are empty
        train_images = pixel_inputs(model, images.get("train", []))
        dev_images = pixel_inputs(model, images.get("dev", []))

    def step_fn(idx: np.ndarray) -> tuple[Tensor, dict[str, float]]:
        text = None
        if model.tokenizer is not None:  # an image-only model reads no text
            enc = encode(
                model.tokenizer,
                [texts[i] for i in idx],
                [pairs[i] for i in idx] if pairs is not None else None,
                max_length,
            )
            text = {k: v.to(runtime.device) for k, v in enc.items()}
        image = {k: v.to(runtime.device) for k, v in train_images(idx.tolist()).items()}
        out = model(text, **image)
        loss = F.cross_entropy(out.logits.float(), y[idx].to(runtime.device))
        return loss, {}

    def eval_fn() -> dict[str, float]:
        logits, _ = predict_teacher(
            model,
            data.texts("dev"),
            data.pairs("dev"),
            dev_images,
            max_length=max_length,
            batch_size=teacher.batch_size,
            device=runtime.device,
            amp_dtype=runtime.amp_dtype,
        )
        return accuracy_f1(y_dev, logits.argmax(-1), len(data.labels))

    plan = plan_training(
        len(texts),
        teacher.batch_size,
        teacher.epochs,
        teacher.learning_rate,
        min_steps=cfg.student.min_steps,
        warmup_ratio=cfg.student.warmup_ratio,
        weight_decay=cfg.student.weight_decay,
        seed=cfg.seed,
    )
    with ctx.part(TOKENS_SHARE if reads_images and teacher.freeze_image_encoder else 0.0, 1.0):
        fitted = fit_planned(plan, model, [model], step_fn, eval_fn, runtime, ctx, Stage.TEACHER)
    history, best = fitted.history, fitted.best
    meta = TeacherMeta(
        name=teacher.name,
        modality=teacher.modality,
        text_model=teacher.text_model,
        image_model=teacher.image_model,
        labels=data.labels,
        text_pair=data.text_pair,
        max_length=max_length,
        text_width=int(model.text_encoder.config.hidden_size) if model.text_encoder else None,
        image_width=model.image_encoder.width if model.image_encoder else None,
        fusion_width=model.width,
        fusion_heads=teacher.fusion_heads,
        hidden_size=teacher.hidden_size,
        freeze_image_encoder=teacher.freeze_image_encoder,
    )
    metrics = {
        "dev": best,
        "budget": fitted.record,
        "train_examples": len(data.splits["train"]),
        "best_epoch": history.best_epoch,
        "train_seconds": history.train_seconds,
        "image_token_cache_seconds": cache_seconds,
        "processes": runtime.world.size,
    }

    def save() -> None:  # once, by rank 0 under torchrun (every rank holds the same weights)
        with atomic_dir(out_dir, Stage.TEACHER.value) as tmp:
            save_teacher(model.cpu(), meta, tmp)
            write_json_atomic(tmp / "metrics.json", metrics)
            history.save(tmp / "history.json")
            write_stage_record(tmp, Stage.TEACHER, time.perf_counter() - started, metrics)

    distributed.on_main(save)
    return out_dir
