"""The distill and baseline stages: the text-only student, with and without its teachers.

Both train ``cfg.student`` with the same architecture, epochs, batch size, learning rate
and seed (same initial weights, same batch order), so the only difference is the loss:
the student uses the LUGPI loss (training/losses.py), the baseline plain CE.

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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from contracts.artifacts import (
    STUDENT_META,
    ImageIndex,
    TextModelMeta,
    atomic_dir,
    is_complete,
    write_json_atomic,
    write_stage_record,
)
from contracts.config import PipelineConfig
from contracts.errors import ArtifactError
from contracts.jobs import Stage
from models.teacher import Teacher, load_teacher, predict_teacher
from models.text import (
    ClassifierInput,
    embedding_width,
    encode,
    load_student,
    load_tokenizer,
    predict_logits,
)
from runtime.metrics import accuracy_f1
from training import distributed
from training.cross_fit import fold_teacher_dir, folds
from training.data import PreparedData
from training.image_tokens import teacher_image_inputs
from training.losses import UNLABELLED, hard_cross_entropy, lugpi_loss
from training.progress import RunContext
from training.train_loop import Budget, Runtime, fit, seed_everything, select_runtime
from training.train_teacher import check_images


@dataclass
class TeacherTargets:
    """Frozen teachers' outputs on the student's training examples."""

    logits: Tensor  # (M, N, k)
    embeddings: list[Tensor]  # M tensors (N, D_i)
    names: list[str]
    # (M, N) per-sample teacher weights fixed in advance (the data-free amalgamation's
    # layer-wise ones); None: distill.combine computes them from the logits.
    weights: Tensor | None = None


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
    tokens shared with the teacher stage (training/image_tokens.py)."""
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
            model: Teacher, split: str, idx: np.ndarray | None, max_length: int = meta.max_length
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


def loss_record(cfg: PipelineConfig) -> dict[str, object]:
    """The loss a student was trained with, as its stage record and bundle provenance say it."""
    d = cfg.distill
    return {
        "alpha": d.alpha,
        "beta": d.beta,
        "tau": d.tau,
        "kd_form": d.kd_form,
        "embedding_loss": d.embedding_loss,
        "combine": d.combine,
        "use_unlabelled": d.use_unlabelled,
    }


# Splits whose examples carry no label: the teachers' targets only (KD terms).
UNLABELLED_SPLITS = ("unlabelled", "generated")
# (epoch, model, tokenizer) -> the rows (into the concatenated splits) that train this epoch.
RowSelector = Callable[[int, PreTrainedModel, PreTrainedTokenizerBase], np.ndarray]


def _label_ids(data: PreparedData, splits: list[str]) -> Tensor:
    """Label ids of ``splits`` concatenated; unlabelled examples get ``UNLABELLED``."""
    ids: list[int] = []
    for s in splits:
        unlabelled = s in UNLABELLED_SPLITS
        ids += [UNLABELLED] * len(data.splits[s]) if unlabelled else data.label_ids(s)
    return torch.tensor(ids, dtype=torch.long)


