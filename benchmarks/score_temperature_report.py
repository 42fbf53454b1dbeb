"""Score temperature of a bundle on a labelled file: ECE, NLL and Brier before and after.

    python benchmarks/score_temperature_report.py BUNDLE_DIR TEST_FILE [--dev DEV_FILE]
        [--format jsonl|cwi2018]

Runs the bundle's fp32 graph (runtime/, as served) on the file and prints accuracy, the
mean top score, and ECE/NLL/Brier at T = 1 and at the bundle's score temperature (or, with
``--dev``, at a T fitted on that file: for bundles exported before score temperatures).
JSONL rows are ``{"text", "label"[, "text_pair"]}``; cwi2018 is the shared task's TSV
(sentence, target as the pair, binary label). The README's figures come from this script.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from contracts.bundle import MODEL_FP32, TOKENIZER, verify_bundle  # noqa: E402
from runtime.classifier import OnnxClassifier  # noqa: E402
from runtime.score_temperature import fit_temperature, score_quality  # noqa: E402

Rows = tuple[list[str], list[str] | None, list[str]]


def read_rows(path: Path, fmt: str) -> Rows:
    if fmt == "cwi2018":
        with path.open(encoding="utf-8") as f:
            rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        return [r[1] for r in rows], [r[4] for r in rows], [r[9] for r in rows]
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    pairs = [str(r["text_pair"]) for r in records] if "text_pair" in records[0] else None
    return [str(r["text"]) for r in records], pairs, [str(r["label"]) for r in records]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("test", type=Path)
    parser.add_argument("--dev", type=Path, default=None, help="fit T on this file instead")
    parser.add_argument("--format", choices=["jsonl", "cwi2018"], default="jsonl")
    args = parser.parse_args()

    manifest = verify_bundle(args.bundle)
    clf = OnnxClassifier.from_files(
        args.bundle / MODEL_FP32,
        args.bundle / TOKENIZER,
        inputs=manifest.inputs,
        output=manifest.output,
        max_length=manifest.max_length,
        labels=manifest.labels,
    )

    def logits_of(path: Path) -> tuple[np.ndarray, np.ndarray]:
        texts, pairs, labels = read_rows(path, args.format)
        scores = clf.predict_scores(texts, pairs)
        if scores.logits is None:
            raise SystemExit(f"{args.bundle}: the graph has no logits output (schema 1)")
        return scores.logits, np.array([manifest.labels.index(y) for y in labels])

    logits, gold = logits_of(args.test)
    if args.dev is not None:
        temperature, source = fit_temperature(*logits_of(args.dev)), f"fitted on {args.dev}"
    else:
        temperature, source = manifest.temperature, "the bundle's"
    accuracy = float((logits.argmax(-1) == gold).mean())
    print(f"bundle {manifest.name}/{manifest.version}, {args.test}: n={len(gold)}")
    print(f"accuracy {accuracy:.4f}; score temperature {temperature:.4f} ({source})")
    for label, t in (("before (T=1)", 1.0), ("after", temperature)):
        q = score_quality(logits, gold, t)
        z = logits.astype(np.float64) / t
        top = np.exp(z - z.max(-1, keepdims=True))
        mean_top = float((top.max(-1) / top.sum(-1)).mean())
        print(
            f"  {label:<13} ECE {q['ece']:.4f}  NLL {q['nll']:.4f}  Brier {q['brier']:.4f}  "
            f"mean top score {mean_top:.3f}"
        )


if __name__ == "__main__":
    main()
