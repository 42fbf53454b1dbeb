"""int8 variants of an exported student, kept only if they agree with PyTorch.

Variants are tried in ``QUANT_CANDIDATES`` order — fastest first, as measured by
``benchmarks/bench_int8.py`` — and the first whose argmax agrees with PyTorch on at least
MIN_INT8_AGREEMENT of the dev texts is shipped. When none does, an accuracy-controlled
search keeps whole encoder layers in fp32, the most sensitive first, until the bar holds
(or gives up after ``MAX_FP32_LAYERS``). docs/export.md has the measurements behind the
order; the short version:

- *fused*: quantize onnxruntime's fused graph (``training/export/graph_fusion.py``), so attention
  becomes one QAttention op and the projections MatMulInteger (VNNI), instead of the
  traced graph's dozens of small ops around each MatMul.
- *dynamic* (``quantize_dynamic``): int8 weights, uint8 activations quantized per batch at
  run time, no calibration. *static* (QDQ): activation ranges calibrated on dev texts.
- *per_channel*: one scale per output channel of each weight; per-tensor loses too much.
- *fp32_embeddings*: leave the embedding lookup (Gather / EmbedLayerNormalization) in
  fp32 — a near-free gain in agreement, at a larger file.
- weights int8 (U8S8, the VNNI path) or uint8 (U8U8).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)

from contracts.errors import ExportCheckError
from runtime.metrics import compare

MIN_INT8_AGREEMENT = 0.99
# The search keeps at most this many encoder layers in fp32 before it gives up: past
# that, the model is as slow as fp32 for the layers that matter and int8 buys little.
MAX_FP32_LAYERS = 3

Feeds = dict[str, np.ndarray]


@dataclass(frozen=True)
class QuantSettings:
    """One way to make the int8 model (recorded in bundle.json as ``int8_settings``)."""

    per_channel: bool = True
    reduce_range: bool = False
    fp32_embeddings: bool = False
    fused: bool = False
    method: Literal["dynamic", "static"] = "dynamic"
    weights: Literal["int8", "uint8"] = "int8"
    # Encoder layers kept in fp32 (by index), chosen by the accuracy-controlled search.
    fp32_layers: tuple[int, ...] = ()

    def as_dict(self) -> dict[str, bool | str | list[int]]:
        return {
            "per_channel": self.per_channel,
            "reduce_range": self.reduce_range,
            "fp32_embeddings": self.fp32_embeddings,
            "fused": self.fused,
            "method": self.method,
            "weights": self.weights,
            "fp32_layers": list(self.fp32_layers),
        }

    @property
    def label(self) -> str:
        parts = [
            "fused" if self.fused else "traced",
            self.method,
            "U8S8" if self.weights == "int8" else "U8U8",
            "per-channel" if self.per_channel else "per-tensor",
        ]
        if self.reduce_range:
            parts.append("7-bit")
        if self.fp32_embeddings:
            parts.append("fp32-embeddings")
        if self.fp32_layers:
            parts.append("fp32-layers=" + ",".join(map(str, self.fp32_layers)))
        return " ".join(parts)


# Fastest first, as measured by benchmarks/bench_int8.py (docs/export.md): on MiniLM-L6
# students the traced graph's int8 MatMuls cost no more CPU than the fused graph's
# QAttention (onnxruntime fuses the traced graph at session creation too), fp32 embeddings
# cost nothing at run time (a 2.5x larger file), and U8U8 weights agree more often than
# U8S8 but run ~1.5x slower (not the VNNI kernel): the last resort before the search.
# reduce_range (7-bit weights, for x86 without VNNI) and per-tensor scales lost agreement.
QUANT_CANDIDATES = (
    QuantSettings(),
    QuantSettings(fp32_embeddings=True),
    QuantSettings(fused=True),
    QuantSettings(fused=True, fp32_embeddings=True),
    QuantSettings(method="static", fp32_embeddings=True),
    QuantSettings(weights="uint8", fp32_embeddings=True),
)


class _DropAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextmanager
def _no_preprocessing_advice() -> Iterator[None]:
    """The quantizer logs (on the root logger) advice to run quant_pre_process first; that
    needs symbolic shape inference, which fails on these graphs. The agreement check is
    what tells whether int8 is good."""
    drop = _DropAdvice()
    logging.getLogger().addFilter(drop)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(drop)


class _Calibration(CalibrationDataReader):
    def __init__(self, feeds: Iterable[Feeds]) -> None:
        self._feeds = iter(feeds)

    def get_next(self) -> Feeds | None:
        return next(self._feeds, None)


_LAYER = re.compile(r"layer\.(\d+)/|^Attention_(\d+)$|^EmbedLayerNormalization|embeddings")


def layer_nodes(model: Path) -> dict[int, list[str]]:
    """Node names per encoder layer (-1: the embeddings), from the exporter's scope names
    (``/.../layer.3/...``) and the fused graph's ``Attention_3``."""
    groups: dict[int, list[str]] = {}
    for node in onnx.load(str(model), load_external_data=False).graph.node:
        m = _LAYER.search(node.name)
        if m is None:
            continue
        index = m.group(1) or m.group(2)
        groups.setdefault(int(index) if index is not None else -1, []).append(node.name)
    return groups


