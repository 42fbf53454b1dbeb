"""The one way a text-classifier student is trained, whatever the method.

LUGPI's distill and baseline stages (training/lugpi/distill.py), TGT's student
(training/tgt/distill.py) and StrataNet's (training/strata/mode.py) all call
``train_text_classifier``; what differs between them is the ``TeacherTargets`` they pass and
the few hooks in ``StudentOptions``. A new method trains its student here too
(docs/adding-a-method.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from contracts.artifacts import (
    STUDENT_META,
    TextModelMeta,
    atomic_dir,
    write_json_atomic,
    write_stage_record,
)
from contracts.config import PipelineConfig
from contracts.jobs import Stage
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
from training.data.prepare import PreparedData
from training.students.budget import fit_planned, plan_training
from training.students.losses import UNLABELLED, hard_cross_entropy, lugpi_loss
from training.students.train_loop import Runtime, seed_everything
from training.tracking.progress import RunContext


@dataclass
class TeacherTargets:
    """Frozen teachers' outputs on the student's training examples."""

    logits: Tensor  # (M, N, k)
    embeddings: list[Tensor]  # M tensors (N, D_i)
    names: list[str]
    # (M, N) per-sample teacher weights fixed in advance (the data-free amalgamation's
    # layer-wise ones); None: distill.combine computes them from the logits.
    weights: Tensor | None = None


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


@dataclass(frozen=True)
class AddedRows:
    """Unlabelled rows a method adds while the student trains, with the teachers' targets
    on them (TGT's online exploration: new texts the teachers labelled on the fly)."""

    texts: list[str]
    pairs: list[str] | None  # the second texts, when the data are text pairs
    logits: Tensor  # (M, n, k) the teachers' logits
    embeddings: list[Tensor]  # M tensors (n, D_i)
    weight: float = 1.0  # their weight in the KD terms (as ``sample_weight``)


# (epoch, model, tokenizer, batch rows) -> rows to append; called with gradients enabled
# (a search may differentiate through the student) and the student in eval mode. The last
# argument is None before an epoch, or the rows of the batch about to train mid-epoch.
RowAdder = Callable[
    [int, PreTrainedModel, PreTrainedTokenizerBase, np.ndarray | None], AddedRows | None
]


def _label_ids(data: PreparedData, splits: list[str]) -> Tensor:
    """Label ids of ``splits`` concatenated; unlabelled examples get ``UNLABELLED``."""
    ids: list[int] = []
    for s in splits:
        unlabelled = s in UNLABELLED_SPLITS
        ids += [UNLABELLED] * len(data.splits[s]) if unlabelled else data.label_ids(s)
    return torch.tensor(ids, dtype=torch.long)


@dataclass(frozen=True)
class StudentOptions:
    """What a method may change about how its student trains, in one place.

    Every default trains the plain way: all rows of ``splits`` every epoch, each row's KD
    terms weighted alike, nothing added to the student's provenance. A method that needs
    more adds a field here (with a default that changes nothing), not a parameter.
    """

    # Per row of the concatenated splits: its weight in the KD terms (TGT: a generated
    # text's weight from the teachers' confidence). None: every row weighs 1.
    sample_weight: Tensor | None = None
    # Which rows train in each epoch, always as many (TGT: a fresh share of the generated
    # texts per epoch). None: every row, every epoch.
    select_rows: RowSelector | None = None
    # Before each epoch (the first included): new unlabelled rows and their teacher targets,
    # appended after every existing row; ``select_rows`` then chooses among all of them.
    # None: the rows are fixed. Needs ``targets`` without fixed per-sample weights.
    add_rows: RowAdder | None = None
    # 0: ``add_rows`` runs before each epoch. N > 0: before every N-th training step
    # instead (with that step's batch rows), and ``select_rows`` re-chooses the rows of the
    # epoch's remaining batches, so what it adds trains in the same epoch.
    add_rows_every: int = 0
    # Written into the student's lugpi.json and stage record (TGT's generation summary,
    # StrataNet's teachers and union labels): the bundle's provenance reads it from there.
    # Read when the student is saved, so a hook may fill it in while the student trains.
    extra_meta: Mapping[str, object] = field(default_factory=dict)
    # The stage the student is recorded and reported under. None: distill for a student,
    # baseline for a baseline.
    stage: Stage | None = None
    # A term added to the loss from the student's hidden states (StrataNet's block-wise
    # transfer, training/strata/blocks.py): a module called as
    # ``aux_loss(hidden_states, attention_mask, rows)`` -> a scalar, whose parameters train
    # with the student (never exported). Rows index the concatenated ``splits``; it cannot
    # be combined with ``add_rows``. None: no such term.
    aux_loss: nn.Module | None = None


def train_text_classifier(
    cfg: PipelineConfig,
    data: PreparedData,
    kind: Literal["student", "baseline"],
    targets: TeacherTargets | None,
    splits: list[str],
    runtime: Runtime,
    out_dir: Path,
    ctx: RunContext,
    started: float,
    options: StudentOptions | None = None,
) -> Path:
    """Train ``cfg.student`` on ``splits`` of ``data`` and save it to ``out_dir`` (a student
    directory: transformers files, lugpi.json, history.json, stage.json).

    ``kind`` "student" learns from ``targets`` with the KD loss of ``cfg.distill`` (plus
    cross-entropy on the labelled rows); "baseline" (``targets`` None) from the labels alone.
    Both start from the same seeded weights and batch order. ``started``: when the stage
    began (``time.perf_counter()``), for the stage record. ``options``: the method's hooks.
    """
    opts = options or StudentOptions()
    sample_weight, select_rows = opts.sample_weight, opts.select_rows
    scfg, dcfg = cfg.student, cfg.distill
    stage = opts.stage or (Stage.DISTILL if kind == "student" else Stage.BASELINE)
    # Seed, then build the student first: student and baseline start from the same weights.
    seed_everything(cfg.seed)
    model = load_student(scfg.text_model, data.labels, runtime.device)
    tokenizer = load_tokenizer(scfg.text_model)
    texts = [t for s in splits for t in data.texts(s)]
    pairs = [p for s in splits for p in (data.pairs(s) or [])] if data.text_pair else None
    y = _label_ids(data, splits)
    capture = ClassifierInput(model)
    projections = nn.ModuleList()
    # Teachers without embeddings (a text classifier as teacher, e.g. self-distillation)
    # give no embedding term: the loss is CE + KD.
    beta = dcfg.beta if targets is not None and targets.embeddings else 0.0
    if targets is not None and beta > 0:
        # e_S -> each teacher's e_T width; part of the loss, never of the exported student.
        d_s = embedding_width(model)
        for e_t in targets.embeddings:
            d_t = e_t.shape[1]
            projections.append(nn.Linear(d_s, d_t) if d_t != d_s else nn.Identity())
        projections.to(runtime.device)
    aux = opts.aux_loss
    if aux is not None:
        assert opts.add_rows is None, "aux_loss indexes fixed rows; add_rows would move them"
        aux.to(runtime.device)
    torch.manual_seed(cfg.seed + 1)  # same dropout stream with or without projections
    active = [np.arange(len(texts)) if select_rows is None else select_rows(0, model, tokenizer)]

    def add_rows(epoch: int, around: np.ndarray | None) -> bool:
        if opts.add_rows is None:
            return False
        assert targets is not None and targets.weights is None, "add_rows needs KD targets"
        nonlocal sample_weight, y
        was_training = model.training
        model.eval()
        try:
            with torch.enable_grad():
                added = opts.add_rows(epoch, model, tokenizer, around)
        finally:
            model.train(was_training)
        if added is None or not added.texts:
            return True
        n = len(added.texts)
        texts.extend(added.texts)
        if pairs is not None:
            pairs.extend(added.pairs or [""] * n)
        y = torch.cat([y, torch.full((n,), UNLABELLED, dtype=y.dtype)])
        targets.logits = torch.cat([targets.logits, added.logits.to(targets.logits)], dim=1)
        targets.embeddings = [
            torch.cat([e, a.to(e)])
            for e, a in zip(targets.embeddings, added.embeddings, strict=True)
        ]
        if sample_weight is not None:
            sample_weight = torch.cat([sample_weight, torch.full((n,), added.weight)])
        return True

    def reselect(epoch: int) -> None:
        assert select_rows is not None
        rows = select_rows(epoch, model, tokenizer)
        assert len(rows) == len(active[0]), "select_rows must keep the epoch size"
        active[0] = rows

    clock = {"epoch": 0, "steps": 0}  # for add_rows_every

    first_rows = active[0]

    def on_epoch(epoch: int) -> None:
        clock["epoch"] = epoch
        added = add_rows(epoch, None) if not opts.add_rows_every else False
        if select_rows is not None and (epoch > 0 or added):
            reselect(epoch)
        elif epoch == 0:  # a learning-rate search starts every rate on the same rows
            active[0] = first_rows

    def step_fn(batch: np.ndarray) -> tuple[Tensor, dict[str, float]]:
        idx = active[0][batch]
        clock["steps"] += 1
        every = opts.add_rows_every
        due = bool(every) and clock["steps"] % every == 0
        if due and add_rows(clock["epoch"], idx) and select_rows is not None:
            reselect(clock["epoch"])  # the epoch's remaining batches see the new rows
        enc = encode(
            tokenizer,
            [texts[i] for i in idx],
            [pairs[i] for i in idx] if pairs else None,
            scfg.max_length,
        )
        inputs = {k: v.to(runtime.device) for k, v in enc.items()}
        out = model(**inputs, output_hidden_states=aux is not None)
        logits = out.logits
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
            beta=beta,
            tau=dcfg.tau,
            combine=dcfg.combine,
            kd_form=dcfg.kd_form,
            embedding_loss=dcfg.embedding_loss,
            sample_weight=None if sample_weight is None else sample_weight[idx].to(runtime.device),
            weights=None if targets.weights is None else targets.weights[:, idx],
        )
        parts = {"ce": terms.ce.item(), "kd": terms.kd.item(), "emb": terms.emb.item()}
        if aux is None:
            return terms.total, parts
        block = aux(out.hidden_states, inputs["attention_mask"], idx)
        parts["block"] = block.item()
        return terms.total + block, parts

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

    plan = plan_training(
        len(active[0]),
        scfg.batch_size,
        scfg.epochs,
        scfg.learning_rate,
        min_steps=scfg.min_steps,
        warmup_ratio=scfg.warmup_ratio,
        weight_decay=scfg.weight_decay,
        seed=cfg.seed,
    )
    trainable = [model, projections] + ([aux] if aux is not None else [])
    fitted = fit_planned(plan, model, trainable, step_fn, eval_fn, runtime, ctx, stage, on_epoch)
    history, best = fitted.history, fitted.best
    capture.remove()
    extra_meta = dict(opts.extra_meta)
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
            **extra_meta,
        }
    )
    summary: dict[str, object] = {
        "dev": best,
        "budget": fitted.record,
        "best_epoch": history.best_epoch,
        "train_seconds": history.train_seconds,
        "processes": runtime.world.size,
        **extra_meta,
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
