"""OpenVINO as a second engine for a bundle's fp32 graph, behind the slice of
``onnxruntime.InferenceSession`` that ``runtime.classifier`` calls (``run``, ``get_inputs``,
``get_outputs``, ``get_providers``), so that batching, instances, temperature and logits stay
one implementation whichever engine runs the graph.

Why it exists: on CPUs without AVX-512/VNNI, onnxruntime's dynamic int8 kernels lose to
OpenVINO's fp32 ones (benchmarks/results/peers.md: length-grouped batches of 32 answered
1.68x the texts per second at 0.61x the CPU per text, same bundle). OpenVINO reads the fp32
``model.onnx``; the int8 ``model.int8.onnx`` holds onnxruntime's contrib operators
(``com.microsoft.QAttention``) that OpenVINO's ONNX front end does not convert.

What it must match: the probabilities export recorded for the bundle's dev samples with
onnxruntime fp32 (bundle.json), within the tolerance export held onnxruntime to against
PyTorch, with the same argmax; ``check_agreement`` refuses the version otherwise.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contracts.errors import ModelLoadError

PROVIDER = "OpenVINO CPU"


@dataclass(frozen=True)
class Port:
    """What ``get_inputs``/``get_outputs`` give: a name, like onnxruntime's NodeArg."""

    name: str


class OpenVinoSession:
    """One compiled model with ``threads`` inference threads and one stream.

    Thread-safe the way an onnxruntime session is: each calling thread gets its own infer
    request. Calls of several threads queue on the one stream, so unlike onnxruntime's
    session (which runs a call on its caller's thread) one instance is one call at a time:
    api.execution builds a session per instance (``shares_calls`` is False)."""

    shares_calls = False

    def __init__(self, model_file: Path, threads: int) -> None:
        try:
            import openvino as ov
        except ImportError as e:
            raise ModelLoadError(
                "LUGPI_ENGINE=openvino but the openvino package is not installed "
                "(pip install 'lugpi[openvino]')"
            ) from e
        config = {
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": "1",
            "INFERENCE_NUM_THREADS": str(max(1, threads)),
            # f32 everywhere: on bf16-capable CPUs OpenVINO would otherwise lower the
            # precision on its own, and the agreement check below is made for f32.
            "INFERENCE_PRECISION_HINT": "f32",
            # Pinned threads of several instances (one compiled model each) can land on
            # the same core; the scheduler spreads unpinned ones.
            "ENABLE_CPU_PINNING": "NO",
        }
        try:
            core = ov.Core()
            model = core.read_model(str(model_file))
            self._compiled: Any = core.compile_model(model, "CPU", config)
        except Exception as e:  # OpenVINO raises RuntimeError with the converter's message
            raise ModelLoadError(f"{model_file}: OpenVINO cannot load it: {e}") from e
        self._inputs = [Port(p.get_any_name()) for p in self._compiled.inputs]
        self._outputs = [Port(p.get_any_name()) for p in self._compiled.outputs]
        self._local = threading.local()

    def get_inputs(self) -> list[Port]:
        return list(self._inputs)

    def get_outputs(self) -> list[Port]:
        return list(self._outputs)

    def get_providers(self) -> list[str]:
        return [PROVIDER]

    def run(
        self, output_names: Sequence[str], feed: Mapping[str, np.ndarray], run_options: Any = None
    ) -> list[np.ndarray]:
        """``run_options`` (onnxruntime's arena shrinking) has no OpenVINO counterpart."""
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        results = request.infer(dict(feed))
        # Copies: the request reuses its output tensors on the next call.
        return [np.array(results[self._compiled.output(name)]) for name in output_names]


def check_agreement(
    ours: Sequence[Sequence[float]], recorded: Sequence[Sequence[float]], tolerance: float
) -> None:
    """Refuse a graph whose probabilities on the bundle's samples are more than
    ``tolerance`` from the ones recorded at export, or pick another label."""
    a, b = np.asarray(ours, dtype=np.float64), np.asarray(recorded, dtype=np.float64)
    if a.shape != b.shape:
        raise ModelLoadError(f"OpenVINO gave {a.shape} probabilities, bundle.json {b.shape}")
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    same = bool(np.all(a.argmax(axis=1) == b.argmax(axis=1))) if a.size else True
    if diff > tolerance or not same:
        raise ModelLoadError(
            f"OpenVINO disagrees with the probabilities export recorded: max |difference| "
            f"{diff:.2e} (at most {tolerance:g}), same label on every sample: {same}; "
            "serve it with LUGPI_ENGINE=onnxruntime"
        )
