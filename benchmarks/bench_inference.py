"""Inference speed of one exported student: PyTorch eager, the transformers pipeline,
onnxruntime fp32 and onnxruntime int8, on this machine, in one run.

    python benchmarks/bench_inference.py [BUNDLE_OR_STUDENT_DIR] [--threads 2]

- A bundle dir (bundle.json) is used as is; its ``transformers/`` copy is the PyTorch model.
- A student dir (save_pretrained + lugpi.json) is exported first (checked, like the pipeline).
- Nothing given: the pretrained all-MiniLM-L6-v2 with a RANDOM 2-class head, exported, so
  that it runs on a fresh machine. Its accuracy is chance, and its int8 agreement is low
  (its logits barely differ between sentences, so int8 rounding flips many): both say
  nothing about a trained student. Pass a trained student dir for accuracy that means something.

Latency: one text per call, end to end (tokenize + run + probabilities), p50 and p99.
Throughput: texts/s in batches of 1, 8, 32, padded to the longest text of each batch.
Texts: CWI 2018 News test sentences (``../shared/datasets``) in file order; pair students
get (sentence, target). Accuracy: fp32 vs int8 on the whole CWI News test split.
Prints a Markdown table and writes it to benchmarks/results/inference.md.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
CWI = REPO_ROOT.parent / "shared" / "datasets" / "cwi2018"
RESULTS = REPO_ROOT / "benchmarks" / "results" / "inference.md"
BATCHES = (1, 8, 32)

Texts = tuple[list[str], list[str] | None]
Predict = Callable[[Sequence[str], Sequence[str] | None], object]


def read_cwi(split: str) -> tuple[list[str], list[str], list[int]]:
    with (CWI / f"News_{split}.tsv").open(encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r[1] for r in rows], [r[4] for r in rows], [int(r[9]) for r in rows]


def random_head_student(out: Path) -> Path:
    """all-MiniLM-L6-v2 + a RANDOM 2-class head, as a (sentence, target) pair classifier."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from contracts.artifacts import STUDENT_META, TextModelMeta
    from models.tiny import minilm_path

    torch.manual_seed(0)
    labels = ["0", "1"]
    model = AutoModelForSequenceClassification.from_pretrained(
        minilm_path(),
        num_labels=2,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(out)
    meta = TextModelMeta(
        kind="student",
        labels=labels,
        max_length=128,
        text_pair=True,
        base_model="all-minilm-l6-v2 + RANDOM head",
    )
    (out / STUDENT_META).write_text(meta.model_dump_json())
    return out


def bundle_for(target: Path | None, work: Path) -> Path:
    from contracts.artifacts import STUDENT_META, TextModelMeta
    from contracts.bundle import MANIFEST
    from training.export.bundle import MIN_INT8_AGREEMENT, export_student

    if target is not None and (target / MANIFEST).is_file():
        return target
    student = target if target is not None else random_head_student(work / "student")
    meta = TextModelMeta.model_validate_json((student / STUDENT_META).read_text())
    texts, pairs, labels = read_cwi("Dev")
    # A random head separates CWI sentences by less than int8 rounding moves them, so its
    # int8 check would fail; it is a speed model: record the agreement, do not demand it.
    min_agreement = MIN_INT8_AGREEMENT if target is not None else 0.0
    print(f"exporting {student} ...", flush=True)
    return export_student(
        student,
        work / "bundle",
        texts[:300],
        pairs[:300] if meta.text_pair else None,
        labels[:300],
        name="bench",
        min_int8_agreement=min_agreement,
    )


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def engines(bundle: Path, threads: int, pair: bool) -> dict[str, Predict]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    from contracts.bundle import MODEL_FP32, MODEL_INT8, TOKENIZER, read_manifest
    from runtime.classifier import OnnxClassifier
    from runtime.session import RuntimeOptions
    from training.export.bundle import TRANSFORMERS_DIR

    torch.set_num_threads(threads)
    manifest = read_manifest(bundle)
    hf_dir = bundle / TRANSFORMERS_DIR
    model = AutoModelForSequenceClassification.from_pretrained(hf_dir).eval()
    hf_tok = AutoTokenizer.from_pretrained(hf_dir)
    pipe = pipeline("text-classification", model=model, tokenizer=hf_tok, top_k=None, device=-1)

    @torch.inference_mode()
    def eager(texts: Sequence[str], pairs: Sequence[str] | None) -> object:
        enc = hf_tok(
            list(texts),
            list(pairs) if pairs else None,
            padding="longest",
            truncation=True,
            max_length=manifest.max_length,
            return_tensors="pt",
        )
        return torch.softmax(model(**enc).logits, -1).numpy()

    def piped(texts: Sequence[str], pairs: Sequence[str] | None) -> object:
        inputs = (
            [{"text": t, "text_pair": p} for t, p in zip(texts, pairs, strict=True)]
            if pairs
            else list(texts)
        )
        return pipe(inputs, batch_size=len(texts), truncation=True, max_length=manifest.max_length)

    def ort(file: str) -> Predict:
        clf = OnnxClassifier.from_files(
            bundle / file,
            bundle / TOKENIZER,
            inputs=manifest.inputs,
            output=manifest.output,
            max_length=manifest.max_length,
            labels=manifest.labels,
            options=RuntimeOptions(device="cpu", intra_op_threads=threads),
        )

        def run(texts: Sequence[str], pairs: Sequence[str] | None) -> object:
            return clf.predict(texts, pairs)[0]

        return run

    out: dict[str, Predict] = {
        "PyTorch eager": eager,
        "transformers pipeline": piped,
        "onnxruntime fp32": ort(MODEL_FP32),
    }
    if MODEL_INT8 in manifest.files:
        out["onnxruntime int8"] = ort(MODEL_INT8)
    return out


def latencies(predict: Predict, texts: Texts, n: int) -> list[float]:
    """Seconds per call for ``n`` calls of one text each, cycling through the texts."""
    sents, pairs = texts
    out = []
    for k in range(n):
        i = k % len(sents)
        t0 = time.perf_counter()
        predict(sents[i : i + 1], pairs[i : i + 1] if pairs else None)
        out.append(time.perf_counter() - t0)
    return out


def throughput(predict: Predict, texts: Texts, batch: int, n_texts: int) -> float:
    sents, pairs = texts
    n = max(batch, n_texts // batch * batch)
    t0 = time.perf_counter()
    for s in range(0, n, batch):
        predict(sents[s : s + batch], pairs[s : s + batch] if pairs else None)
    return n / (time.perf_counter() - t0)


def speed_rows(
    engines_: dict[str, Predict], texts: Texts, n_latency: int, n_batch: int
) -> list[list[str]]:
    rows: list[list[str]] = []
    base: dict[str | int, float] = {}
    for name, predict in engines_.items():
        predict(texts[0][:8], texts[1][:8] if texts[1] else None)  # warm up
        lat = latencies(predict, texts, n_latency)
        tput = {b: throughput(predict, texts, b, n_batch) for b in BATCHES}
        p50, p99 = pct(lat, 0.5) * 1e3, pct(lat, 0.99) * 1e3
        base = base or {"p50": p50, **{b: tput[b] for b in BATCHES}}
        rows.append(
            [name, f"{p50:.2f}", f"{p99:.2f}", f"{base['p50'] / p50:.2f}x"]
            + [f"{tput[b]:.0f} ({tput[b] / base[b]:.2f}x)" for b in BATCHES]
        )
        print(" | ".join(rows[-1]), flush=True)
    return rows


def accuracy_rows(engines_: dict[str, Predict], pair: bool) -> list[list[str]]:
    import numpy as np

    from runtime.metrics import accuracy_f1

    sents, pairs, labels = read_cwi("Test")
    probs = {}
    for name in ("onnxruntime fp32", "onnxruntime int8"):
        if name in engines_:
            out = [
                np.asarray(engines_[name](sents[i : i + 32], pairs[i : i + 32] if pair else None))
                for i in range(0, len(sents), 32)
            ]
            probs[name] = np.concatenate(out)
    rows = []
    for name, p in probs.items():
        m = accuracy_f1(labels, p.argmax(-1), p.shape[1])
        agree = float(np.mean(p.argmax(-1) == probs["onnxruntime fp32"].argmax(-1)))
        diff = float(np.abs(p - probs["onnxruntime fp32"]).max())
        rows.append(
            [
                name,
                f"{m['accuracy']:.4f}",
                f"{m['macro_f1']:.4f}",
                str(int(m["n"])),
                f"{agree:.4f}",
                f"{diff:.4f}",
            ]
        )
    return rows


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("target", nargs="?", type=Path, help="bundle dir or student dir")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--latency-calls", type=int, default=200)
    ap.add_argument("--batch-texts", type=int, default=256)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not CWI.is_dir():
        sys.exit(f"CWI 2018 not found at {CWI}: the benchmark reads its News sentences")

    from contracts.bundle import read_manifest

    with tempfile.TemporaryDirectory(prefix="lugpi-bench-") as tmp:
        bundle = bundle_for(args.target, Path(tmp))
        manifest = read_manifest(bundle)
        sents, pairs, _ = read_cwi("Test")
        texts: Texts = (sents, pairs if manifest.text_pair else None)
        load = os.getloadavg()
        engines_ = engines(bundle, args.threads, manifest.text_pair)
        speed = speed_rows(engines_, texts, args.latency_calls, args.batch_texts)
        acc = accuracy_rows(engines_, manifest.text_pair)

    what = "text pair (sentence, target)" if manifest.text_pair else "single text (sentence)"
    report = "\n".join(
        [
            "# Inference speed: one student, four ways",
            "",
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {cpu_name()}, {os.cpu_count()} cores, "
            f"{args.threads} threads per engine; load average at start {load[0]:.1f} "
            "(a shared machine is noisy: rerun on a quiet one for numbers to quote).",
            f"Model: {manifest.provenance.student_base_model or manifest.name}; input: {what}, "
            f"max_length {manifest.max_length}; int8 settings: "
            f"{manifest.export_checks.int8_settings if manifest.export_checks else None}.",
            "Texts: CWI 2018 News test, in file order; latency = one text per call, end to end "
            "(tokenize + run); throughput in texts/s, batches padded to their longest text; "
            "ratios are to PyTorch eager.",
            "",
            table(
                [
                    "engine",
                    "p50 ms (1 text)",
                    "p99 ms",
                    "p50 speed-up",
                    *[f"batch {b} texts/s" for b in BATCHES],
                ],
                speed,
            ),
            "",
            "Accuracy on the CWI News test split (agreement and max |dp| against fp32):",
            "",
            table(
                ["variant", "accuracy", "macro F1", "n", "argmax agreement", "max abs prob diff"],
                acc,
            ),
            "",
        ]
    )
    print("\n" + report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
