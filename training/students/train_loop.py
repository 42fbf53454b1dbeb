"""The training loop shared by the teacher, the student and the baseline.

Plain PyTorch: device placement and autocast are three lines, and several GPUs are
PyTorch's own ``DistributedDataParallel`` under ``torchrun`` (training/distributed.py).
Under torchrun the loop wraps the trainable modules (the model and, for the student, the
loss's projection layers) together with the step function in one DDP module, so every
parameter a step touches is all-reduced; each rank computes its slice of the same global
batch. Every rank also scores the whole dev split, so all of them keep the same best epoch.

``fit`` runs AdamW with linear decay (optional warmup), clips gradients at 1.0, calls
``ctx.step`` once per batch (progress and cancellation), evaluates on dev after every epoch,
keeps the weights of the best dev accuracy (never test) and restores them at the end.
How long and at which rate a model trains is planned in training/students/budget.py.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from transformers import get_linear_schedule_with_warmup

from contracts.artifacts import write_json_atomic
from contracts.jobs import Stage
from training import distributed
from training.devices import resolve_device
from training.tracking.progress import RunContext

# Batch indices -> (loss to backpropagate, named float parts for the history).
StepFn = Callable[[np.ndarray], tuple[Tensor, dict[str, float]]]
# () -> dev metrics; must contain "accuracy" and "macro_f1".
EvalFn = Callable[[], dict[str, float]]


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    amp_dtype: torch.dtype | None  # None: full precision
    world: distributed.World = distributed.SINGLE  # torchrun's processes

    def autocast(self) -> AbstractContextManager[object]:
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)


def select_runtime(device: str, mixed_precision: bool) -> Runtime:
    """``device``: "auto" (CUDA when available), "cpu" or "cuda". Autocast only on CUDA:
    bf16 where supported (no loss scaling needed), else fp16 with a GradScaler."""
    use_cuda = resolve_device(device) == "cuda"
    world = distributed.init()
    dev = torch.device("cuda", world.local_rank) if use_cuda else torch.device("cpu")
    amp: torch.dtype | None = None
    if use_cuda and mixed_precision:
        amp = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return Runtime(dev, amp, world)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class Budget:
    """How long and how a model trains (same budget => comparable student and baseline)."""

    n_examples: int
    batch_size: int
    epochs: float
    learning_rate: float
    weight_decay: float = 0.01
    warmup_ratio: float = 0.0
    seed: int = 0

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.n_examples / self.batch_size)

    @property
    def total_steps(self) -> int:
        return max(1, math.ceil(self.epochs * self.steps_per_epoch))


@dataclass
class History:
    """Loss per step and dev metrics per epoch: ``history.json``, drawn in curves.png."""

    steps: list[dict[str, float]] = field(default_factory=list)
    epochs: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    train_seconds: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "steps": self.steps,
            "epochs": self.epochs,
            "best_epoch": self.best_epoch,
            "train_seconds": self.train_seconds,
        }

    def save(self, path: Path) -> None:
        write_json_atomic(path, self.to_dict())

    @staticmethod
    def load(path: Path) -> History:
        raw = json.loads(path.read_text())
        return History(raw["steps"], raw["epochs"], raw["best_epoch"], raw["train_seconds"])


def batch_order(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Shuffled batches of indices; own RNG, so it does not depend on model init draws."""
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    return [perm[i : i + batch_size] for i in range(0, n, batch_size)]


