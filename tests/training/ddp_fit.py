"""Run ``training.train_loop.fit`` on a small deterministic problem and save the weights.

    python tests/training/ddp_fit.py OUT_PREFIX                            # one process
    python -m torch.distributed.run --standalone --nproc_per_node 2 \\
        tests/training/ddp_fit.py OUT_PREFIX                               # two, gloo, CPU

Each process writes ``OUT_PREFIX.rank<r>.pt``: the model's and the loss's separate
projection layer's final weights (test_distributed.py compares them). No dropout and
batches that split evenly, so one process and two must agree to float rounding.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from torch import Tensor, nn

from contracts.jobs import Stage
from training.distributed import world
from training.students.train_loop import Budget, fit, select_runtime
from training.tracking.progress import RunContext


def main(prefix: str) -> None:
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=gen)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()  # 3 classes
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    proj = nn.Linear(3, 4)  # like the student's embedding projection: outside the model
    target = torch.randn(64, 4, generator=gen)
    runtime = select_runtime("cpu", mixed_precision=False)

    def step_fn(idx: np.ndarray) -> tuple[Tensor, dict[str, float]]:
        logits = model(x[idx])
        ce = nn.functional.cross_entropy(logits, y[idx])
        emb = nn.functional.mse_loss(proj(logits), target[idx])
        return ce + emb, {}

    def eval_fn() -> dict[str, float]:
        acc = float((model(x).argmax(-1) == y).float().mean())
        return {"accuracy": acc, "macro_f1": acc}

    budget = Budget(n_examples=64, batch_size=16, epochs=3, learning_rate=0.05, seed=0)
    fit(model, [model, proj], step_fn, eval_fn, budget, runtime, RunContext(), Stage.DISTILL)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    state |= {f"proj.{k}": v for k, v in proj.state_dict().items()}
    torch.save({"world": runtime.world.size, "state": state}, f"{prefix}.rank{world().rank}.pt")


if __name__ == "__main__":
    main(sys.argv[1])
