"""Every int8 variant (and the fused fp32 graph) of real fine-tuned students, side by side.

    python benchmarks/bench_int8.py --model runs/x/baseline --data runs/x/data \
        [--model ... --data ...] [--out benchmarks/results/int8]

For each student: agreement of each variant's argmax with PyTorch on dev and test, the
accuracy change, CPU time of one text (batch 1, one thread, median) and CPU throughput at
batch 32 (test texts in file order, mixed lengths), all through the API's path (tokenizer.json +
onnxruntime, runtime/classifier.py). Then what export would ship: the first variant of
training/export/quantize.py's order that meets the 99 % bar, or the accuracy-controlled search.
One process, one thread: the rows are comparable to each other; absolute times depend on
how loaded the machine is, so read the ratios to traced fp32. CPU time (time.process_time)
is measured rather than wall time, so that a shared machine does not swamp the figures.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contracts.bundle import ONNX_OUTPUT
from runtime.classifier import OnnxClassifier
from runtime.encoding import TextEncoder
from runtime.session import RuntimeOptions
from training.data.prepare import load_prepared
from training.export.bundle import calibration_feeds, export_onnx
from training.export.graph_fusion import fuse_transformer
from training.export.quantize import MIN_INT8_AGREEMENT, QuantSettings, quantize, quantize_checked
from training.export.student_checkpoint import (
    TextSplit,
    graph_inputs,
    load_student_for_export,
    serving_tokenizer,
    torch_probabilities,
)

VARIANTS: tuple[QuantSettings, ...] = (
    QuantSettings(per_channel=False),
    QuantSettings(per_channel=False, reduce_range=True),
    QuantSettings(),
    QuantSettings(weights="uint8"),
    QuantSettings(fp32_embeddings=True),
    QuantSettings(fused=True),
    QuantSettings(fused=True, weights="uint8"),
    QuantSettings(fused=True, fp32_embeddings=True),
    QuantSettings(method="static"),
    QuantSettings(method="static", fp32_embeddings=True),
)
LATENCY_TEXTS = 200


@dataclass
class Row:
    variant: str
    dev_agreement: float
    test_agreement: float
    dev_accuracy_delta: float
    test_accuracy_delta: float
    b1_ms: float
    b32_texts_per_s: float
    size_mb: float


def _speed(classifier: OnnxClassifier, split: TextSplit) -> tuple[float, float]:
    """(median CPU-ms for one text at batch 1, texts per CPU-second at batch 32), tokenizing
    included. CPU time of this process, not wall time: with one onnxruntime thread it is
    the work done, and it stays comparable while other processes share the cores (wall
    time on a loaded machine mostly measures the others)."""
    times = []
    for i in range(min(LATENCY_TEXTS, len(split.texts))):
        texts, pairs = split.batch(i, 1)
        start = time.process_time()
        classifier.predict_proba(texts, pairs, 1)
        times.append(time.process_time() - start)
    start = time.process_time()
    classifier.predict_proba(split.texts, split.pairs, 32)
    elapsed = time.process_time() - start
    return 1000 * float(np.median(times)), len(split.texts) / elapsed


def bench_student(model_dir: Path, data_dir: Path, work: Path) -> dict[str, object]:
    model, hf_tok, meta = load_student_for_export(model_dir)
    data = load_prepared(data_dir)
    splits = {
        name: TextSplit(data.texts(name), data.pairs(name), data.label_ids(name))
        for name in ("dev", "test")
    }
    inputs = graph_inputs(model, hf_tok, meta.text_pair)
    tokenizer_file = work / "tokenizer.json"
    serving_tokenizer(hf_tok, meta.max_length).save(str(tokenizer_file))
    ref = {n: torch_probabilities(model, hf_tok, s, meta.max_length, 32) for n, s in splits.items()}
    gold = {n: np.asarray(s.labels) for n, s in splits.items()}
    acc = {n: float(np.mean(ref[n].argmax(-1) == gold[n])) for n in splits}

    traced, fused = work / "traced.onnx", work / "fused.onnx"
    export_onnx(model, hf_tok, inputs, splits["dev"], traced, 17, max_length=meta.max_length)
    cfg = model.config
    has_fused = (
        fuse_transformer(traced, fused, cfg.model_type, cfg.num_attention_heads, cfg.hidden_size)
        is not None
    )

    def classifier(path: Path) -> OnnxClassifier:
        return OnnxClassifier.from_files(
            path,
            tokenizer_file,
            inputs=inputs,
            output=ONNX_OUTPUT,
            max_length=meta.max_length,
            labels=meta.labels,
            options=RuntimeOptions(device="cpu", intra_op_threads=1),
        )

    def run(path: Path, split: str) -> np.ndarray:
        s = splits[split]
        return classifier(path).predict_proba(s.texts, s.pairs, 32)

    def row(name: str, path: Path) -> Row:
        probs = {n: run(path, n) for n in splits}
        agree = {n: float(np.mean(probs[n].argmax(-1) == ref[n].argmax(-1))) for n in splits}
        delta = {n: float(np.mean(probs[n].argmax(-1) == gold[n])) - acc[n] for n in splits}
        b1, b32 = _speed(classifier(path), splits["test"])
        r = Row(
            name,
            agree["dev"],
            agree["test"],
            delta["dev"],
            delta["test"],
            b1,
            b32,
            path.stat().st_size / 2**20,
        )
        print(
            f"  {name:55s} dev {r.dev_agreement:.4f} test {r.test_agreement:.4f} "
            f"b1 {r.b1_ms:.2f} ms b32 {r.b32_texts_per_s:.0f}/s",
            flush=True,
        )
        return r

    rows = [row("fp32 traced", traced)]
    if has_fused:
        rows.append(row("fp32 fused", fused))
    encoder = TextEncoder.from_file(tokenizer_file, meta.max_length, inputs)
    calib = lambda: calibration_feeds(encoder, splits["dev"], 32)  # noqa: E731
    for settings in VARIANTS:
        if settings.fused and not has_fused:
            continue
        out = work / "int8.onnx"
        quantize(fused if settings.fused else traced, out, settings, calib)
        rows.append(row("int8 " + settings.label, out))
    shipped: str
    try:
        chosen, _ = quantize_checked(
            traced,
            work / "export.onnx",
            ref["dev"],
            lambda p: run(p, "dev"),
            MIN_INT8_AGREEMENT,
            fused=fused if has_fused else None,
            calibration=calib,
        )
        shipped = chosen.label
        if chosen.fp32_layers:
            rows.append(row("int8 " + chosen.label + " (search)", work / "export.onnx"))
    except Exception as e:
        shipped = f"none: {e}"
    return {
        "model": str(model_dir),
        "base_model": meta.base_model,
        "dev_accuracy_torch": acc["dev"],
        "test_accuracy_torch": acc["test"],
        "n_dev": len(splits["dev"].texts),
        "n_test": len(splits["test"].texts),
        "export_ships": shipped,
        "rows": [r.__dict__ for r in rows],
    }


def to_markdown(results: list[dict[str, object]]) -> str:
    lines = []
    for res in results:
        rows = res["rows"]
        assert isinstance(rows, list)
        base = rows[0]
        lines += [
            f"### {res['model']} ({res['base_model']}; PyTorch dev acc "
            f"{res['dev_accuracy_torch']:.3f}, test {res['test_accuracy_torch']:.3f}; "
            f"{res['n_dev']} dev / {res['n_test']} test)",
            "",
            f"export ships: **{res['export_ships']}**",
            "",
            "| variant | agree dev | agree test | Δacc dev | Δacc test | b1 CPU-ms "
            "| b32 texts/CPU-s | b1 vs fp32 | b32 vs fp32 | MB |",
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for r in rows:
            lines.append(
                f"| {r['variant']} | {r['dev_agreement']:.4f} | {r['test_agreement']:.4f} | "
                f"{r['dev_accuracy_delta']:+.4f} | {r['test_accuracy_delta']:+.4f} | "
                f"{r['b1_ms']:.2f} | {r['b32_texts_per_s']:.0f} | "
                f"{r['b1_ms'] / base['b1_ms']:.2f}× | "
                f"{r['b32_texts_per_s'] / base['b32_texts_per_s']:.2f}× | {r['size_mb']:.0f} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", required=True, type=Path)
    parser.add_argument("--data", action="append", required=True, type=Path)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/int8"))
    args = parser.parse_args()
    if len(args.model) != len(args.data):
        parser.error("give one --data (a prepared data dir) per --model")
    results = []
    for model_dir, data_dir in zip(args.model, args.data, strict=True):
        print(f"{model_dir}:", flush=True)
        with tempfile.TemporaryDirectory() as work:
            results.append(bench_student(model_dir, data_dir, Path(work)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    args.out.with_suffix(".md").write_text(to_markdown(results))
    print(to_markdown(results))


if __name__ == "__main__":
    main()
