"""How several teachers are weighed per sample: the one place both multi-teacher students
use (the LUGPI amalgamated student, training/lugpi/distill.py through
training/students/losses.py, and the data-free StrataNet student, training/strata/mode.py).

A weighting gives each teacher i a weight w_ib on each sample b, summing to 1 over the
teachers of b. The StrataNet modes (``strata_weights``):

- ``mean``: every teacher 1/M (plain averaging).
- ``max_prob``: the last layer's max probability m_ib, compared above each teacher's own
  chance level (teachers may have different label counts k_i):
  c~_ib = clip((m_ib - 1/k_i) / (1 - 1/k_i), 0, 1), w_ib = (c~_ib^gamma + eps) / sum_j (...).
  gamma = 1 by default: no extra sharpening (which would favour an overconfident teacher).
- ``owner``: the control that knows what no data-free method may: weight 1 on the teacher
  the text was generated for, 0 on the others.
- ``rmd``: each teacher's Relative-Mahalanobis confidence per layer, p_ibl in (0, 1]
  (training/strata/rmd.py: fitted on part of the teacher's own texts, a conformal p-value
  against the rest), combined across its layers by the **self-regulating rule**

      c_ib = sum_l r_il p_ibl / sum_l r_il      (the plain mean over layers if all r_il = 0)

  where r_il in [0, 1] is layer l's reliability: how well that layer's class Gaussians
  recover the teacher's classes on its held-out own texts, chance-corrected. A layer that
  does not tell the teacher's classes apart has no say in whether a text is the teacher's;
  each teacher is judged against its own texts, never by comparing raw probabilities
  across teachers of different sharpness. Then w_ib = (c_ib^gamma + eps) / sum_j (...):
  where no teacher finds a text its own, the weights fall back to equal.

Block gates for the block-wise transfer (``block_gates``): the same per-layer confidences,
normalised over the teachers block by block, g_ijb = (p_ib,map_i(j) + eps) / sum_m (...).

The LUGPI amalgamated student (same label set for every teacher) keeps ``teacher_weights``:
``mean`` 1/M, or the plain-normalised max probability w_ib = m_ib / sum_j m_jb
(``distill.combine: confidence``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

WeightMode = Literal["mean", "max_prob", "owner", "rmd"]
_EPS = 1e-4


def max_prob_confidence(teacher_logits: Tensor) -> Tensor:
    """(M, B, K) logits -> (M, B): the max of each teacher's softmax. Logits of labels a
    teacher does not have may be very negative (masked): they get no probability."""
    return F.softmax(teacher_logits.float(), dim=-1).amax(dim=-1)


def weights_from_confidence(
    confidence: Tensor,
    *,
    normalise: Literal["plain", "chance"] = "plain",
    num_classes: Sequence[int] | None = None,
    sharpness: float = 1.0,
) -> Tensor:
    """(M, B) confidences -> (M, B) weights, each column summing to 1. ``plain``:
    c / sum c; ``chance``: above each teacher's chance level 1/k_i, to the power
    ``sharpness``, plus eps (module docstring)."""
    c = confidence.float()
    if normalise == "plain":
        return c / c.sum(dim=0, keepdim=True)
    if num_classes is None or len(num_classes) != c.shape[0]:
        raise ValueError("normalise='chance' needs num_classes, one per teacher")
    chance = torch.tensor([1.0 / k for k in num_classes], device=c.device).unsqueeze(1)
    return _power_normalise(((c - chance) / (1.0 - chance)).clamp(0.0, 1.0), sharpness)


def _power_normalise(c: Tensor, sharpness: float) -> Tensor:
    raw = c.clamp(min=0.0).pow(sharpness) + _EPS
    return raw / raw.sum(dim=0, keepdim=True)


def rmd_confidence(layer_confidence: Tensor, reliability: Tensor) -> Tensor:
    """The self-regulating rule: (L, B) per-layer confidences and (L,) layer reliabilities
    of one teacher -> (B,) their reliability-weighted mean (the plain mean when no layer is
    reliable)."""
    r = reliability.float().clamp(0.0, 1.0)
    if float(r.sum()) <= 0.0:
        r = torch.ones_like(r)
    return (r[:, None] * layer_confidence.float()).sum(dim=0) / r.sum()


def owner_weights(owner: Tensor, num_teachers: int) -> Tensor:
    """(B,) index of the teacher each text was generated for -> (M, B) one-hot weights."""
    return F.one_hot(owner.long(), num_teachers).T.float()


def strata_weights(
    mode: WeightMode,
    own_probs: Sequence[Tensor],
    *,
    layer_confidence: Sequence[Tensor] | None = None,
    reliability: Sequence[Tensor] | None = None,
    owner: Tensor | None = None,
    sharpness: float = 1.0,
) -> Tensor:
    """Teachers with their own label sets: own_probs[i] is teacher i's (B, K_i) softmax over
    its own labels; ``layer_confidence[i]`` (L_i, B) and ``reliability[i]`` (L_i,) for
    ``rmd``; ``owner`` (B,) for ``owner``. Returns (M, B) weights (module docstring)."""
    m, b = len(own_probs), own_probs[0].shape[0]
    if mode == "mean":
        return torch.full((m, b), 1.0 / m)
    if mode == "max_prob":
        conf = torch.stack([p.float().amax(dim=-1) for p in own_probs])
        k = [p.shape[-1] for p in own_probs]
        return weights_from_confidence(conf, normalise="chance", num_classes=k, sharpness=sharpness)
    if mode == "owner":
        if owner is None:
            raise ValueError("owner weighting needs the owner of every text")
        return owner_weights(owner, m)
    if mode == "rmd":
        if layer_confidence is None or reliability is None or len(layer_confidence) != m:
            raise ValueError("rmd weighting needs layer_confidence and reliability per teacher")
        conf = torch.stack(
            [rmd_confidence(c, r) for c, r in zip(layer_confidence, reliability, strict=True)]
        )
        return _power_normalise(conf, sharpness)
    raise ValueError(f"unknown weighting {mode!r}")


def block_gates(layer_confidence: Sequence[Tensor]) -> Tensor:
    """Per teacher i its (J, B) confidences at the layers mapped to the student's J blocks
    -> (M, J, B) gates, normalised over the teachers block by block."""
    raw = torch.stack([c.float() for c in layer_confidence]) + _EPS
    return raw / raw.sum(dim=0, keepdim=True)


def teacher_weights(teacher_logits: Tensor, mode: Literal["mean", "max_prob"]) -> Tensor:
    """Same-label teachers (the LUGPI amalgamated student): (M, B, K) logits -> (M, B)
    weights: 1/M each (``mean``) or the plain-normalised max probability (``max_prob``,
    what ``distill.combine: confidence`` means)."""
    m, b = teacher_logits.shape[:2]
    if mode == "mean":
        return torch.full((m, b), 1.0 / m, device=teacher_logits.device)
    return weights_from_confidence(max_prob_confidence(teacher_logits), normalise="plain")
