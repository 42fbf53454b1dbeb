"""Relative Mahalanobis distance (RMD) confidence of one teacher, per layer, fitted on one
part of the generated texts and scored on the others (docs/stratanet.md).

For a layer l of teacher i, on the standardised mean-pooled hidden state z(x):

- **class-conditional Gaussians with a shared covariance**, fitted on the teacher's own
  accepted texts: a mean mu_k per class k (the class each was accepted for) and one
  covariance Sigma of the residuals z - mu_y, shrunk towards the identity;
- **a background Gaussian** mu_0, Sigma_0: the generated texts at large (every teacher's,
  without any label or owner), shrunk alike;
- RMD_k(x) = MD(z; mu_k, Sigma) - MD(z; mu_0, Sigma_0), and the layer's distance
  d_l(x) = min_k RMD_k(x): small when the state looks more like one of the teacher's
  classes than like generated text in general.

Why the background is every generated text and not the teacher's own: a background fitted
on the teacher's texts alone is as far from a foreign text as the class Gaussians are, so
the difference cancels and a foreign text scores as typical (measured on the fixture:
one teacher's last layer gave the other teacher's texts a mean confidence of 0.58, against
0.01 with this background).

**Fitted and scored on different texts (cross-fitting).** All N texts are split into
``folds`` seeded folds. For fold f, the Gaussians are fitted on the texts of the other
folds (the class Gaussians on the teacher's own among them) and score the texts of f; the
teacher's own texts in f are the calibration set. A text's layer confidence is a
conformal p-value, the share of calibration texts at least as far:
p_l(x) = (1 + #{u own in f : d_l(u) >= d_l(x)}) / (1 + #own in f). On the teacher's own
texts p is about uniform on (0, 1]; on a text the layer finds foreign it is near 0. No
text is scored by a fit that saw it, and no other teacher's owner label is used.

**Reliability** of a layer (what the self-regulating combination in
training/students/teacher_weighting.py weighs layers by): how well its class-conditional
Gaussians recover the teacher's classes on its held-out own texts (nearest class by
Mahalanobis distance), chance-corrected: r_l = clip((acc_l - 1/K) / (1 - 1/K), 0, 1).

numpy only; deterministic given the seed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass
class RmdFit:
    """One layer's Gaussians, in the standardised space of the texts they were fitted on."""

    mean: np.ndarray  # (H,) standardisation
    std: np.ndarray  # (H,)
    class_means: np.ndarray  # (K, H)
    precision: np.ndarray  # (H, H) shared, shrunk
    bg_mean: np.ndarray  # (H,)
    bg_precision: np.ndarray  # (H, H) shrunk

    def _z(self, x: np.ndarray) -> np.ndarray:
        return (x.astype(np.float64) - self.mean) / self.std

    def class_distances(self, x: np.ndarray) -> np.ndarray:
        """(N, K) Mahalanobis distances to each class mean under the shared covariance."""
        d = self._z(x)[:, None, :] - self.class_means[None]
        return np.einsum("nkh,hg,nkg->nk", d, self.precision, d)

    def distances(self, x: np.ndarray) -> np.ndarray:
        """(N,) min_k RMD_k."""
        d0 = self._z(x) - self.bg_mean
        md0 = np.einsum("nh,hg,ng->n", d0, self.bg_precision, d0)
        return np.asarray(self.class_distances(x).min(axis=1) - md0)


def _shrunk_precision(resid: np.ndarray) -> np.ndarray:
    """Inverse of the residuals' covariance shrunk towards the identity by d / (d + n): with
    about as many dimensions as texts (a 384-wide layer, a few hundred texts) the sample
    covariance is singular, and the more dimensions per text the more it is shrunk."""
    n, h = resid.shape
    cov = resid.T @ resid / max(n - 1, 1)
    a = h / (h + n)
    shrunk = (1.0 - a) * cov + a * np.eye(h)
    return np.asarray(np.linalg.inv(shrunk))


def fit_rmd(x: np.ndarray, y: np.ndarray, k: int, background: np.ndarray) -> RmdFit:
    """Gaussians of one layer: classes from the teacher's texts ``x`` (N, H) of classes
    ``y`` (N,) in 0..k-1; the background from ``background`` (M, H), every fitted text."""
    mean = background.mean(axis=0)
    std = background.std(axis=0) + 1e-6
    z = (x.astype(np.float64) - mean) / std
    zb = (background.astype(np.float64) - mean) / std
    means = np.stack([z[y == c].mean(0) if (y == c).any() else z.mean(0) for c in range(k)])
    bg = zb.mean(0)
    return RmdFit(mean, std, means, _shrunk_precision(z - means[y]), bg, _shrunk_precision(zb - bg))


def p_values(calibration: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per score: (1 + #calibration distances >= it) / (1 + #calibration)."""
    cal = np.sort(calibration)
    at_least = len(cal) - np.searchsorted(cal, scores, side="left")
    return np.asarray((at_least + 1.0) / (len(cal) + 1.0))


@dataclass
class LayerConfidence:
    layer: int
    confidence: np.ndarray  # (N,) in (0, 1]
    reliability: float  # chance-corrected held-out class accuracy, in [0, 1]
    held_out_accuracy: float


def fold_of(own: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """A seeded fold index per text, as even as possible within the teacher's own texts and
    within the others (every fold gets its share of both)."""
    rng = np.random.default_rng(seed)
    out = np.empty(len(own), dtype=np.int64)
    for part in (np.flatnonzero(own), np.flatnonzero(~own)):
        out[part[rng.permutation(len(part))]] = np.arange(len(part)) % folds
    return out


def layer_confidences(
    layers: Mapping[int, np.ndarray],
    own: np.ndarray,
    labels: np.ndarray,
    k: int,
    *,
    folds: int = 2,
    seed: int = 0,
) -> list[LayerConfidence]:
    """Per layer (hidden-state index -> (N, H) states on every generated text): the
    cross-fitted RMD confidence of every text and the layer's reliability. ``own`` (N,)
    marks the teacher's own accepted texts; ``labels`` (N,) their classes (ignored
    elsewhere)."""
    if int(own.sum()) < 2 * folds:
        raise ValueError(f"RMD confidence needs {2 * folds} own texts, got {int(own.sum())}")
    fold = fold_of(own, folds, seed)
    out = []
    for layer, states in sorted(layers.items()):
        conf = np.zeros(len(states))
        correct = 0
        for f in range(folds):
            fit, scored = fold != f, fold == f
            g = fit_rmd(states[fit & own], labels[fit & own], k, states[fit])
            d = g.distances(states[scored])
            conf[scored] = p_values(d[own[scored]], d)
            held = scored & own
            nearest = g.class_distances(states[held]).argmin(axis=1)
            correct += int((nearest == labels[held]).sum())
        acc = correct / int(own.sum())
        rel = float(np.clip((acc - 1.0 / k) / (1.0 - 1.0 / k), 0.0, 1.0))
        out.append(LayerConfidence(layer, conf, rel, acc))
    return out
