"""Scores from class ids and probabilities (numpy only): the one implementation that
training's evaluation, export's recorded metrics and the API's predictions share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

import numpy as np


class LabelScores(TypedDict):
    """One prediction: the best label, its probability and every label's probability."""

    label: str
    score: float
    scores: dict[str, float]


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """(k, k) counts; row = true class, column = predicted class."""
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return cm


def f1_per_class(cm: np.ndarray) -> np.ndarray:
    """F1 of each class from a confusion matrix; 0 where a class is neither true nor predicted."""
    tp = np.diag(cm).astype(np.float64)
    denom = cm.sum(axis=0) + cm.sum(axis=1)  # 2tp + fp + fn
    return np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)


def accuracy_f1(
    y_true: np.ndarray | Sequence[int], y_pred: np.ndarray | Sequence[int], k: int
) -> dict[str, float]:
    """Accuracy, macro-F1 and n. Like scikit-learn's default, the macro average runs over the
    classes that occur in ``y_true`` or ``y_pred`` (an absent class is not a zero)."""
    gold, pred = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    if gold.shape != pred.shape:
        raise ValueError(f"{len(gold)} labels for {len(pred)} predictions")
    cm = confusion_matrix(gold, pred, k)
    present = (cm.sum(axis=0) + cm.sum(axis=1)) > 0
    f1 = f1_per_class(cm)
    return {
        "accuracy": float(np.trace(cm) / max(cm.sum(), 1)),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "n": int(cm.sum()),
    }


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32 (what the graphs compute), shifted by the row max."""
    z = np.asarray(logits, dtype=np.float32)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return np.asarray(z / z.sum(axis=-1, keepdims=True), dtype=np.float32)


def predictions(probs: np.ndarray, labels: Sequence[str]) -> list[LabelScores]:
    """One ``LabelScores`` per row of probabilities (first label wins a tie)."""
    out: list[LabelScores] = []
    for row in np.asarray(probs).tolist():
        best = max(range(len(row)), key=row.__getitem__)
        out.append(
            {
                "label": labels[best],
                "score": row[best],
                "scores": dict(zip(labels, row, strict=True)),
            }
        )
    return out


def compare(reference: np.ndarray, candidate: np.ndarray) -> tuple[float, float]:
    """(max absolute probability difference, share of rows with the same argmax)."""
    if reference.shape != candidate.shape:
        raise ValueError(f"shape {candidate.shape} differs from reference {reference.shape}")
    diff = float(np.max(np.abs(reference.astype(np.float64) - candidate.astype(np.float64))))
    agreement = float(np.mean(reference.argmax(-1) == candidate.argmax(-1)))
    return diff, agreement
