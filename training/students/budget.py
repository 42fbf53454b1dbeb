"""How long and how fast a model trains: the one plan of every model the pipeline trains
(teachers, students, baselines; LUGPI, TGT and StrataNet alike).

A config leaves epochs unset (the default) to let the data decide: enough epochs for
``min_steps`` optimiser steps and at least ``AUTO_MIN_EPOCHS`` (contracts/config.py says
why), with the warm-up of ``warmup_ratio``; an explicit number of epochs is obeyed. A
learning rate of ``"auto"`` trains the model once per rate of ``AUTO_LEARNING_RATES``
from the same weights, batch order and dropout stream, and keeps the run with the best
dev metrics, exactly as ``fit`` keeps the best dev epoch of one run. ``plan.record`` is
what the stage record says about it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from contracts.config import AUTO_LEARNING_RATES, AUTO_MIN_EPOCHS, LearningRate
from contracts.jobs import Stage
from training.students.train_loop import (
    Budget,
    EvalFn,
    History,
    Runtime,
    StepFn,
    better_dev,
    fit,
)
from training.tracking.progress import RunContext


def planned_epochs(
    n_examples: int, batch_size: int, epochs: float | None, min_steps: int
) -> tuple[float, str]:
    """The epochs a model trains, and why: ``epochs`` when given, else the fewest whole
    epochs (at least ``AUTO_MIN_EPOCHS``) that make ``min_steps`` optimiser steps."""
    per_epoch = max(1, math.ceil(n_examples / batch_size))
    if epochs is not None:
        return epochs, "set in the config"
    needed = math.ceil(min_steps / per_epoch)
    chosen = max(AUTO_MIN_EPOCHS, needed)
    why = (
        f"auto: {n_examples} examples / batch {batch_size} = {per_epoch} steps an epoch; "
        f"{chosen} epochs for at least {min_steps} steps"
        if needed > AUTO_MIN_EPOCHS
        else f"auto: {n_examples} examples / batch {batch_size} = {per_epoch} steps an epoch; "
        f"{AUTO_MIN_EPOCHS} epochs (the least) make {AUTO_MIN_EPOCHS * per_epoch} >= "
        f"{min_steps} steps"
    )
    return float(chosen), why


@dataclass(frozen=True)
class TrainingPlan:
    """One model's budget before it trains: the epochs, and the rate(s) it trains at."""

    budget: Budget  # at the first of ``learning_rates``
    epochs_reason: str
    learning_rates: tuple[float, ...]  # more than one: the rate is chosen on dev

    @property
    def searches(self) -> bool:
        return len(self.learning_rates) > 1

    def record(self) -> dict[str, object]:
        """The budget as the stage record states it (before the rate is chosen)."""
        b = self.budget
        return {
            "examples": b.n_examples,
            "batch_size": b.batch_size,
            "epochs": b.epochs,
            "epochs_reason": self.epochs_reason,
            "steps": b.total_steps,
            "warmup_steps": int(b.warmup_ratio * b.total_steps),
            "warmup_ratio": b.warmup_ratio,
            "learning_rate": b.learning_rate,
            "learning_rate_reason": "chosen on dev" if self.searches else "set in the config",
        }


def plan_training(
    n_examples: int,
    batch_size: int,
    epochs: float | None,
    learning_rate: LearningRate,
    *,
    min_steps: int,
    warmup_ratio: float,
    weight_decay: float,
    seed: int,
) -> TrainingPlan:
    chosen, why = planned_epochs(n_examples, batch_size, epochs, min_steps)
    rates = AUTO_LEARNING_RATES if learning_rate == "auto" else (learning_rate,)
    budget = Budget(
        n_examples=n_examples,
        batch_size=batch_size,
        epochs=chosen,
        learning_rate=rates[0],
        weight_decay=weight_decay,
        warmup_ratio=warmup_ratio,
        seed=seed,
    )
    return TrainingPlan(budget, why, tuple(rates))


def choose_learning_rate(dev: Mapping[float, Mapping[str, float]]) -> float:
    """The rate whose dev metrics are best: accuracy, then macro-F1; a tie, the smaller."""
    chosen: float | None = None
    for rate in sorted(dev):
        if chosen is None or better_dev(dict(dev[rate]), dict(dev[chosen])):
            chosen = rate
    if chosen is None:
        raise ValueError("no learning rate was tried")
    return chosen


@dataclass
class FitResult:
    history: History  # of the chosen rate
    best: dict[str, float]  # its best dev metrics
    record: dict[str, object]  # the budget, for the stage record


def _states(modules: Sequence[nn.Module]) -> list[dict[str, torch.Tensor]]:
    return [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in modules]


def fit_planned(
    plan: TrainingPlan,
    model: nn.Module,
    trainable: Sequence[nn.Module],
    step_fn: StepFn,
    eval_fn: EvalFn,
    runtime: Runtime,
    ctx: RunContext,
    stage: Stage,
    on_epoch: Callable[[int], None] | None = None,
) -> FitResult:
    """``fit`` at the plan's rate; with several rates, once per rate from the same start
    (weights of every trainable module, batch order, dropout stream), keeping the best dev
    metrics (ties: the smaller rate, tried first). ``model`` ends holding the chosen
    run's best epoch."""
    record = plan.record()
    if not plan.searches:
        history, best = fit(
            model, trainable, step_fn, eval_fn, plan.budget, runtime, ctx, stage, on_epoch
        )
        return FitResult(history, best, record)
    start, rng = _states(trainable), torch.get_rng_state()
    runs: dict[float, tuple[History, dict[str, float], dict[str, torch.Tensor]]] = {}
    rates = sorted(plan.learning_rates)
    for i, rate in enumerate(rates):
        if i:
            for module, state in zip(trainable, start, strict=True):
                module.load_state_dict(state)
            torch.set_rng_state(rng)
        budget = replace(plan.budget, learning_rate=rate)
        with ctx.part(i / len(rates), (i + 1) / len(rates)):
            history, best = fit(
                model, trainable, step_fn, eval_fn, budget, runtime, ctx, stage, on_epoch
            )
        # Only the model's weights are kept per rate: a loss's projection layers are not
        # part of what is saved.
        runs[rate] = (history, best, _states([model])[0])
    rate = choose_learning_rate({r: run[1] for r, run in runs.items()})
    history, best, weights = runs[rate]
    model.load_state_dict(weights)
    record |= {
        "learning_rate": rate,
        "learning_rate_reason": "auto: the best dev accuracy (then macro-F1; a tie: the "
        f"smaller rate) of {', '.join(f'{r:g}' for r in rates)}",
        "learning_rate_search": {
            f"{r:g}": {"accuracy": run[1]["accuracy"], "macro_f1": run[1]["macro_f1"]}
            for r, run in runs.items()
        },
    }
    return FitResult(history, best, record)