def _train_text_classifier(
    cfg: PipelineConfig,
    data: PreparedData,
    kind: Literal["student", "baseline"],
    targets: TeacherTargets | None,
    splits: list[str],
    runtime: Runtime,
    out_dir: Path,
    ctx: RunContext,
    started: float,
    *,
    sample_weight: Tensor | None = None,
    select_rows: RowSelector | None = None,
    extra_meta: dict[str, object] | None = None,
) -> Path:
    """``sample_weight``: per row of the concatenated splits, its weight in the KD terms.
    ``select_rows``: which rows train in each epoch (always as many); default all."""
    scfg, dcfg = cfg.student, cfg.distill
    stage = Stage.DISTILL if kind == "student" else Stage.BASELINE
    # Seed, then build the student first: student and baseline start from the same weights.
    seed_everything(cfg.seed)
    model = load_student(scfg.text_model, data.labels, runtime.device)
    tokenizer = load_tokenizer(scfg.text_model)
    texts = [t for s in splits for t in data.texts(s)]
    pairs = [p for s in splits for p in (data.pairs(s) or [])] if data.text_pair else None
    y = _label_ids(data, splits)
    capture = ClassifierInput(model)
    projections = nn.ModuleList()
    if targets is not None and dcfg.beta > 0:
        # e_S -> each teacher's e_T width; part of the loss, never of the exported student.
        d_s = embedding_width(model)
        for e_t in targets.embeddings:
            d_t = e_t.shape[1]
            projections.append(nn.Linear(d_s, d_t) if d_t != d_s else nn.Identity())
        projections.to(runtime.device)
    torch.manual_seed(cfg.seed + 1)  # same dropout stream with or without projections
    active = [np.arange(len(texts)) if select_rows is None else select_rows(0, model, tokenizer)]

    def on_epoch(epoch: int) -> None:
        if select_rows is not None and epoch > 0:
            rows = select_rows(epoch, model, tokenizer)
            assert len(rows) == len(active[0]), "select_rows must keep the epoch size"
            active[0] = rows

    def step_fn(batch: np.ndarray) -> tuple[Tensor, dict[str, float]]:
        idx = active[0][batch]
        enc = encode(
            tokenizer,
            [texts[i] for i in idx],
            [pairs[i] for i in idx] if pairs else None,
            scfg.max_length,
        )
        logits = model(**{k: v.to(runtime.device) for k, v in enc.items()}).logits
        e_s = capture.pop()
        labels = y[idx].to(runtime.device)
        if targets is None:
            ce = hard_cross_entropy(logits.float(), labels)
            return ce, {"ce": ce.item()}
        terms = lugpi_loss(
            logits,
            labels,
            [p(e_s.float()) for p in projections],
            targets.logits[:, idx].to(runtime.device),
            [e[idx].to(runtime.device) for e in targets.embeddings],
            alpha=dcfg.alpha,
            beta=dcfg.beta,
            tau=dcfg.tau,
            combine=dcfg.combine,
            kd_form=dcfg.kd_form,
            embedding_loss=dcfg.embedding_loss,
            sample_weight=None if sample_weight is None else sample_weight[idx].to(runtime.device),
            weights=None if targets.weights is None else targets.weights[:, idx],
        )
        parts = {"ce": terms.ce.item(), "kd": terms.kd.item(), "emb": terms.emb.item()}
        return terms.total, parts

    y_dev = np.asarray(data.label_ids("dev"))

    def eval_fn() -> dict[str, float]:
        logits = predict_logits(
            model,
            tokenizer,
            data.texts("dev"),
            data.pairs("dev"),
            max_length=scfg.max_length,
            batch_size=scfg.batch_size,
            device=runtime.device,
            amp_dtype=runtime.amp_dtype,
        )
        return accuracy_f1(y_dev, logits.argmax(-1), len(data.labels))

    budget = Budget(
        n_examples=len(active[0]),
        batch_size=scfg.batch_size,
        epochs=scfg.epochs,
        learning_rate=scfg.learning_rate,
        weight_decay=scfg.weight_decay,
        warmup_ratio=scfg.warmup_ratio,
        seed=cfg.seed,
    )
    history, best = fit(
        model, [model, projections], step_fn, eval_fn, budget, runtime, ctx, stage, on_epoch
    )
    capture.remove()
    meta = TextModelMeta.model_validate(
        {
            "kind": kind,
            "labels": data.labels,
            "max_length": scfg.max_length,
            "text_pair": data.text_pair,
            "base_model": scfg.text_model,
            "metrics": {"dev": best},
            # Extra fields (TextModelMeta allows them): provenance for the bundle.
            "teachers": targets.names if targets is not None else [],
            "loss": loss_record(cfg) if kind == "student" else {"alpha": 0.0, "beta": 0.0},
            "train_examples": {s: len(data.splits[s]) for s in splits},
            **(extra_meta or {}),
        }
    )
    summary: dict[str, object] = {
        "dev": best,
        "best_epoch": history.best_epoch,
        "train_seconds": history.train_seconds,
        "processes": runtime.world.size,
        **(extra_meta or {}),
    }
    if kind == "student":
        summary["teachers"] = targets.names if targets is not None else []
        summary["loss"] = loss_record(cfg)

    def save() -> None:  # once, by rank 0 under torchrun (every rank holds the same weights)
        with atomic_dir(out_dir, stage.value) as tmp:
            model.cpu().save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            write_json_atomic(tmp / STUDENT_META, meta.model_dump(mode="json"))
            history.save(tmp / "history.json")
            write_stage_record(tmp, stage, time.perf_counter() - started, summary)

    distributed.on_main(save)
    return out_dir


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
        return _train_text_classifier(
            cfg, data, "student", targets, splits, runtime, out_dir, ctx, started
        )


# The share of a distillation stage (job progress) spent on the teachers' outputs.
TARGETS_SHARE = 0.15


def train_baseline(cfg: PipelineConfig, data: PreparedData, out_dir: Path, ctx: RunContext) -> Path:
    """Train the same student architecture on the labelled train split with CE only."""
    started = time.perf_counter()
    runtime = select_runtime(cfg.device, cfg.mixed_precision)
    return _train_text_classifier(
        cfg, data, "baseline", None, ["train"], runtime, out_dir, ctx, started
    )
