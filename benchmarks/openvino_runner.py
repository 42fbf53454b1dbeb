"""OpenVINO on a bundle's graph, shaped like runtime.classifier.OnnxClassifier for the raw
rows of benchmarks/bench_peers.py (``predict``, ``encode``, ``run_scores``).

Tokenization and padding are the bundle's own (the classifier's TextEncoder), so only the
engine differs. OpenVINO reads the fp32 ``model.onnx``; the int8 ``model.int8.onnx`` holds
onnxruntime's fused contrib operators (``com.microsoft.QAttention``), which OpenVINO's ONNX
front end has no conversion for (2026.4: "No conversion rule found"), so the OpenVINO int8
path would need its own quantization (NNCF) of the fp32 graph: not done here.

``openvino`` is not a dependency of the project: ``pip install openvino`` into the
benchmark's environment to get these rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from contracts.bundle import MODEL_FP32
from contracts.truncation import Cut
from runtime.classifier import OnnxClassifier, Scores


class OpenVinoClassifier:
    def __init__(self, reference: OnnxClassifier, bundle: Path, threads: int) -> None:
        import openvino as ov

        self.reference = reference
        core = ov.Core()
        model = core.read_model(str(bundle / MODEL_FP32))
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": str(threads)}
        self.compiled: Any = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.output = self.compiled.output(reference.output)

    def encode(self, texts: Sequence[str]) -> list[Cut]:
        return self.reference.encode(list(texts))

    def run_scores(self, encodings: Sequence[Cut]) -> Scores:
        out = self.request.infer(self.reference.encoder.feed(encodings))
        return Scores(np.asarray(out[self.output], dtype=np.float32), None)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return self.run_scores(self.encode(texts)).probs


def agreement(ov_clf: OpenVinoClassifier, texts: Sequence[str]) -> tuple[float, float]:
    """(argmax agreement, max |prob difference|) of OpenVINO fp32 against the reference
    (onnxruntime, the graph the server serves), each text alone in its batch."""
    same, worst = 0, 0.0
    for text in texts:
        enc = ov_clf.encode([text])
        a = ov_clf.run_scores(enc).probs[0]
        b = ov_clf.reference.run_scores(enc).probs[0]
        same += int(np.argmax(a) == np.argmax(b))
        worst = max(worst, float(np.max(np.abs(a - b))))
    return same / max(len(texts), 1), worst
