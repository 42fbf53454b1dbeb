"""One ONNX student as a callable classifier: probabilities for texts or text pairs.

The API serves bundles through ``open_bundle``; export checks the files it is about to
ship through the same class (``OnnxClassifier.from_files``), so the tokenizer.json, the
graph's declared inputs and the padding are checked exactly as they are served.
Not thread-safe: one thread (the API's batcher) owns each instance.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort

from contracts.bundle import (
    FP32_TOLERANCE,
    MODEL_FP32,
    MODEL_INT8,
    ONNX_LOGITS,
    TOKENIZER,
    BundleManifest,
)
from contracts.errors import ModelLoadError
from contracts.truncation import Cut
from runtime.encoding import TextEncoder, TokenizerInput
from runtime.score_temperature import apply as apply_temperature
from runtime.session import CUDA, RuntimeOptions, Session, choose_providers, make_session

log = logging.getLogger("lugpi.runtime")

Variant = Literal["int8", "fp32"]


@dataclass(frozen=True)
class BundleLimits:
    """What a bundle may ask of the process that loads it (the API's settings): a bundle is
    input like any other, and a hot reload must not let one stall or exhaust the server."""

    max_tokenizer_bytes: int | None = None
    max_vocab_size: int | None = None
    max_length: int | None = None


@dataclass(frozen=True)
class Scores:
    probs: np.ndarray  # (n, n_labels) float32, at the classifier's score temperature
    logits: np.ndarray | None  # the same shape; None when the graph has no logits output


def _shrink_options() -> ort.RunOptions:
    options = ort.RunOptions()
    # Only the CPU arena: a CUDA session's host copies live there too, and shrinking the
    # device arena frees memory other calls reuse at once.
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return options


class OnnxClassifier:
    """An encoder and a session; ``output`` names the graph output that holds probabilities.

    ``temperature`` (the bundle's score temperature, 1 when it has none): probabilities are
    softmax(logits / temperature), so every surface serves the same scaled scores; the
    logits stay raw."""

    def __init__(
        self,
        session: Session,
        encoder: TextEncoder,
        output: str,
        labels: Sequence[str],
        variant: Variant = "fp32",
        lone_session: Session | None = None,
        temperature: float = 1.0,
        model_file: Path | None = None,
    ) -> None:
        graph_inputs = {i.name for i in session.get_inputs()}
        if graph_inputs != set(encoder.inputs):
            raise ModelLoadError(
                f"graph inputs {sorted(graph_inputs)} differ from the declared inputs "
                f"{encoder.inputs}"
            )
        self.session = session
        # Runs what ``run_scores(..., lone=True)`` is given; the main session if none.
        self.lone_session: Session = lone_session or session
        self.encoder = encoder
        self.output = output
        self.labels: list[str] = list(labels)
        self.variant: Variant = variant
        self.provider: str = session.get_providers()[0]
        # Graphs exported before bundle schema 2 have probabilities only.
        self.has_logits = ONNX_LOGITS in {o.name for o in session.get_outputs()}
        self._outputs = [output, *([ONNX_LOGITS] if self.has_logits else [])]
        if temperature != 1.0 and not (temperature > 0 and self.has_logits):
            raise ModelLoadError(
                f"score temperature {temperature} needs a positive value and a graph with "
                f"a {ONNX_LOGITS!r} output"
            )
        self.temperature = temperature
        self.model_file = model_file  # what ``sibling`` opens again

    def sibling(
        self, options: RuntimeOptions, lone_session: Session | None = None
    ) -> OnnxClassifier:
        """The same graph, encoder and labels on a new session built with ``options``: one
        more engine instance of a version (api.execution), or a session measured at load.
        ``lone_session``: the sibling's session for lone calls (default: its own)."""
        if self.model_file is None:
            raise ModelLoadError("this classifier was not opened from a file")
        session = make_session(self.model_file, options)
        return OnnxClassifier(
            session,
            self.encoder,
            self.output,
            self.labels,
            self.variant,
            lone_session,
            self.temperature,
            self.model_file,
        )

    @classmethod
    def from_files(
        cls,
        model_file: Path,
        tokenizer_file: Path,
        *,
        inputs: Sequence[str],
        output: str,
        max_length: int,
        labels: Sequence[str],
        options: RuntimeOptions | None = None,
        limits: BundleLimits | None = None,
        temperature: float = 1.0,
    ) -> OnnxClassifier:
        options = options or RuntimeOptions()
        limits = limits or BundleLimits()
        if limits.max_length is not None and max_length > limits.max_length:
            raise ModelLoadError(
                f"max_length {max_length} is more than {limits.max_length} "
                "(LUGPI_MAX_MODEL_LENGTH); not loaded"
            )
        encoder = TextEncoder.from_file(
            tokenizer_file, max_length, inputs, limits.max_tokenizer_bytes, limits.max_vocab_size
        )
        session = make_session(model_file, options)
        lone = None
        if (
            options.wants_lone_session
            and options.engine == "onnxruntime"
            and session.get_providers()[0] != CUDA
        ):
            lone = make_session(model_file, replace(options, spinning=True))
        variant: Variant = "int8" if model_file.name == MODEL_INT8 else "fp32"
        return cls(session, encoder, output, labels, variant, lone, temperature, model_file)

    # --- the steps, for callers that batch across requests --------------------------------
    def pair_up(self, texts: Sequence[str], pairs: Sequence[str] | None) -> list[TokenizerInput]:
        return self.encoder.pair_up(texts, pairs)

    def encode(self, inputs: Sequence[TokenizerInput], truncation: str = "right") -> list[Cut]:
        return self.encoder.encode(inputs, truncation)

    @staticmethod
    def was_truncated(encoding: Cut) -> bool:
        return TextEncoder.was_truncated(encoding)

    def run(self, encodings: Sequence[Cut]) -> np.ndarray:
        """Probabilities, shape (len(encodings), n_labels); pads to the longest given."""
        return self.run_scores(encodings).probs

    def run_scores(
        self, encodings: Sequence[Cut], *, lone: bool = False, shrink: bool = False
    ) -> Scores:
        """Probabilities and, where the graph has them, logits; pads to the longest given.

        ``lone``: the call is the only work of an otherwise idle server (a lone request run
        inline), so it may take the session whose threads spin during the call. Between
        operators a sleeping thread costs a wake-up (a futex and a scheduler round trip)
        that a spinning one does not; under load the same spinning takes cores the event
        loop needs, so batches keep the main session (benchmarks/results/peers.md).

        ``shrink``: give the memory arena's unused chunks back once the call is done. An
        arena keeps its peak otherwise: one call of 64 long texts left a server at 1.37 GB
        for good. Worth it after large calls only (the next one allocates again)."""
        session = self.lone_session if lone else self.session
        options = _shrink_options() if shrink else None
        outs = session.run(self._outputs, self.encoder.feed(encodings), options)
        probs = np.asarray(outs[0], dtype=np.float32)
        logits = np.asarray(outs[1], dtype=np.float32) if self.has_logits else None
        if logits is not None and self.temperature != 1.0:
            probs = apply_temperature(logits, self.temperature)
        return Scores(probs, logits)

    # --- whole calls ----------------------------------------------------------------------
    def predict(
        self, texts: Sequence[str], pairs: Sequence[str] | None = None
    ) -> tuple[np.ndarray, list[int]]:
        """Probabilities and the indices of truncated texts, in one onnxruntime call."""
        encodings = self.encode(self.pair_up(texts, pairs))
        truncated = [i for i, e in enumerate(encodings) if self.was_truncated(e)]
        return self.run(encodings), truncated

    def predict_proba(
        self, texts: Sequence[str], pairs: Sequence[str] | None = None, batch_size: int = 32
    ) -> np.ndarray:
        """Probabilities of many texts, ``batch_size`` per onnxruntime call."""
        if not texts:
            raise ValueError("no texts to classify")
        out = []
        for start in range(0, len(texts), batch_size):
            chunk = None if pairs is None else pairs[start : start + batch_size]
            out.append(self.predict(texts[start : start + batch_size], chunk)[0])
        return np.concatenate(out, axis=0)

    def predict_scores(
        self, texts: Sequence[str], pairs: Sequence[str] | None = None, batch_size: int = 32
    ) -> Scores:
        """Probabilities and (where the graph has them) logits of many texts."""
        if not texts:
            raise ValueError("no texts to classify")
        parts = []
        for start in range(0, len(texts), batch_size):
            chunk = None if pairs is None else pairs[start : start + batch_size]
            parts.append(
                self.run_scores(self.encode(self.pair_up(texts[start : start + batch_size], chunk)))
            )
        logits = None
        if self.has_logits:
            logits = np.concatenate([p.logits for p in parts if p.logits is not None], axis=0)
        return Scores(np.concatenate([p.probs for p in parts], axis=0), logits)

    def warm_up(self, text_pair: bool) -> None:
        """Run a batch of 1 and of 8 so that the first request does not pay for allocation;
        also checks that the output has one column per label, and that the graph takes an
        input of max_length tokens (a bundle.json may claim more than its graph's position
        table holds: such a version would answer every long text with an error)."""
        self._warm_up_max_length(text_pair)
        for n in (1, 8):
            texts = ["warm up the model"] * n
            encodings = self.encode(self.pair_up(texts, ["warm"] * n if text_pair else None))
            probs = self.run(encodings)
            if n == 1 and self.lone_session is not self.session:
                self.run_scores(encodings, lone=True)
            if probs.shape != (n, len(self.labels)):
                raise ModelLoadError(
                    f"output shape {probs.shape} does not match {n} texts x "
                    f"{len(self.labels)} labels"
                )

    def _warm_up_max_length(self, text_pair: bool) -> None:
        n = self.encoder.max_length
        words = " ".join(["warm"] * n)
        (cut,) = self.encode(self.pair_up([words], [words] if text_pair else None))
        try:
            self.run_scores([cut], shrink=True)
        except Exception as e:  # onnxruntime's own error types
            raise ModelLoadError(
                f"the graph cannot take an input of max_length ({n}) tokens, as bundle.json "
                f"says it can: {type(e).__name__}: {str(e)[:300]}"
            ) from e


def choose_variant(manifest: BundleManifest, options: RuntimeOptions, on_cuda: bool) -> Variant:
    if options.engine == "openvino":
        if options.variant == "int8":
            raise ModelLoadError(
                "LUGPI_ENGINE=openvino serves the fp32 graph (OpenVINO cannot read the int8 "
                "graph's onnxruntime operators); unset LUGPI_MODEL_VARIANT or set it to fp32"
            )
        return "fp32"
    wanted: Variant = (
        options.variant if options.variant != "auto" else ("fp32" if on_cuda else "int8")
    )
    if wanted == "int8" and MODEL_INT8 not in manifest.files:
        log.warning("%s/%s has no %s; serving fp32", manifest.name, manifest.version, MODEL_INT8)
        return "fp32"
    return wanted


def open_bundle(
    bundle_dir: Path,
    manifest: BundleManifest,
    options: RuntimeOptions,
    limits: BundleLimits | None = None,
) -> OnnxClassifier:
    """The classifier of one verified bundle directory, warmed up (at max_length too); on
    an engine other than onnxruntime, checked against the probabilities export recorded."""
    on_cuda = options.engine == "onnxruntime" and choose_providers(options.device)[0] == CUDA
    variant = choose_variant(manifest, options, on_cuda)
    model_file = bundle_dir / (MODEL_INT8 if variant == "int8" else MODEL_FP32)
    try:
        clf = OnnxClassifier.from_files(
            model_file,
            bundle_dir / TOKENIZER,
            inputs=manifest.inputs,
            output=manifest.output,
            max_length=manifest.max_length,
            labels=manifest.labels,
            options=options,
            limits=limits,
            temperature=manifest.temperature,
        )
        if manifest.logits_output is not None and not clf.has_logits:
            raise ModelLoadError(
                f"bundle.json names a {manifest.logits_output!r} output the graph lacks"
            )
        clf.warm_up(manifest.text_pair)
        if options.engine != "onnxruntime":
            _check_recorded(clf, manifest, options.engine)
    except ModelLoadError as e:
        raise ModelLoadError(f"{bundle_dir} ({manifest.name}/{manifest.version}): {e}") from e
    return clf


def _check_recorded(clf: OnnxClassifier, manifest: BundleManifest, engine: str) -> None:
    """The engine's probabilities for the bundle's samples, each alone in its batch, against
    the ones export recorded with onnxruntime: the bar export held onnxruntime to."""
    from runtime.openvino_engine import check_agreement

    checks = manifest.export_checks
    samples = [s for s in (checks.samples if checks else []) if MODEL_FP32 in s.probabilities]
    if not samples:
        raise ModelLoadError(
            f"LUGPI_ENGINE={engine}: bundle.json records no fp32 probabilities to check "
            "the engine against; serve it with LUGPI_ENGINE=onnxruntime"
        )
    ours = [
        clf.predict([s.text], [s.text_pair] if s.text_pair is not None else None)[0][0]
        for s in samples
    ]
    check_agreement(ours, [s.probabilities[MODEL_FP32] for s in samples], FP32_TOLERANCE)
