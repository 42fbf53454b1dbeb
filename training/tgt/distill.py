"""TGT students: the labelled set (full loss) plus the teacher-labelled generated texts.

The student trains on the concatenation of the labelled training rows and the generated
rows (split "generated", label id -1). Per batch:

    L = CE(y, s) over the labelled rows only
      + mean over all rows of  w_b * (alpha * KD_b + beta * EMB_b),   w_b = 1 (labelled),
                                                                      w_b = tgt.weight (λ)

so λ scales what the generated texts teach, and they never enter the hard-label CE. The
teachers (frozen) label every generated text once, from its text and its image.

Modes (``tgt.modes``; one student each, ``tgt-student-<mode>/``):

- **sampling**: the stage's latent samples around each labelled text (origin "sampling").
- **gradient**: texts explored online, while this student trains, along the gradient of
  KL(teacher || student) in the latent space (training/tgt/online.py).
- **augment**: the masked-LM rewrites with draw < K (a baseline, not TGT).
- **augment-disagreement**: the baseline's pool (K * pool_factor rewrites per text),
  re-ranked before each epoch by KL(teacher || student); the top 1/pool_factor trains
  that epoch. Gradient-free: it needs only forward passes of both models.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from contracts.artifacts import ImageIndex
from contracts.config import PipelineConfig, TgtMode
from contracts.errors import DataError
from contracts.jobs import Stage
from models.text import predict_logits
from training.data.prepare import PreparedData
from training.lugpi.distill import compute_teacher_targets, training_splits
from training.students.losses import teacher_weights
from training.students.train_loop import Runtime, select_runtime
from training.students.trainer import (
    RowSelector,
    StudentOptions,
    TeacherTargets,
    train_text_classifier,
)
from training.tgt.texts import Generated, as_examples
from training.tracking.progress import RunContext


def tgt_data(
    data: PreparedData, images: ImageIndex, rows: list[Generated]
) -> tuple[PreparedData, ImageIndex]:
    """``data`` and ``images`` with the generated texts as the split "generated"."""
    splits = {**data.splits, "generated": as_examples(rows)}
    out_images = dict(images)
    if rows and rows[0].image is not None:
        out_images["generated"] = [Path(str(r.image)) for r in rows]
    return PreparedData(data.labels, data.text_pair, splits), out_images


def _teacher_probs(targets: TeacherTargets, rows: np.ndarray, combine: str) -> torch.Tensor:
    logits = targets.logits[:, rows].float()  # (M, N, k)
    w = teacher_weights(logits, combine)  # type: ignore[arg-type]
    return (w.unsqueeze(-1) * F.softmax(logits, dim=-1)).sum(dim=0)


def disagreement_selector(
    cfg: PipelineConfig,
    data: PreparedData,
    targets: TeacherTargets,
    n_fixed: int,
    pool: np.ndarray,
    n_keep: int,
    runtime: Runtime,
    ctx: RunContext,
) -> RowSelector:
    """Rows 0..n_fixed-1 (labelled) always; of ``pool`` the ``n_keep`` rows on which the
    student's prediction diverges most from the teachers' (KL), recomputed each epoch."""
    texts = data.texts("generated")
    pairs = data.pairs("generated")
    offset = int(pool.min()) if len(pool) else 0
    p_t = _teacher_probs(targets, pool, cfg.distill.combine)

    def select(epoch: int, model: PreTrainedModel, tok: PreTrainedTokenizerBase) -> np.ndarray:
        def tick(done: int, total: int) -> None:
            ctx.step(Stage.DISTILL, done, total, f"tgt: scoring the pool, epoch {epoch + 1}")

        logits = predict_logits(
            model,
            tok,
            [texts[i - offset] for i in pool],
            [pairs[i - offset] for i in pool] if pairs else None,
            max_length=cfg.student.max_length,
            batch_size=cfg.student.batch_size,
            device=runtime.device,
            amp_dtype=runtime.amp_dtype,
            on_batch=tick,
        )
        log_s = F.log_softmax(torch.from_numpy(logits).float(), dim=-1)
        kl = (p_t * (p_t.clamp_min(1e-12).log() - log_s)).sum(-1)
        top = torch.argsort(kl, descending=True, stable=True)[:n_keep].numpy()
        return np.concatenate([np.arange(n_fixed), np.sort(pool[top])])

    return select


def train_tgt_student(
    cfg: PipelineConfig,
    data: PreparedData,
    images: ImageIndex,
    teacher_dirs: list[Path],
    rows: list[Generated],
    mode: TgtMode,
    out_dir: Path,
    ctx: RunContext,
    *,
    token_store: Path | None = None,
) -> Path:
    """Train one TGT student (``mode``) into ``out_dir``: on the stage's rows of its
    origin, or ('gradient') on texts explored while it trains (training/tgt/online.py)."""
    started = time.perf_counter()
    runtime = select_runtime(cfg.device, cfg.mixed_precision)
    if mode == "gradient":
        return _train_online(cfg, data, images, teacher_dirs, out_dir, ctx, runtime, started)
    k = cfg.tgt.k
    if mode == "sampling":
        used = [r for r in rows if r.origin == "sampling"]
    else:
        used = [r for r in rows if r.origin == "augment"]
        used = used if mode == "augment-disagreement" else [r for r in used if r.draw < k]
    if not used:
        raise DataError(
            f"tgt.modes '{mode}': no generated text left after filtering (of {len(rows)}); "
            "raise tgt.k or tgt.max_similarity"
        )
    full, full_images = tgt_data(data, images, used)
    splits = [*training_splits(cfg, data), "generated"]
    targets = compute_teacher_targets(
        cfg, full, full_images, teacher_dirs, splits, runtime, ctx, token_store
    )
    n_fixed = sum(len(full.splits[s]) for s in splits[:-1])
    weight = torch.ones(n_fixed + len(used))
    weight[n_fixed:] = cfg.tgt.weight
    select = None
    n_train = len(used)
    if mode == "augment-disagreement":
        pool = np.arange(n_fixed, n_fixed + len(used))
        n_train = max(1, round(len(used) / cfg.tgt.pool_factor))
        select = disagreement_selector(cfg, full, targets, n_fixed, pool, n_train, runtime, ctx)
    meta: dict[str, object] = {
        "tgt": {
            "mode": mode,
            "weight": cfg.tgt.weight,
            "control": cfg.tgt.control,
            "generated_available": len(used),
            "generated_per_epoch": n_train,
        }
    }
    return train_text_classifier(
        cfg,
        full,
        "student",
        targets,
        splits,
        runtime,
        out_dir,
        ctx,
        started,
        StudentOptions(sample_weight=weight, select_rows=select, extra_meta=meta),
    )


def _train_online(
    cfg: PipelineConfig,
    data: PreparedData,
    images: ImageIndex,
    teacher_dirs: list[Path],
    out_dir: Path,
    ctx: RunContext,
    runtime: Runtime,
    started: float,
) -> Path:
    """The 'gradient' student: the labelled splits, plus texts explored before each epoch
    around labelled texts and labelled by the teachers then. Teacher outputs are cached by
    text under ``<run dir>/tgt-queries/<student dir name>/`` (kept across a restart)."""
    from training.generation.texts import resolve_text_cache
    from training.tgt.online import OnlineExplorer

    splits = training_splits(cfg, data)
    targets = compute_teacher_targets(cfg, data, images, teacher_dirs, splits, runtime, ctx)
    n_fixed = sum(len(data.splits[s]) for s in splits)
    explorer = OnlineExplorer(
        cfg,
        data,
        teacher_dirs,
        n_fixed,
        out_dir.parent / "tgt-queries" / out_dir.name,
        ctx,
        runtime.device,
        resolve_text_cache(cfg, out_dir.parent),
    )
    meta: dict[str, object] = {"tgt": explorer.summary}
    options = StudentOptions(
        sample_weight=torch.ones(n_fixed),
        select_rows=explorer.select_rows,
        add_rows=explorer.add_rows,
        add_rows_every=cfg.tgt.explore_every_steps,
        extra_meta=meta,
    )
    return train_text_classifier(
        cfg, data, "student", targets, splits, runtime, out_dir, ctx, started, options
    )
