"""Run a student bundle the way the API does: ``tokenizers`` + onnxruntime + numpy.

Export checks every model through these functions, so what is checked at export
time is the serving path itself (tokenizer.json as saved, the graph's declared
inputs, batching with padding to the longest text). Torch-free and
transformers-free: the API may import it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from contracts.errors import ArtifactError


def make_session(model_path: Path, threads: int | None = None) -> ort.InferenceSession:
    """A CPU session with full graph optimisation (what the API runs).

    ``threads`` defaults to OMP_NUM_THREADS or 1: the machines we share have few cores and
    ORT's default (all cores, spinning) starves everything else.
    """
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads or int(os.environ.get("OMP_NUM_THREADS", "1"))
    opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own untyped Fail/InvalidGraph errors
        raise ArtifactError(f"{model_path}: onnxruntime cannot load it: {e}") from e


def load_tokenizer(path: Path) -> Tokenizer:
    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:
        raise ArtifactError(f"{path}: not a valid tokenizers file: {e}") from e


def encode(
    tokenizer: Tokenizer,
    texts: Sequence[str],
    pairs: Sequence[str] | None,
    inputs: Sequence[str],
) -> dict[str, np.ndarray]:
    """Tokenize one batch into the graph's inputs (int64, padded to the longest text)."""
    if pairs is not None:
        if len(pairs) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(pairs)} text pairs")
        encodings = tokenizer.encode_batch(list(zip(texts, pairs, strict=True)))
    else:
        encodings = tokenizer.encode_batch(list(texts))
    arrays = {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
    }
    return {name: arrays[name] for name in inputs}


def predict_proba(
    session: ort.InferenceSession,
    tokenizer: Tokenizer,
    texts: Sequence[str],
    pairs: Sequence[str] | None,
    inputs: Sequence[str],
    output: str,
    batch_size: int = 32,
) -> np.ndarray:
    """Probabilities, shape (len(texts), n_labels), float32."""
    if not texts:
        raise ValueError("no texts to classify")
    out: list[np.ndarray] = []
    for start in range(0, len(texts), batch_size):
        batch_pairs = None if pairs is None else pairs[start : start + batch_size]
        feed = encode(tokenizer, texts[start : start + batch_size], batch_pairs, inputs)
        out.append(session.run([output], feed)[0])
    return np.concatenate(out, axis=0)


def split_metrics(pred: np.ndarray, labels: Sequence[int], n_classes: int) -> dict[str, float]:
    """Accuracy and macro F1 of predicted class ids against gold ids (numpy only).

    Macro F1 averages over the classes present in gold or prediction (sklearn's
    default on the union of labels), so a class nobody predicts counts as F1 = 0.
    """
    gold = np.asarray(labels, dtype=np.int64)
    if gold.shape != pred.shape:
        raise ValueError(f"{len(gold)} labels for {len(pred)} predictions")
    f1s = []
    for c in range(n_classes):
        tp = int(np.sum((pred == c) & (gold == c)))
        fp = int(np.sum((pred == c) & (gold != c)))
        fn = int(np.sum((pred != c) & (gold == c)))
        if tp + fp + fn == 0:
            continue
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return {
        "accuracy": float(np.mean(pred == gold)),
        "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
        "n": len(gold),
    }


def compare(reference: np.ndarray, candidate: np.ndarray) -> tuple[float, float]:
    """(max absolute probability difference, share of rows with the same argmax)."""
    if reference.shape != candidate.shape:
        raise ValueError(f"shape {candidate.shape} differs from reference {reference.shape}")
    diff = float(np.max(np.abs(reference.astype(np.float64) - candidate.astype(np.float64))))
    agreement = float(np.mean(reference.argmax(-1) == candidate.argmax(-1)))
    return diff, agreement
