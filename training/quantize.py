"""Dynamic int8 quantization of an exported student, kept only if it agrees with PyTorch.

onnxruntime's ``quantize_dynamic``: int8 weights, uint8 activations quantized per batch at
run time, so no calibration data is needed. Settings are tried in order until the int8
model's argmax agrees with PyTorch's on at least MIN_INT8_AGREEMENT of the dev texts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from onnxruntime.quantization import QuantType, quantize_dynamic

from contracts.errors import ExportCheckError
from runtime.metrics import compare

MIN_INT8_AGREEMENT = 0.99


@dataclass(frozen=True)
class QuantSettings:
    """How ``quantize_dynamic`` is called (int8 weights, uint8 activations)."""

    per_channel: bool
    reduce_range: bool = False
    # Leave the embedding tables (Gather) in fp32 and quantize only the MatMuls: more
    # agreement for about the same speed, but the bundle's int8 model grows 23 -> 59 MB
    # for MiniLM (its 30k x 384 word embeddings stay float).
    fp32_embeddings: bool = False

    def as_dict(self) -> dict[str, bool]:
        return {
            "per_channel": self.per_channel,
            "reduce_range": self.reduce_range,
            "fp32_embeddings": self.fp32_embeddings,
        }


# Tried in order until int8 agrees with PyTorch on >= MIN_INT8_AGREEMENT of the dev texts.
# Measured on all-MiniLM-L6-v2 fine-tuned on CWI News (dev accuracy 0.824), argmax
# agreement with PyTorch on the 1,764 dev pairs: per-tensor 0.963 (fails), per-channel
# 0.991, per-channel + fp32 embeddings 0.994; reduce_range (7-bit weights, meant for x86
# CPUs without VNNI) lost agreement (per-tensor 0.896, per-channel 0.985), so it is not
# tried; keeping FFN down-projections or whole layers in fp32 gained less (0.990-0.992)
# and cost 25-50% latency.
QUANT_CANDIDATES = (
    QuantSettings(per_channel=True),
    QuantSettings(per_channel=True, fp32_embeddings=True),
)


class _DropAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextmanager
def _no_preprocessing_advice() -> Iterator[None]:
    """quantize_dynamic logs (on the root logger) advice to run quant_pre_process first;
    that needs symbolic shape inference, which fails on these graphs, and is for static
    quantization's calibration; the agreement check is what tells if int8 is good."""
    drop = _DropAdvice()
    logging.getLogger().addFilter(drop)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(drop)


def quantize_checked(
    fp32: Path,
    int8: Path,
    reference: np.ndarray,
    run: Callable[[Path], np.ndarray],
    min_agreement: float = MIN_INT8_AGREEMENT,
) -> tuple[QuantSettings, np.ndarray]:
    """Quantize ``fp32`` to ``int8`` with the first of QUANT_CANDIDATES whose argmax agrees
    with ``reference`` (PyTorch's dev probabilities) on >= ``min_agreement`` of the texts;
    ``run(model_path)`` gives a model's dev probabilities the way the API computes them.
    Return (settings, int8 dev probabilities); else remove ``int8`` and raise."""
    tried = []
    for settings in QUANT_CANDIDATES:
        with _no_preprocessing_advice():
            quantize_dynamic(
                fp32,
                int8,
                weight_type=QuantType.QInt8,
                per_channel=settings.per_channel,
                reduce_range=settings.reduce_range,
                op_types_to_quantize=["MatMul"] if settings.fp32_embeddings else None,
            )
        probs = run(int8)
        _, agreement = compare(reference, probs)
        if agreement >= min_agreement:
            return settings, probs
        tried.append(f"{settings.as_dict()}: {agreement:.4f}")
    int8.unlink()
    raise ExportCheckError(
        f"int8_argmax_agreement below {min_agreement} (int8 vs PyTorch on dev) with every "
        f"quantization setting tried ({'; '.join(tried)}); a student with many near-tie "
        "predictions quantizes badly: train it longer, or export without int8 (--no-quantize)"
    )
