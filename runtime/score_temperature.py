"""Score temperature: one scalar T per model so that ``softmax(logits / T)`` means what it says.

A distilled student learns to put its *unsoftened* output on the teacher's distribution at
distillation temperature tau (docs/method.md, Eq. 2), so its plain softmax is far too flat: a
5-class student that is right 96 % of the time scores 0.3-0.4. Export fits T on the dev
split by negative log-likelihood (temperature scaling, Guo et al. 2017) and records it in
``bundle.json`` (``BundleManifest.score_temperature``); every graph is served through
``apply`` (runtime.classifier), so every surface returns the same scaled probabilities.
Dividing by T > 0 never changes the argmax, so accuracy and every recorded metric stay put.

Named "score temperature" because "calibration" is what the int8 export calls its data.
numpy only: the API imports this module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from runtime.metrics import softmax

# The search range of T. A fitted T at an end of it means the dev set could not tell more.
MIN_TEMPERATURE = 0.05
MAX_TEMPERATURE = 100.0
# Equal-width confidence bins of the expected calibration error (Guo et al. use 15).
ECE_BINS = 15
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def apply(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities of ``logits`` at ``temperature``, float32 like the graphs' own output."""
    return softmax(np.asarray(logits, dtype=np.float32) / np.float32(temperature))


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return np.asarray(z - np.log(np.exp(z).sum(axis=-1, keepdims=True)))


def nll(logits: np.ndarray, labels: Sequence[int] | np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the gold labels at ``temperature`` (float64)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    y = np.asarray(labels, dtype=np.int64)
    return float(-_log_softmax(z)[np.arange(len(y)), y].mean())


def fit_temperature(logits: np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """The T in [MIN_TEMPERATURE, MAX_TEMPERATURE] that minimises the NLL of ``labels``.

    The NLL is convex in 1/T, hence unimodal in log T: a golden-section search on log T
    finds the minimum to ~1e-6 relative in 60 steps, without scipy."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if z.ndim != 2 or len(z) != len(y) or len(y) == 0:
        raise ValueError(f"need (n, k) logits and n labels, got {z.shape} and {len(y)}")
    lo, hi = math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE)
    a, b = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
    fa, fb = nll(z, y, math.exp(a)), nll(z, y, math.exp(b))
    for _ in range(60):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - _GOLDEN * (hi - lo)
            fa = nll(z, y, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + _GOLDEN * (hi - lo)
            fb = nll(z, y, math.exp(b))
    return float(math.exp((lo + hi) / 2.0))


def expected_calibration_error(
    probs: np.ndarray, labels: Sequence[int] | np.ndarray, bins: int = ECE_BINS
) -> float:
    """ECE: the mean |accuracy - confidence| over equal-width bins of the top probability,
    weighted by the share of texts in each bin."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    confidence = p.max(axis=-1)
    correct = (p.argmax(axis=-1) == y).astype(np.float64)
    # Bin i holds (i/bins, (i+1)/bins]; a confidence of exactly 0 cannot occur (>= 1/k).
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    ece = 0.0
    for i in range(bins):
        members = which == i
        if members.any():
            gap = abs(correct[members].mean() - confidence[members].mean())
            ece += members.mean() * gap
    return float(ece)


def brier(probs: np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """Mean over texts of the squared distance between the probabilities and the one-hot label."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    onehot = np.zeros_like(p)
    onehot[np.arange(len(y)), y] = 1.0
    return float(((p - onehot) ** 2).sum(axis=-1).mean())


def score_quality(
    logits: np.ndarray, labels: Sequence[int] | np.ndarray, temperature: float = 1.0
) -> dict[str, float]:
    """ECE, NLL, Brier and n of the probabilities at ``temperature``."""
    probs = apply(logits, temperature)
    return {
        "ece": expected_calibration_error(probs, labels),
        "nll": nll(logits, labels, temperature),
        "brier": brier(probs, labels),
        "n": len(labels),
    }