def quantize(
    src: Path,
    dst: Path,
    settings: QuantSettings,
    calibration: Callable[[], Iterable[Feeds]] | None = None,
) -> None:
    """Write the int8 model of ``src`` made with ``settings`` to ``dst``."""
    groups = layer_nodes(src)
    exclude = [name for layer in settings.fp32_layers for name in groups.get(layer, [])]
    weight_type = QuantType.QInt8 if settings.weights == "int8" else QuantType.QUInt8
    with _no_preprocessing_advice():
        if settings.method == "static":
            if calibration is None:
                raise ValueError("static quantization needs calibration feeds")
            quantize_static(
                src,
                dst,
                _Calibration(calibration()),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                weight_type=weight_type,
                per_channel=settings.per_channel,
                reduce_range=settings.reduce_range,
                # The pooler and classifier are Gemms: keep the head (and, with
                # fp32_embeddings, the lookup) in float; their error lands on the logits.
                op_types_to_quantize=["MatMul"] + ([] if settings.fp32_embeddings else ["Gather"]),
                nodes_to_exclude=exclude,
                extra_options={
                    "ActivationSymmetric": False,
                    "WeightSymmetric": True,
                    "DefaultTensorType": onnx.TensorProto.FLOAT,
                },
            )
        else:
            ops = ["MatMul", "Attention"]
            if not settings.fp32_embeddings:
                ops += ["Gather", "EmbedLayerNormalization"]
            quantize_dynamic(
                src,
                dst,
                weight_type=weight_type,
                per_channel=settings.per_channel,
                reduce_range=settings.reduce_range,
                op_types_to_quantize=ops,
                nodes_to_exclude=exclude,
                # Shape inference cannot type the fused graph's contrib-op outputs
                # (SkipLayerNormalization...); they are all float.
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )


def quantize_checked(
    fp32: Path,
    int8: Path,
    reference: np.ndarray,
    run: Callable[[Path], np.ndarray],
    min_agreement: float = MIN_INT8_AGREEMENT,
    *,
    fused: Path | None = None,
    calibration: Callable[[], Iterable[Feeds]] | None = None,
    candidates: tuple[QuantSettings, ...] = QUANT_CANDIDATES,
) -> tuple[QuantSettings, np.ndarray]:
    """Quantize to ``int8`` with the first candidate whose argmax agrees with ``reference``
    (PyTorch's dev probabilities) on >= ``min_agreement`` of the texts, then, if none does,
    search for fp32 layers that make it pass. ``run(model_path)`` gives a model's dev
    probabilities the way the API computes them; ``fused`` is the fused fp32 graph (fused
    candidates are skipped without it); ``calibration`` yields dev feeds for static
    quantization. Return (settings, int8 dev probabilities); else remove ``int8`` and raise
    ``ExportCheckError`` listing what each variant reached."""
    tried: list[str] = []
    best: tuple[float, QuantSettings] | None = None

    def attempt(settings: QuantSettings) -> tuple[float, np.ndarray] | None:
        """(agreement, dev probabilities) of one variant; None when it cannot be made."""
        nonlocal best
        source = fused if settings.fused else fp32
        if source is None or (settings.method == "static" and calibration is None):
            return None
        quantize(source, int8, settings, calibration)
        probs = run(int8)
        _, agreement = compare(reference, probs)
        tried.append(f"{settings.label}: {agreement:.4f}")
        if best is None or agreement > best[0]:
            best = (agreement, settings)
        return agreement, probs

    for settings in candidates:
        result = attempt(settings)
        if result is not None and result[0] >= min_agreement:
            return settings, result[1]

    # Accuracy-controlled search from the best variant: each round keeps in fp32 the one
    # more layer whose exclusion gains the most agreement.
    if best is not None:
        base = replace(best[1], fp32_layers=())
        source = fused if base.fused and fused is not None else fp32
        layers = sorted(k for k in layer_nodes(source) if k >= 0)
        kept: tuple[int, ...] = ()
        for _ in range(min(MAX_FP32_LAYERS, len(layers))):
            round_best: tuple[float, QuantSettings] | None = None
            for layer in (k for k in layers if k not in kept):
                settings = replace(base, fp32_layers=tuple(sorted((*kept, layer))))
                result = attempt(settings)
                if result is None:
                    continue
                if result[0] >= min_agreement:
                    return settings, result[1]
                if round_best is None or result[0] > round_best[0]:
                    round_best = (result[0], settings)
            if round_best is None:
                break
            kept = round_best[1].fp32_layers
    int8.unlink(missing_ok=True)
    raise ExportCheckError(
        f"int8_argmax_agreement below {min_agreement} (int8 vs PyTorch on dev) with every "
        f"quantization variant tried ({'; '.join(tried)}); a student with many near-tie "
        "predictions quantizes badly: train it longer, or set export.quantize=false "
        "(or export.require_int8=false to ship fp32 when int8 fails)"
    )
