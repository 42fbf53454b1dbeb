"""The LUGPI distillation loss, as small pure functions.

    L = CE(y, s) + alpha * CE(softmax(t / tau), softmax(s / tau)) + beta * ||e_T - e_S||^2

s, t: student and teacher logits; e_S, e_T: the embeddings just before each model's
classification layer (e_S already projected to e_T's width by the caller when the widths
differ). Every term is a mean over the batch. As in the paper, the soft term is not
multiplied by tau^2 (Hinton et al. do; the paper's formula does not).

Several teachers are combined per sample. ``combine="confidence"`` (StrataNet-style) weights
teacher i on sample b by its confidence, the max of its softmax at temperature 1, normalised
over teachers: w_ib = m_ib / sum_j m_jb. We chose the normalised max probability over a
softmax of the max probabilities because the latter is nearly uniform (its inputs lie in
[1/k, 1]), whereas this gives a sure teacher (m=1) k times the weight of one at chance
(m=1/k). ``combine="mean"`` weights every teacher 1/M.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Combine = Literal["confidence", "mean"]
UNLABELLED = -1  # label id of Teacher Guided Training examples: no CE term


@dataclass
class LossTerms:
    total: Tensor  # scalar, what backward() is called on
    ce: Tensor  # scalar, unweighted
    kd: Tensor  # scalar, unweighted (before alpha)
    emb: Tensor  # scalar, unweighted (before beta)


def hard_cross_entropy(student_logits: Tensor, labels: Tensor) -> Tensor:
    """CE(y, s) averaged over labelled samples; 0 when none is labelled.

    student_logits: (B, K); labels: (B,) int64, ``UNLABELLED`` (-1) for unlabelled samples.
    Returns a scalar.
    """
    if not bool((labels != UNLABELLED).any()):
        return student_logits.sum() * 0.0  # keeps the graph (and the device) intact
    return F.cross_entropy(student_logits, labels, ignore_index=UNLABELLED)


def soft_cross_entropy(target_probs: Tensor, student_logits: Tensor, tau: float) -> Tensor:
    """Per-sample CE(p, softmax(s / tau)) = -sum_k p_k log softmax(s / tau)_k.

    target_probs: (B, K), rows sum to 1; student_logits: (B, K). Returns (B,).
    """
    log_q = F.log_softmax(student_logits.float() / tau, dim=-1)
    return -(target_probs.float() * log_q).sum(dim=-1)


EmbeddingLoss = Literal["mse", "squared_l2"]


def embedding_distance(
    teacher_emb: Tensor, student_emb: Tensor, reduction: EmbeddingLoss = "squared_l2"
) -> Tensor:
    """Per-sample ||e_T - e_S||^2 ("squared_l2", summed over the D dimensions) or its mean
    over dimensions ("mse"). Both (B, D). Returns (B,).

    The sum grows with D (about 90 for a 768-wide e_T at initialisation, against a CE near
    0.7), so beta = 1 would let it swamp the other terms; "mse" keeps beta's scale
    independent of the width, the way torch's MSELoss reduces.
    """
    sq = (teacher_emb.float() - student_emb.float()).pow(2)
    return sq.mean(dim=-1) if reduction == "mse" else sq.sum(dim=-1)


def teacher_weights(teacher_logits: Tensor, combine: Combine) -> Tensor:
    """Per-sample weight of each teacher (see the module docstring).

    teacher_logits: (M, B, K). Returns (M, B); each column sums to 1.
    """
    m = teacher_logits.shape[0]
    if combine == "mean":
        return torch.full(teacher_logits.shape[:2], 1.0 / m, device=teacher_logits.device)
    confidence = F.softmax(teacher_logits.float(), dim=-1).amax(dim=-1)
    return confidence / confidence.sum(dim=0, keepdim=True)


def _batch_mean(per_sample: Tensor, sample_weight: Tensor | None) -> Tensor:
    if sample_weight is None:
        return per_sample.mean()
    return (sample_weight.to(per_sample) * per_sample).mean()


def lugpi_loss(
    student_logits: Tensor,
    labels: Tensor,
    student_embs: list[Tensor],
    teacher_logits: Tensor,
    teacher_embs: list[Tensor],
    *,
    alpha: float,
    beta: float,
    tau: float,
    combine: Combine,
    embedding_loss: EmbeddingLoss = "squared_l2",
    sample_weight: Tensor | None = None,
) -> LossTerms:
    """The LUGPI loss over M teachers.

    student_logits: (B, K); labels: (B,) with -1 for unlabelled samples (KD terms only);
    teacher_logits: (M, B, K); teacher_embs[i]: (B, D_i); student_embs[i]: (B, D_i), e_S
    projected for teacher i. Teacher i's soft and embedding terms on sample b are weighted
    by ``teacher_weights(...)[i, b]``. ``sample_weight`` (B,): each sample's weight in the
    soft and embedding terms (Teacher Guided Training gives generated texts lambda), which
    stay means over the whole batch; the hard CE is always averaged over labelled rows only.
    """
    ce = hard_cross_entropy(student_logits, labels)
    zero = ce * 0.0
    w = teacher_weights(teacher_logits, combine)  # (M, B)
    kd = zero
    if alpha > 0:
        # CE is linear in its target, so the weighted sum of per-teacher CEs equals the CE
        # against the weighted mixture of their softened distributions.
        probs = F.softmax(teacher_logits.float() / tau, dim=-1)  # (M, B, K)
        mixed = (w.unsqueeze(-1) * probs).sum(dim=0)
        kd = _batch_mean(soft_cross_entropy(mixed, student_logits, tau), sample_weight)
    emb = zero
    if beta > 0:
        dists = torch.stack(
            [
                embedding_distance(t, s, embedding_loss)
                for t, s in zip(teacher_embs, student_embs, strict=True)
            ]
        )  # (M, B)
        emb = _batch_mean((w * dists).sum(dim=0), sample_weight)
    return LossTerms(total=ce + alpha * kd + beta * emb, ce=ce, kd=kd, emb=emb)
