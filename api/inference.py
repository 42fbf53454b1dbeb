"""One bundle version as a callable classifier: onnxruntime session + ``tokenizers``.

Tokenization and padding are split so that the batcher can tokenize many requests at
once, group the texts by length, and pad each group only to its own longest text.
Not thread-safe: one batcher thread owns each ``OnnxClassifier``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer

from contracts.bundle import MODEL_FP32, MODEL_INT8, ONNX_LOGITS, TOKENIZER, BundleManifest
from contracts.errors import ModelLoadError

log = logging.getLogger("lugpi.api")

Variant = Literal["int8", "fp32"]
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


@dataclass(frozen=True)
class Scores:
    probs: np.ndarray  # (n, n_labels) float32
    logits: np.ndarray | None  # same shape; None when the graph has no logits output


@dataclass(frozen=True)
class RuntimeOptions:
    """How sessions are built; taken from ``ApiSettings``."""

    variant: Literal["auto", "int8", "fp32"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    spinning: bool = False


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


def choose_variant(manifest: BundleManifest, options: RuntimeOptions, on_cuda: bool) -> Variant:
    wanted: Variant = (
        options.variant if options.variant != "auto" else ("fp32" if on_cuda else "int8")
    )
    if wanted == "int8" and MODEL_INT8 not in manifest.files:
        log.warning("%s/%s has no %s; serving fp32", manifest.name, manifest.version, MODEL_INT8)
        return "fp32"
    return wanted


class OnnxClassifier:
    """Probabilities for texts (or text pairs) from one verified bundle directory."""

    def __init__(self, bundle_dir: Path, manifest: BundleManifest, options: RuntimeOptions) -> None:
        self.manifest = manifest
        self.labels: list[str] = list(manifest.labels)
        providers = choose_providers(options.device)
        self.variant: Variant = choose_variant(manifest, options, on_cuda=providers[0] == CUDA)
        model_file = bundle_dir / (MODEL_INT8 if self.variant == "int8" else MODEL_FP32)

        so = ort.SessionOptions()
        so.intra_op_num_threads = options.intra_op_threads
        so.inter_op_num_threads = options.inter_op_threads
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3  # onnxruntime's warnings are for exporters, not operators
        spin = "1" if options.spinning else "0"
        so.add_session_config_entry("session.intra_op.allow_spinning", spin)
        so.add_session_config_entry("session.inter_op.allow_spinning", spin)
        try:
            self.session = ort.InferenceSession(str(model_file), so, providers=providers)
            self.tokenizer = Tokenizer.from_file(str(bundle_dir / TOKENIZER))
        except Exception as e:  # onnxruntime and tokenizers raise their own types
            raise ModelLoadError(f"{model_file.parent}: cannot load: {e}") from e
        self.provider: str = self.session.get_providers()[0]

        graph_inputs = {i.name for i in self.session.get_inputs()}
        if graph_inputs != set(manifest.inputs):
            raise ModelLoadError(
                f"{bundle_dir}: graph inputs {sorted(graph_inputs)} differ from bundle.json "
                f"inputs {manifest.inputs}"
            )
        self._inputs = list(manifest.inputs)
        graph_outputs = {o.name for o in self.session.get_outputs()}
        # Graphs exported before logits were added have probabilities only.
        self.has_logits = ONNX_LOGITS in graph_outputs
        self._outputs = [manifest.output, *([ONNX_LOGITS] if self.has_logits else [])]
        # A saved tokenizer may pad every text to a fixed length (4x slower at batch 1,
        # DESIGN.md §4): pad ourselves, per group, to the longest text instead.
        padding = self.tokenizer.padding
        self.pad_id = (
            int(padding["pad_id"]) if padding else (self.tokenizer.token_to_id("[PAD]") or 0)
        )
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(manifest.max_length)

    @staticmethod
    def inputs(texts: Sequence[str], pairs: Sequence[str] | None) -> list[str | tuple[str, str]]:
        """Tokenizer inputs: the texts, or (text, text_pair) tuples."""
        if pairs is None:
            return list(texts)
        return list(zip(texts, pairs, strict=True))

    def encode(
        self, inputs: Sequence[str | tuple[str, str]], truncation: str = "right"
    ) -> list[Encoding]:
        """Token ids per input, truncated to max_length at the ``truncation`` end
        ("right" or "left"), unpadded; one tokenizer call."""
        if truncation == "right":
            return self.tokenizer.encode_batch(list(inputs))
        self.tokenizer.enable_truncation(self.manifest.max_length, direction="left")
        try:
            return self.tokenizer.encode_batch(list(inputs))
        finally:
            self.tokenizer.enable_truncation(self.manifest.max_length)

    @staticmethod
    def was_truncated(encoding: Encoding) -> bool:
        return len(encoding.overflowing) > 0

    def run(self, encodings: Sequence[Encoding]) -> np.ndarray:
        """Probabilities, shape (len(encodings), n_labels); pads to the longest given."""
        return self.run_scores(encodings).probs

    def run_scores(self, encodings: Sequence[Encoding]) -> Scores:
        """Probabilities and, if the graph has them, logits; pads to the longest given."""
        n = len(encodings)
        width = max(len(e.ids) for e in encodings)
        ids = np.full((n, width), self.pad_id, dtype=np.int64)
        mask = np.zeros((n, width), dtype=np.int64)
        types = np.zeros((n, width), dtype=np.int64)
        for row, enc in enumerate(encodings):
            m = len(enc.ids)
            ids[row, :m] = enc.ids
            mask[row, :m] = 1
            types[row, :m] = enc.type_ids
        arrays = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        outs = self.session.run(self._outputs, {k: arrays[k] for k in self._inputs})
        probs = np.asarray(outs[0], dtype=np.float32)
        logits = np.asarray(outs[1], dtype=np.float32) if self.has_logits else None
        return Scores(probs, logits)

    def predict(
        self, texts: Sequence[str], pairs: Sequence[str] | None = None
    ) -> tuple[np.ndarray, list[int]]:
        """Probabilities and the indices of truncated texts, in one onnxruntime call."""
        encodings = self.encode(self.inputs(texts, pairs))
        truncated = [i for i, e in enumerate(encodings) if self.was_truncated(e)]
        return self.run(encodings), truncated

    def warm_up(self) -> None:
        """Run a batch of 1 and of 8 so that the first request does not pay for allocation;
        also checks that the output has one column per label."""
        for n in (1, 8):
            texts = ["warm up the model"] * n
            pairs = ["warm"] * n if self.manifest.text_pair else None
            probs, _ = self.predict(texts, pairs)
            if probs.shape != (n, len(self.labels)):
                raise ModelLoadError(
                    f"{self.manifest.name}/{self.manifest.version}: output shape {probs.shape} "
                    f"does not match {n} texts x {len(self.labels)} labels in bundle.json"
                )
