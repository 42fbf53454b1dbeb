"""Block-wise selective amalgamation (ST-amalg): the student's transformer blocks learn
from the teachers' corresponding blocks, each teacher gated per sample by its confidence
at that layer (docs/stratanet.md).

- **One pooled state per block**: the mean over real tokens of a block's output, for the
  student's blocks 1..J and for each teacher's mapped layer.
- **A layer map** when depths differ: student block j (1..J) reads teacher layer
  round(j * L_i / J) (at least 1), so the last block always meets the teacher's last.
- **Learned projections** where widths differ: P_ij maps the student's block-j state to
  teacher i's width (identity when equal); part of the loss, never of the exported student.
- Each teacher's states are standardised per layer (mean and std over the generated
  texts), so teachers of different scales weigh alike.
- **Gates** g_ijb (M, J, N): per sample, teacher i's RMD confidence at its mapped layer,
  normalised over the teachers (training/students/teacher_weighting.py ``block_gates``).

    L_blocks = (1 / J) * sum_j mean_b sum_i g_ijb * mean_d (P_ij h_j(x_b) - t_ij(x_b))^2

The student trainer (training/students/trainer.py) adds ``weight * L_blocks`` to the loss
when a method passes this module as ``StudentOptions.aux_loss``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn


def layer_map(student_blocks: int, teacher_layers: int) -> list[int]:
    """Teacher hidden-state index for each student block 1..J."""
    return [
        max(1, round(j * teacher_layers / student_blocks)) for j in range(1, student_blocks + 1)
    ]


def standardise(states: np.ndarray) -> np.ndarray:
    """(N, D) -> zero mean, unit variance per dimension over the N texts."""
    return np.asarray((states - states.mean(0)) / (states.std(0) + 1e-6), dtype=np.float32)


class BlockTransfer(nn.Module):
    """The block-wise term; ``forward`` reads the student's hidden states of a batch."""

    def __init__(
        self,
        student_width: int,
        teacher_states: Sequence[Tensor],
        gates: Tensor,
        weight: float,
    ) -> None:
        """``teacher_states[i]``: (N, J, D_i) standardised pooled states of teacher i at the
        layers mapped to the student's J blocks, on the N training rows; ``gates``: (M, J, N)."""
        super().__init__()
        self.blocks = int(gates.shape[1])
        self.teacher_states = [s.float() for s in teacher_states]
        self.gates = gates.float()
        self.weight = weight
        self.proj = nn.ModuleList(
            nn.ModuleList(
                nn.Linear(student_width, s.shape[-1]) if s.shape[-1] != student_width
                else nn.Identity()
                for _ in range(self.blocks)
            )
            for s in teacher_states
        )  # fmt: skip

    def forward(self, hidden_states: Sequence[Tensor], mask: Tensor, rows: np.ndarray) -> Tensor:
        """``hidden_states``: the student's (embeddings, block 1, ..., block J) outputs, each
        (B, T, H); ``mask`` (B, T); ``rows`` the batch's row indices. Returns the weighted
        term (a scalar)."""
        if len(hidden_states) - 1 != self.blocks:
            raise ValueError(
                f"the student has {len(hidden_states) - 1} blocks, the targets {self.blocks}"
            )
        m = mask.unsqueeze(-1).float()
        idx = torch.as_tensor(rows, dtype=torch.long)
        total = hidden_states[0].float().sum() * 0.0
        for j in range(self.blocks):
            h = hidden_states[j + 1].float()
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
            for i, states in enumerate(self.teacher_states):
                target = states[idx, j].to(pooled.device)
                gate = self.gates[i, j, idx].to(pooled.device)
                dist = (self.proj[i][j](pooled) - target).pow(2).mean(dim=-1)  # type: ignore[index]
                total = total + (gate * dist).mean()
        return self.weight * total / self.blocks
