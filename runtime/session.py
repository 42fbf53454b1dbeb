"""onnxruntime sessions as the server runs them: one place for options and providers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import onnxruntime as ort

from contracts.errors import ModelLoadError

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
Engine = Literal["onnxruntime", "openvino"]


class Port(Protocol):
    @property
    def name(self) -> str: ...


class Session(Protocol):
    """What the classifier calls on an engine's session: onnxruntime's InferenceSession,
    or runtime.openvino_engine.OpenVinoSession, which has the same slice of it."""

    def run(
        self, output_names: Sequence[str], feed: Mapping[str, np.ndarray], run_options: Any = None
    ) -> Sequence[Any]: ...

    def get_inputs(self) -> Sequence[Port]: ...

    def get_outputs(self) -> Sequence[Port]: ...

    def get_providers(self) -> list[str]: ...


@dataclass(frozen=True, kw_only=True)
class RuntimeOptions:
    """How sessions are built (the API takes them from ``ApiSettings``).

    The defaults (one thread, no spinning, CPU) suit the small shared machines that export
    runs its checks on: onnxruntime's own default (every core, spinning) starves the rest.
    """

    variant: Literal["auto", "int8", "fp32"] = "auto"
    # openvino: CPU only, the fp32 graph (runtime.openvino_engine says why).
    engine: Engine = "onnxruntime"
    device: Literal["auto", "cpu", "cuda"] = "cpu"
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    spinning: bool = False
    # A second session of the same graph, its threads spinning during a call, for the lone
    # requests a server runs inline when it is idle (see OnnxClassifier.run_scores).
    lone_spinning: bool = False

    @property
    def wants_lone_session(self) -> bool:
        """Whether a lone-request session would differ from the main one: not when the main
        one spins already, nor with one thread (nothing to wake, nothing to spin)."""
        return self.lone_spinning and not self.spinning and self.intra_op_threads != 1


def choose_providers(device: str) -> list[str]:
    available = ort.get_available_providers()
    if device == "cuda" and CUDA not in available:
        raise ModelLoadError(
            "LUGPI_DEVICE=cuda but onnxruntime offers no CUDAExecutionProvider; "
            "install onnxruntime-gpu or set LUGPI_DEVICE=auto"
        )
    if device != "cpu" and CUDA in available:
        return [CUDA, CPU]
    return [CPU]


def shares_calls(session: Session) -> bool:
    """Whether threads calling one session run their calls at once (onnxruntime runs a call
    on its caller's thread), so that one-thread instances can share it."""
    return bool(getattr(session, "shares_calls", True))


def make_session(model_file: Path, options: RuntimeOptions) -> Session:
    """A session with full graph optimisation; a file that does not load is a ModelLoadError."""
    if options.engine == "openvino":
        from runtime.openvino_engine import OpenVinoSession  # openvino is an optional extra

        return OpenVinoSession(model_file, options.intra_op_threads)
    so = ort.SessionOptions()
    so.intra_op_num_threads = options.intra_op_threads
    so.inter_op_num_threads = options.inter_op_threads
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # onnxruntime's warnings are for exporters, not operators
    spin = "1" if options.spinning else "0"
    so.add_session_config_entry("session.intra_op.allow_spinning", spin)
    so.add_session_config_entry("session.inter_op.allow_spinning", spin)
    if options.spinning:
        # Spin between the operators of a run only, not after it: idle threads spinning
        # between lone requests took the cores other work needed (measured on 2 loaded
        # cores, one request every 3 ms: p50 11.1 vs 16.3 ms, CPU 13.2 vs 19.9 ms).
        so.add_session_config_entry("session.force_spinning_stop", "1")
    try:
        return ort.InferenceSession(str(model_file), so, providers=choose_providers(options.device))
    except Exception as e:  # onnxruntime raises its own untyped Fail/InvalidGraph errors
        raise ModelLoadError(f"{model_file}: onnxruntime cannot load it: {e}") from e
