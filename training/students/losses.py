"""The LUGPI distillation loss, as small pure functions.

The paper's Eq. 2 (``kd_form="paper"``, the default):

    L = CE(y, softmax(s)) + alpha * CE(softmax(t / tau), softmax(s)) + beta * D(e_T, e_S)

s, t: student and teacher logits; e_S, e_T: the embeddings the classification layer of
each model consumes (e_S already projected to e_T's width by the caller when the widths
differ). Only the teacher is softened by tau; the student's output is not. The gradient
of the soft term with respect to s is softmax(s) - softmax(t / tau), whatever tau.

``kd_form="hinton"`` is Hinton et al.'s distillation instead: both softened and the term
scaled by tau^2, tau^2 * CE(softmax(t / tau), softmax(s / tau)), whose gradient is
tau * (softmax(s / tau) - softmax(t / tau)). (Both softened *without* tau^2 would shrink
the gradient by 1/tau^2 against Hinton's, 1/64 at tau = 8: the soft term would barely act.
That form is deliberately not offered.)

D is the embedding term: by default (``"mse"``) the mean over the D dimensions of
(e_T - e_S)^2, the "mean squared error" of the paper's prose; ``"squared_l2"`` is the
literal ||e_T - e_S||^2 of the formula, summed over dimensions, which grows with the width
(about 90 for a 768-wide e_T at initialisation, against a CE near 0.7). Every term is a
mean over the batch.

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

from training.students.teacher_weighting import teacher_weights as shared_weights

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


KdForm = Literal["paper", "hinton"]
EmbeddingLoss = Literal["mse", "squared_l2"]


def kd_term(target_probs: Tensor, student_logits: Tensor, tau: float, form: KdForm) -> Tensor:
    """Per-sample soft term against ``target_probs`` = the softened teacher, softmax(t / tau).

    "paper": CE(target, softmax(s)); "hinton": tau^2 * CE(target, softmax(s / tau)) (see the
    module docstring). target_probs, student_logits: (B, K). Returns (B,).
    """
    if form == "paper":
        return soft_cross_entropy(target_probs, student_logits, 1.0)
    return tau**2 * soft_cross_entropy(target_probs, student_logits, tau)


def embedding_distance(
    teacher_emb: Tensor, student_emb: Tensor, reduction: EmbeddingLoss = "mse"
) -> Tensor:
    """Per-sample mean over the D dimensions of (e_T - e_S)^2 ("mse", the default: beta's
    scale does not depend on the width, the way torch's MSELoss reduces) or the literal
    ||e_T - e_S||^2 summed over them ("squared_l2"). Both (B, D). Returns (B,).
    """
    sq = (teacher_emb.float() - student_emb.float()).pow(2)
    return sq.mean(dim=-1) if reduction == "mse" else sq.sum(dim=-1)


def teacher_weights(teacher_logits: Tensor, combine: Combine) -> Tensor:
    """Per-sample weight of each teacher (see the module docstring), computed by the
    weighting module shared with the data-free StrataNet student
    (training/students/teacher_weighting.py).

    teacher_logits: (M, B, K). Returns (M, B); each column sums to 1.
    """
    return shared_weights(teacher_logits, "mean" if combine == "mean" else "max_prob")


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
    kd_form: KdForm = "paper",
    embedding_loss: EmbeddingLoss = "mse",
    sample_weight: Tensor | None = None,
    weights: Tensor | None = None,
) -> LossTerms:
    """The LUGPI loss over M teachers.

    student_logits: (B, K); labels: (B,) with -1 for unlabelled samples (KD terms only);
    teacher_logits: (M, B, K); teacher_embs[i]: (B, D_i); student_embs[i]: (B, D_i), e_S
    projected for teacher i. Teacher i's soft and embedding terms on sample b are weighted
    by ``teacher_weights(...)[i, b]``. ``kd_form`` and ``embedding_loss``: see the module
    docstring (the defaults are the paper's Eq. 2 with the mean over dimensions).
    ``sample_weight`` (B,): each sample's weight in the soft and embedding terms (Teacher
    Guided Training gives generated texts lambda), which stay means over the whole batch;
    the hard CE is always averaged over labelled rows only. ``weights`` (M, B): teacher
    weights computed by the caller (e.g. layer-wise, training/students/teacher_weighting.py) instead
    of ``combine``'s.
    """
    ce = hard_cross_entropy(student_logits, labels)
    zero = ce * 0.0
    w = teacher_weights(teacher_logits, combine) if weights is None else weights.to(ce)  # (M, B)
    kd = zero
    if alpha > 0:
        # CE is linear in its target, so the weighted sum of per-teacher CEs equals the CE
        # against the weighted mixture of their softened distributions.
        probs = F.softmax(teacher_logits.float() / tau, dim=-1)  # (M, B, K)
        mixed = (w.unsqueeze(-1) * probs).sum(dim=0)
        kd = _batch_mean(kd_term(mixed, student_logits, tau, kd_form), sample_weight)
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
