"""How several teachers are weighed per sample: the one place both multi-teacher students
use (the LUGPI amalgamated student, training/lugpi/distill.py through
training/students/losses.py, and the data-free StrataNet student, training/strata/mode.py).

A weighting turns each teacher's *confidence* on each sample, c_ib in [0, 1], into weights
w_ib that sum to 1 over the teachers of sample b. Three ways to measure confidence:

- ``mean``: every teacher 1/M (plain averaging).
- ``max_prob``: the last layer's max probability, m_ib = max_k softmax(t_ib)_k.
- ``layerwise``: light probes on several of the teacher's layers
  (training/strata/teachers.py trains them on the generated texts), in two forms:

  plain (no typicality given): the mean, over the L probes and the head, of the
  probability each gives to the head's answer ŷ_ib = argmax_k t_ibk,
      c_ib = (1 / (L + 1)) * (sum_l pi_ibl[ŷ_ib] + m_ib);

  self-regulated (what the StrataNet mode uses): each layer's chance-corrected agreement
  a_ibl = clip((pi_ibl[ŷ_ib] - 1/k_i) / (1 - 1/k_i), 0, 1) times its typicality s_ibl in
  [0, 1] (how much the layer's state looks like the teacher's own texts rather than the
  other teachers'), averaged with q_ib, the quantile of the head's max probability among
  the teacher's own texts, and put back on a probability's scale:
      c~_ib = (sum_l a_ibl * s_ibl + q_ib) / (L + 1),   c_ib = 1/k_i + (1 - 1/k_i) c~_ib.

  Each teacher is judged against itself (its own texts, its own calibration), not by
  comparing raw probabilities across teachers of different sharpness: a teacher whose head
  is sure on a text its layers find foreign, or disagree about, is not trusted there.

Two normalisations:

- ``normalise="plain"``: w_ib = c_ib / sum_j c_jb. The LUGPI default (``distill.combine:
  confidence``), kept as it was: same-label teachers, where c lies in [1/k, 1] for all.
- ``normalise="chance"``: teachers with different label sets (k_i classes) are compared
  above their own chance level, c~_ib = clip((c_ib - 1/k_i) / (1 - 1/k_i), 0, 1), then
  sharpened, w_ib = (c~_ib^gamma + eps) / sum_j (c~_jb^gamma + eps). A 2-class teacher at
  0.5 knows nothing; a 10-class teacher at 0.5 knows a lot; gamma > 1 lets the sure
  teacher dominate instead of splitting a sample half and half.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

WeightMode = Literal["mean", "max_prob", "layerwise"]
Normalise = Literal["plain", "chance"]
_EPS = 1e-4


def max_prob_confidence(teacher_logits: Tensor) -> Tensor:
    """(M, B, K) logits -> (M, B): the max of each teacher's softmax. Logits of labels a
    teacher does not have may be very negative (masked): they get no probability."""
    return F.softmax(teacher_logits.float(), dim=-1).amax(dim=-1)


def layerwise_confidence(
    final_probs: Tensor,
    probe_probs: Sequence[Tensor],
    typicality: Sequence[Tensor] | None = None,
    head_typicality: Tensor | None = None,
) -> Tensor:
    """One teacher on B texts -> (B,) confidences on the scale of a probability (chance
    level 1/K). final_probs: (B, K); probe_probs: L probes' (B, K); typicality: per probe
    (B,) in [0, 1], how typical the layer's state is of the teacher's own texts;
    head_typicality: (B,) the head's max probability as a quantile of its own texts'.

    Without typicality: the mean over probes and head of the probability each gives the
    head's answer. With it (the self-regulated form, module docstring): each layer's
    chance-corrected agreement times its typicality, averaged with the head's quantile."""
    k = final_probs.shape[-1]
    answer = final_probs.argmax(dim=-1, keepdim=True)
    agree = [p.float().gather(-1, answer).squeeze(-1) for p in probe_probs]
    if typicality is None or head_typicality is None:
        agree.append(final_probs.float().gather(-1, answer).squeeze(-1))
        return torch.stack(agree).mean(dim=0)
    parts = [
        ((a - 1.0 / k) / (1.0 - 1.0 / k)).clamp(min=0.0) * s.float()
        for a, s in zip(agree, typicality, strict=True)
    ]
    parts.append(head_typicality.float())
    c = torch.stack(parts).mean(dim=0)
    return 1.0 / k + (1.0 - 1.0 / k) * c


def weights_from_confidence(
    confidence: Tensor,
    *,
    normalise: Normalise = "plain",
    num_classes: Sequence[int] | None = None,
    sharpness: float = 1.0,
) -> Tensor:
    """(M, B) confidences -> (M, B) weights, each column summing to 1 (module docstring).
    ``num_classes``: k_i per teacher, for ``normalise="chance"``."""
    c = confidence.float()
    if normalise == "plain":
        return c / c.sum(dim=0, keepdim=True)
    if num_classes is None or len(num_classes) != c.shape[0]:
        raise ValueError("normalise='chance' needs num_classes, one per teacher")
    chance = torch.tensor([1.0 / k for k in num_classes], device=c.device).unsqueeze(1)
    above = ((c - chance) / (1.0 - chance)).clamp(0.0, 1.0)
    raw = above.pow(sharpness) + _EPS
    return raw / raw.sum(dim=0, keepdim=True)


def confidences(
    mode: WeightMode,
    own_probs: Sequence[Tensor],
    probe_probs: Sequence[Sequence[Tensor]] | None = None,
    typicality: Sequence[Sequence[Tensor]] | None = None,
    head_typicality: Sequence[Tensor] | None = None,
) -> Tensor:
    """Teachers with their own label sets: own_probs[i] is teacher i's (B, K_i) softmax over
    its own labels, probe_probs[i] its probes' (B, K_i) distributions (``layerwise`` only).
    Returns (M, B) confidences; ``mean`` gives ones (equal weights after normalising)."""
    if mode == "mean":
        return torch.ones(len(own_probs), own_probs[0].shape[0], device=own_probs[0].device)
    if mode == "max_prob":
        return torch.stack([p.float().amax(dim=-1) for p in own_probs])
    if probe_probs is None or len(probe_probs) != len(own_probs):
        raise ValueError("layerwise weighting needs probe_probs, one list per teacher")
    return torch.stack(
        [
            layerwise_confidence(
                p,
                probe_probs[i],
                typicality[i] if typicality is not None else None,
                head_typicality[i] if head_typicality is not None else None,
            )
            for i, p in enumerate(own_probs)
        ]
    )


def teacher_weights(teacher_logits: Tensor, mode: Literal["mean", "max_prob"]) -> Tensor:
    """Same-label teachers (the LUGPI amalgamated student): (M, B, K) logits -> (M, B)
    weights: 1/M each (``mean``) or the plain-normalised max probability (``max_prob``,
    what ``distill.combine: confidence`` means)."""
    m, b = teacher_logits.shape[:2]
    if mode == "mean":
        return torch.full((m, b), 1.0 / m, device=teacher_logits.device)
    return weights_from_confidence(max_prob_confidence(teacher_logits), normalise="plain")
