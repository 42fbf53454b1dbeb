"""Export a trained student to an ONNX bundle, checked against PyTorch before it is written.

    <out_dir>/  model.onnx  model.int8.onnx  tokenizer.json  bundle.json
                transformers/   (the student in save_pretrained format, for other tools)

The graph outputs probabilities (softmax inside), so the API only tokenizes and argmaxes,
and the logits beside them (raw scores: TEI's ``raw_scores``, OIP's ``logits`` tensor).

Why the legacy TorchScript exporter (``dynamo=False``): torch 2.13's dynamo exporter needs
onnxscript, which we do not ship, and the legacy one is what optimum-onnx itself calls for
these encoders. We call it directly rather than through optimum because we wrap the model
(softmax in the graph) and check it our own way; optimum is not needed at run time.

Every check runs the saved files through ``runtime.classifier.OnnxClassifier``, the class
the API serves with (``tokenizers`` + onnxruntime, padding to the longest text), so the
tokenizer.json and the graph's inputs are verified as they will be served.
The bundle's version is ``v0`` until ``contracts.repository.publish`` assigns one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from contracts.artifacts import STUDENT_META, TextModelMeta, atomic_dir
from contracts.bundle import (
    FP32_TOLERANCE,
    MANIFEST,
    MODEL_FP32,
    MODEL_INT8,
    ONNX_LOGITS,
    ONNX_OUTPUT,
    SCHEMA_VERSION,
    TOKENIZER,
    BundleManifest,
    CheckedSample,
    ExportChecks,
    Provenance,
    SplitMetrics,
    sha256_file,
    verify_bundle,
)
from contracts.errors import ArtifactError, ExportCheckError
from runtime.classifier import OnnxClassifier, Scores
from runtime.encoding import TextEncoder
from runtime.metrics import accuracy_f1, compare, confusion_matrix, softmax
from runtime.session import RuntimeOptions
from training.export.graph_fusion import fuse_transformer
from training.export.quantize import MIN_INT8_AGREEMENT, quantize_checked
from training.export.score_temperature import fit_score_temperature
from training.export.student_checkpoint import (
    TextSplit,
    check_tokenization,
    checked_split,
    graph_inputs,
    load_student_for_export,
    serving_tokenizer,
    torch_logits,
)

log = logging.getLogger("lugpi.export")

UNPUBLISHED_VERSION = "v0"
TRANSFORMERS_DIR = "transformers"
# transformers/onnx/model.onnx: a reference to model.onnx in bundle.json (contracts/bundle.py).
ONNX_DIR_COPY = f"{TRANSFORMERS_DIR}/onnx/{MODEL_FP32}"
N_SAMPLES = 8  # dev texts whose served probabilities bundle.json records


class _ProbabilityModel(torch.nn.Module):
    """The classifier with softmax on top; its forward takes exactly the graph's inputs
    and returns (probabilities, logits)."""

    def __init__(self, model: PreTrainedModel, inputs: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.inputs = list(inputs)

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(**dict(zip(self.inputs, tensors, strict=True))).logits
        return torch.softmax(logits, dim=-1), logits


def export_onnx(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerFast,
    inputs: Sequence[str],
    sample: TextSplit,
    path: Path,
    opset: int,
    *,
    max_length: int,
) -> None:
    """Trace ``model`` + softmax to ``path`` with dynamic batch and sequence axes.

    The trace inputs are cut at ``max_length``, as serving cuts every text: a dev text
    longer than the model's position table would otherwise fail the trace."""
    texts, pairs = sample.batch(0, 2)
    # Two texts of different lengths, so the traced graph sees real padding in the mask.
    enc = tokenizer(
        list(texts),
        list(pairs) if pairs else None,
        padding="longest",
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
    )
    args = tuple(enc[name] for name in inputs)
    axes = {name: {0: "batch", 1: "sequence"} for name in inputs}
    axes[ONNX_OUTPUT] = {0: "batch"}
    axes[ONNX_LOGITS] = {0: "batch"}
    with warnings.catch_warnings():
        # The tracer warns about every Python bool/int it bakes in; the checks that follow
        # (batches of other sizes and lengths) are what tell whether that mattered.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # eval() on the wrapper: the exporter restores the wrapper's mode afterwards, and
        # a fresh Module is in training mode, which would leave dropout on in `model`.
        torch.onnx.export(
            _ProbabilityModel(model, inputs).eval(),
            args,
            str(path),
            input_names=list(inputs),
            output_names=[ONNX_OUTPUT, ONNX_LOGITS],
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    onnx.checker.check_model(str(path))


def _check_options() -> RuntimeOptions:
    # OMP_NUM_THREADS or 1: the machines we share have few cores.
    return RuntimeOptions(
        device="cpu", intra_op_threads=int(os.environ.get("OMP_NUM_THREADS", "1"))
    )


def _fused_fp32(model: PreTrainedModel, traced: Path, dst: Path) -> Path | None:
    """The optimizer's fused graph of ``traced`` at ``dst``, or None for encoders it has no
    patterns for (training/graph_fusion.py)."""
    config = model.config
    fused = fuse_transformer(
        traced,
        dst,
        str(config.model_type),
        int(config.num_attention_heads),
        int(config.hidden_size),
    )
    return dst if fused is not None else None


# Static quantization's activation ranges come from this many dev texts: enough to see the
# spread of lengths and values, few enough that calibration takes seconds.
CALIBRATION_TEXTS = 256


def calibration_feeds(
    encoder: TextEncoder, split: TextSplit, batch_size: int
) -> Iterator[dict[str, np.ndarray]]:
    """Graph inputs of the first CALIBRATION_TEXTS texts of ``split``, batch by batch."""
    n = min(len(split.texts), CALIBRATION_TEXTS)
    for start in range(0, n, batch_size):
        texts, pairs = split.batch(start, min(batch_size, n - start))
        yield encoder.feed(encoder.encode(TextEncoder.pair_up(texts, pairs)))


def _accuracy(probs: np.ndarray, labels: Sequence[int] | None) -> float | None:
    if labels is None:
        return None
    return accuracy_f1(labels, probs.argmax(-1), probs.shape[1])["accuracy"]


def check_fp32(reference: np.ndarray, fp32: np.ndarray, dev: TextSplit) -> ExportChecks:
    """onnxruntime fp32 must reproduce PyTorch: probabilities within FP32_TOLERANCE, same argmax."""
    diff, agreement = compare(reference, fp32)
    if diff > FP32_TOLERANCE:
        raise ExportCheckError(
            f"fp32_max_abs_prob_diff {diff:.2e} > {FP32_TOLERANCE} "
            "(onnxruntime vs PyTorch on dev); the export is wrong"
        )
    if agreement < 1.0:
        raise ExportCheckError(
            f"fp32_argmax_agreement {agreement:.4f} < 1.0 "
            "(onnxruntime vs PyTorch on dev); the export is wrong"
        )
    return ExportChecks(
        n_texts=len(dev.texts),
        fp32_max_abs_prob_diff=diff,
        fp32_argmax_agreement=agreement,
        dev_accuracy_torch=_accuracy(reference, dev.labels),
        dev_accuracy_fp32=_accuracy(fp32, dev.labels),
    )


def check_logits(reference: np.ndarray, onnx_logits: np.ndarray | None) -> float:
    """The graph's logits must be PyTorch's: max |diff| / max(1, max |logit|) within
    FP32_TOLERANCE (softmax hides a per-row shift, so probabilities alone cannot tell)."""
    if onnx_logits is None:
        raise ExportCheckError(f"the exported graph has no {ONNX_LOGITS!r} output")
    scale = max(1.0, float(np.abs(reference).max()))
    diff = float(np.abs(reference - onnx_logits).max()) / scale
    if diff > FP32_TOLERANCE:
        raise ExportCheckError(
            f"fp32_max_rel_logit_diff {diff:.2e} > {FP32_TOLERANCE} (onnxruntime vs PyTorch "
            "logits on dev); the export is wrong"
        )
    return diff


def export_student(
    student_dir: Path,
    out_dir: Path,
    dev_texts: Sequence[str],
    dev_pairs: Sequence[str] | None,
    dev_labels: Sequence[int] | None,
    *,
    name: str,
    quantize: bool = True,
    require_int8: bool = True,
    min_int8_agreement: float = MIN_INT8_AGREEMENT,
    opset: int = 17,
    provenance: Mapping[str, object] | None = None,
    metrics: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None,
    test_texts: Sequence[str] | None = None,
    test_pairs: Sequence[str] | None = None,
    test_labels: Sequence[int] | None = None,
    with_transformers: bool = True,
    batch_size: int = 32,
    overwrite: bool = False,
) -> Path:
    """Export, check and write a bundle to ``out_dir`` (atomically); return ``out_dir``.

    ``metrics`` (``metrics[model][split]``, e.g. from evaluate) are recorded as given,
    except that ``student``/``student-int8`` on dev and test are measured here with
    onnxruntime: the numbers a plain session on the bundle reproduces. A failing check
    raises ``ExportCheckError`` naming the metric, and nothing is written; except that with
    ``require_int8=False`` a failing int8 check only drops model.int8.onnx (noted in
    ``provenance.export``), so that a weak demo student still ships, in fp32.
    ``min_int8_agreement`` lowers the int8 bar for benchmarks of untrained heads only: the
    agreement reached is recorded in ``export_checks`` either way.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not (overwrite and (out_dir / MANIFEST).is_file()):
        # atomic_dir would replace it: never delete a directory that is not a bundle.
        raise ArtifactError(
            f"{out_dir} already exists; choose a new output directory"
            + ("" if overwrite else " or pass overwrite=True to replace a bundle")
        )
    model, hf_tok, meta = load_student_for_export(Path(student_dir))
    n = len(meta.labels)
    dev = checked_split(dev_texts, dev_pairs, dev_labels, n, meta.text_pair, "dev")
    test = None
    if test_texts:
        test = checked_split(test_texts, test_pairs, test_labels, n, meta.text_pair, "test")
    inputs = graph_inputs(model, hf_tok, meta.text_pair)
    export_info: dict[str, object] = {
        "exporter": f"torch.onnx TorchScript (dynamo=False), torch {torch.__version__}",
        "opset": opset,
    }

    # scratch: graphs that are not (or not yet) part of the bundle, gone whatever happens.
    with (
        atomic_dir(out_dir, "export", overwrite=True) as tmp,
        tempfile.TemporaryDirectory(prefix="lugpi-export-") as scratch,
    ):
        serving_tokenizer(hf_tok, meta.max_length).save(str(tmp / TOKENIZER))
        # Check the file as the API reads it.
        encoder = TextEncoder.from_file(tmp / TOKENIZER, meta.max_length, inputs)
        for split in (dev, test):
            if split is not None:
                check_tokenization(hf_tok, encoder, split, meta.max_length, batch_size)

        export_onnx(model, hf_tok, inputs, dev, tmp / MODEL_FP32, opset, max_length=meta.max_length)
        reference_logits = torch_logits(model, hf_tok, dev, meta.max_length, batch_size)
        if with_transformers:
            _save_transformers_copy(
                model, hf_tok, Path(student_dir), tmp / TRANSFORMERS_DIR, tmp / TOKENIZER
            )
        curves = training_curves(Path(student_dir))
        prov = Provenance.model_validate(
            {
                **(provenance or {}),
                "export": export_info,
                **({"training_curves": curves} if curves is not None else {}),
            }
        )
        prov.student_base_model = prov.student_base_model or meta.base_model
        write_checked_bundle(
            tmp,
            Path(scratch),
            name=name,
            meta=meta,
            inputs=inputs,
            encoder=encoder,
            dev=dev,
            test=test,
            reference_logits=reference_logits,
            fuse=lambda traced, dst: _fused_fp32(model, traced, dst),
            quantize=quantize,
            require_int8=require_int8,
            min_int8_agreement=min_int8_agreement,
            provenance=prov,
            metrics=metrics,
            # Where TEI's ort backend and optimum look for the graph (they read "logits"):
            # the same bytes as model.onnx, so a manifest reference, not a second copy.
            references={ONNX_DIR_COPY: MODEL_FP32} if with_transformers else {},
            batch_size=batch_size,
        )
    return out_dir


def write_checked_bundle(
    tmp: Path,
    scratch: Path,
    *,
    name: str,
    meta: TextModelMeta,
    inputs: Sequence[str],
    encoder: TextEncoder,
    dev: TextSplit,
    test: TextSplit | None,
    reference_logits: np.ndarray,
    fuse: Callable[[Path, Path], Path | None] | None,
    quantize: bool,
    require_int8: bool,
    min_int8_agreement: float,
    provenance: Provenance,
    metrics: Mapping[str, Mapping[str, Mapping[str, float]]] | None,
    references: Mapping[str, str],
    batch_size: int,
) -> None:
    """Check the fp32 graph at ``tmp/model.onnx`` (beside ``tmp/tokenizer.json``) against
    ``reference_logits`` (the source model's own logits on ``dev``), add the int8 graph that
    passes its agreement check, fit the score temperature, and write ``bundle.json`` with
    every file's checksum; then verify the bundle. The one path by which every bundle is
    finished, whatever the source: a student traced here (``export_student``) or an ONNX
    classifier brought by a user (``training/export/onnx_import.py``).

    ``fuse(traced, dst)``: the fused fp32 graph at ``dst``, or None (no patterns for the
    encoder); with ``fuse=None`` the graph ships as given. ``provenance.export`` gets what
    happened to the graphs."""
    export_info = provenance.model_dump().get("export")
    info: dict[str, object] = dict(export_info) if isinstance(export_info, dict) else {}
    n = len(meta.labels)

    def classifier(path: Path, temperature: float = 1.0) -> OnnxClassifier:
        return OnnxClassifier.from_files(
            path,
            tmp / TOKENIZER,
            inputs=inputs,
            output=ONNX_OUTPUT,
            max_length=meta.max_length,
            labels=meta.labels,
            options=_check_options(),
            temperature=temperature,
        )

    def run(path: Path, split: TextSplit) -> np.ndarray:
        return classifier(path).predict_proba(split.texts, split.pairs, batch_size)

    reference = softmax(reference_logits)

    def checked(path: Path) -> tuple[ExportChecks, Scores]:
        """Probabilities and logits of an fp32 graph against the reference's."""
        scores = classifier(path).predict_scores(dev.texts, dev.pairs, batch_size)
        checks = check_fp32(reference, scores.probs, dev)
        checks.fp32_max_rel_logit_diff = check_logits(reference_logits, scores.logits)
        return checks, scores

    checks, fp32_scores = checked(tmp / MODEL_FP32)
    fused = None if fuse is None else fuse(tmp / MODEL_FP32, scratch / "fused.onnx")
    if fused is not None:
        try:
            fused_checks, fused_scores = checked(fused)
        except ExportCheckError as e:
            log.warning("fused fp32 graph not shipped: %s", e)
            info["fp32_graph"] = f"traced (fused graph failed its check: {e})"
            fused = None
        else:
            shutil.copyfile(fused, tmp / MODEL_FP32)
            checks, fp32_scores = fused_checks, fused_scores
            info["fp32_graph"] = "fused (onnxruntime transformer optimizer)"
    fp32 = fp32_scores.probs
    # probs[(variant, split)]: the dev ones are the check runs, reused for metrics.
    probs = {("student", "dev"): fp32}
    if quantize:
        try:
            settings, int8 = quantize_checked(
                tmp / MODEL_FP32,
                tmp / MODEL_INT8,
                reference,
                lambda path: run(path, dev),
                min_int8_agreement,
                fused=fused,
                calibration=lambda: calibration_feeds(encoder, dev, batch_size),
            )
        except ExportCheckError as e:
            if require_int8:
                raise
            log.warning("%s; shipping fp32 only", e)
            info["int8_dropped"] = str(e)
        else:
            diff, agreement = compare(reference, int8)
            checks.int8_max_abs_prob_diff, checks.int8_argmax_agreement = diff, agreement
            checks.dev_accuracy_int8 = _accuracy(int8, dev.labels)
            checks.int8_settings = settings.as_dict()
            probs[("student-int8", "dev")] = int8
    # --- score temperature (training/export/score_temperature.py): logits of every shipped
    # graph on dev and test; T is fitted on model.onnx's dev logits.
    logits = {("student", "dev"): fp32_scores.logits}
    for variant, path in (("student", MODEL_FP32), ("student-int8", MODEL_INT8)):
        for split_name, split in (("dev", dev), ("test", test)):
            if split is None or split.labels is None or not (tmp / path).is_file():
                continue
            if (variant, split_name) not in logits:
                scores = classifier(tmp / path).predict_scores(split.texts, split.pairs, batch_size)
                logits[(variant, split_name)] = scores.logits
                probs.setdefault((variant, split_name), scores.probs)
    score_temperature = fit_score_temperature(
        logits, {"dev": dev.labels, "test": test.labels if test is not None else None}
    )
    temperature = 1.0 if score_temperature is None else score_temperature.temperature
    # The samples are what a server returns, so at the score temperature.
    checks.samples = _samples(
        [classifier(tmp / f, temperature) for f in (MODEL_FP32, MODEL_INT8) if (tmp / f).is_file()],
        dev,
    )

    prov = Provenance.model_validate({**provenance.model_dump(), "export": info})
    files = sorted(p for p in tmp.rglob("*") if p.is_file())
    manifest = BundleManifest(
        schema_version=SCHEMA_VERSION,
        name=name,
        version=UNPUBLISHED_VERSION,
        labels=meta.labels,
        max_length=meta.max_length,
        text_pair=meta.text_pair,
        inputs=inputs,
        logits_output=ONNX_LOGITS,
        provenance=prov,
        metrics=_recorded_metrics(metrics, probs, {"dev": dev, "test": test}, n),
        export_checks=checks,
        files={p.relative_to(tmp).as_posix(): sha256_file(p) for p in files},
        references=dict(references),
        score_temperature=score_temperature,
        created_at=datetime.now(UTC),
    )
    (tmp / MANIFEST).write_text(manifest.model_dump_json(indent=2))
    verify_bundle(tmp)


# The loss curve keeps at most this many points: enough to draw, small in bundle.json.
CURVE_POINTS = 200


def training_curves(student_dir: Path) -> dict[str, object] | None:
    """The student's training curves from its ``history.json`` (written by distill): the
    loss per step (thinned to CURVE_POINTS) and the dev metrics per epoch. The bundle
    carries them so that whoever serves it (the web page) can show how it was trained
    without the run directory. None when the student has no history (an imported model)."""
    path = student_dir / "history.json"
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
        steps = [(float(s["step"]), float(s["loss"])) for s in raw.get("steps", [])]
        epochs = [
            (float(e["epoch"]), float(e["dev_accuracy"]), float(e["dev_macro_f1"]))
            for e in raw.get("epochs", [])
        ]
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("%s: unreadable, no training curves in the bundle: %s", path, e)
        return None
    stride = max(1, -(-len(steps) // CURVE_POINTS))
    thinned = steps[::stride]
    if steps and thinned[-1] != steps[-1]:
        thinned.append(steps[-1])
    return {
        "loss": [[s, round(v, 6)] for s, v in thinned],
        "dev_accuracy": [[e, round(a, 6)] for e, a, _ in epochs],
        "dev_macro_f1": [[e, round(f, 6)] for e, _, f in epochs],
        "best_epoch": int(raw.get("best_epoch", 0)),
    }


def _samples(classifiers: Sequence[OnnxClassifier], dev: TextSplit) -> list[CheckedSample]:
    """The first N_SAMPLES dev texts, each run alone, through every shipped graph."""
    out = []
    for i in range(min(N_SAMPLES, len(dev.texts))):
        pair = None if dev.pairs is None else [dev.pairs[i]]
        probs = {
            (MODEL_INT8 if c.variant == "int8" else MODEL_FP32): c.predict([dev.texts[i]], pair)[0][
                0
            ].tolist()
            for c in classifiers
        }
        out.append(
            CheckedSample(
                text=dev.texts[i], text_pair=pair[0] if pair else None, probabilities=probs
            )
        )
    return out


def _recorded_metrics(
    given: Mapping[str, Mapping[str, Mapping[str, float]]] | None,
    probs: Mapping[tuple[str, str], np.ndarray],
    splits: Mapping[str, TextSplit | None],
    n_labels: int,
) -> dict[str, dict[str, SplitMetrics]]:
    """The given metrics (complete ones), then the ONNX variants' measured ones over them.

    A given ``student`` entry (evaluate's, from PyTorch) is kept as ``student-pytorch``.
    """
    out: dict[str, dict[str, SplitMetrics]] = {}
    for model_name, per_split in (given or {}).items():
        for split_name, m in per_split.items():
            if {"accuracy", "macro_f1", "n"} <= set(m):
                key = "student-pytorch" if model_name == "student" else model_name
                out.setdefault(key, {})[split_name] = SplitMetrics.model_validate(m)
    for (variant, split_name), p in probs.items():
        split = splits[split_name]
        if split is None or split.labels is None:
            continue
        m = accuracy_f1(split.labels, p.argmax(-1), n_labels)
        source = "onnxruntime " + (MODEL_INT8 if variant.endswith("int8") else MODEL_FP32)
        # Row = true label, column = predicted (runtime.metrics), for the web page's matrix.
        confusion = confusion_matrix(np.asarray(split.labels), p.argmax(-1), n_labels).tolist()
        out.setdefault(variant, {})[split_name] = SplitMetrics.model_validate(
            {**m, "source": source, "confusion": confusion}
        )
    return out


def _save_transformers_copy(
    model: PreTrainedModel,
    hf_tok: PreTrainedTokenizerFast,
    student_dir: Path,
    dest: Path,
    serving_tokenizer_file: Path,
) -> None:
    """The student as save_pretrained (safetensors) for transformers pipelines and
    text-embeddings-inference (onnx/model.onnx is a reference in bundle.json: ``materialize``
    writes it); the API never reads it."""
    model.save_pretrained(dest, safe_serialization=True)
    hf_tok.save_pretrained(dest)
    # The same padding/truncation as the bundle's.
    shutil.copy2(serving_tokenizer_file, dest / "tokenizer.json")
    shutil.copy2(student_dir / STUDENT_META, dest / STUDENT_META)