def make_optimizer(
    modules: Sequence[nn.Module], budget: Budget
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW (no decay on biases and norm weights) + linear decay after optional warmup."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for module in modules:
        for p in module.parameters():
            if p.requires_grad:
                (no_decay if p.ndim < 2 else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": budget.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=budget.learning_rate)
    warmup = int(budget.warmup_ratio * budget.total_steps)
    return opt, get_linear_schedule_with_warmup(opt, warmup, budget.total_steps)


class _Step(nn.Module):
    """What DDP wraps: every trainable module, and a forward that is one training step."""

    def __init__(self, trainable: Sequence[nn.Module], step_fn: StepFn) -> None:
        super().__init__()
        self.parts = nn.ModuleList(trainable)
        self.step_fn = step_fn

    def forward(self, idx: np.ndarray) -> tuple[Tensor, dict[str, float]]:
        return self.step_fn(idx)


def _data_parallel(
    trainable: Sequence[nn.Module], step_fn: StepFn, runtime: Runtime
) -> Callable[[np.ndarray], tuple[Tensor, dict[str, float]]]:
    """``step_fn`` itself on one process; under torchrun, a DDP module that runs this rank's
    share of each global batch and all-reduces the gradients of every trainable module."""
    world = runtime.world
    if not world.distributed:
        return step_fn
    from torch.nn.parallel import DistributedDataParallel

    ids = [runtime.device.index] if runtime.device.type == "cuda" else None
    # find_unused_parameters: some weights get no gradient by design (a text encoder's
    # pooler, which the teacher never reads); DDP must not wait for them.
    net = DistributedDataParallel(
        _Step(trainable, step_fn), device_ids=ids, find_unused_parameters=True
    )

    def step(idx: np.ndarray) -> tuple[Tensor, dict[str, float]]:
        mine = np.array_split(idx, world.size)[world.rank]
        # A last batch smaller than the world: a rank repeats one example rather than idle
        # (an idle rank would leave the others waiting in the all-reduce).
        loss, parts = net(mine if len(mine) else idx[-1:])
        return loss, parts

    return step


def _snapshot(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def better_dev(new: dict[str, float], best: dict[str, float] | None) -> bool:
    """Whether dev metrics ``new`` beat ``best``: accuracy, then macro-F1; a tie does not."""
    if best is None:
        return True
    return (new["accuracy"], new["macro_f1"]) > (best["accuracy"], best["macro_f1"])


def fit(
    model: nn.Module,
    trainable: Sequence[nn.Module],
    step_fn: StepFn,
    eval_fn: EvalFn,
    budget: Budget,
    runtime: Runtime,
    ctx: RunContext,
    stage: Stage,
    on_epoch: Callable[[int], None] | None = None,
) -> tuple[History, dict[str, float]]:
    """Train ``trainable`` (``model`` plus e.g. a loss's projection layers) with
    ``step_fn``; return the history and the best dev metrics. ``model`` ends holding the
    weights of its best dev epoch. ``on_epoch(epoch)`` runs before each epoch (e.g. to
    choose that epoch's generated examples)."""
    opt, sched = make_optimizer(trainable, budget)
    train_step = _data_parallel(trainable, step_fn, runtime)
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=runtime.amp_dtype == torch.float16)
    params = [p for m in trainable for p in m.parameters() if p.requires_grad]
    history = History()
    best: dict[str, float] | None = None
    best_state: dict[str, Tensor] = {}
    total, step, epoch = budget.total_steps, 0, 0
    started = time.perf_counter()
    while step < total:
        if on_epoch is not None:
            with torch.no_grad():
                on_epoch(epoch)
        for m in trainable:
            m.train()
        for idx in batch_order(budget.n_examples, budget.batch_size, budget.seed, epoch):
            with runtime.autocast():
                loss, parts = train_step(idx)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(params, 1.0)
            scaler.step(opt)
            scaler.update()
            sched.step()
            step += 1
            loss_value = loss.detach().item()
            history.steps.append(
                {
                    "step": step,
                    "epoch": step / budget.steps_per_epoch,
                    "loss": loss_value,
                    "lr": float(sched.get_last_lr()[0]),
                    **parts,
                }
            )
            ctx.step(stage, step, total, f"epoch {epoch + 1} loss {loss_value:.4f}")
            if step >= total:
                break
        epoch += 1
        model.eval()
        with torch.no_grad():
            metrics = eval_fn()
        history.epochs.append(
            {
                "epoch": epoch,
                "step": step,
                "dev_accuracy": metrics["accuracy"],
                "dev_macro_f1": metrics["macro_f1"],
            }
        )
        if better_dev(metrics, best):
            best, best_state, history.best_epoch = metrics, _snapshot(model), epoch
    history.train_seconds = time.perf_counter() - started
    model.load_state_dict(best_state)
    assert best is not None
    return history, best
