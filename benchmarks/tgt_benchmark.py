"""Teacher Guided Training on real data: baseline vs LUGPI student vs TGT students.

Rotten Tomatoes (sentence polarity) with a small labelled subset, the ``offline`` preset's
models (all-MiniLM-L6-v2, EfficientNet-Lite0, and the tiny-random image generator, whose
images are NOISE), and the built-in ``tiny-bbc-masked`` text generator (a tiny BERT masked
LM trained here on BBC News on first use). One process, seeds one after another; the
table is rewritten after every seed, so an interrupted run still reports what finished.

    python benchmarks/tgt_benchmark.py --seeds 0 1 2            # ~30-40 min on 2 busy cores

Writes benchmarks/results/tgt_rotten_tomatoes.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from contracts.config import load_config
from training.pipeline import Run, resolve_paths
from training.tracking.progress import RunContext

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
ROWS = (
    ("baseline", "Baseline (text only, CE)"),
    ("teacher:effnet", "Teacher"),
    ("student:effnet", "Student (LUGPI)"),
    # The masked-LM rewriting baselines (before issue 24: TGT's 'sampling'/'disagreement').
    ("tgt:augment", "Student (augment)"),
    ("tgt:augment-disagreement", "Student (augment, disagreement)"),
)


def overrides(args: argparse.Namespace, seed: int) -> dict[str, object]:
    data = Path(args.datasets) / "rotten-tomatoes"
    return {
        "name": f"tgt-rt-{seed}",
        "seed": seed,
        "data.train": str(data / "train.jsonl"),
        "data.dev": str(data / "dev.jsonl"),
        "data.test": str(data / "test.jsonl"),
        "data.format": "jsonl",
        "data.prompt_style": "plain",
        "data.max_train_samples": args.train,
        "data.max_eval_samples": args.eval,
        "generator.image_size": 32,
        "generator.steps": 1,
        "generator.cache_dir": str(Path(args.runs_dir) / "image-cache"),
        "teachers.0.modality": args.teacher_modality,
        "teachers.0.epochs": 3,
        "teachers.0.learning_rate": 2e-4,
        "teachers.0.batch_size": 16,
        "student.max_length": 48,
        "student.epochs": 3,
        "student.learning_rate": 2e-4,
        "student.batch_size": 16,
        "text_generator.model": "tiny-bbc-masked",
        "text_generator.cache_dir": str(Path(args.runs_dir) / "text-cache"),
        "tgt.enabled": True,
        "tgt.k": args.k,
        "tgt.modes": ["augment", "augment-disagreement"],
        "tgt.pool_factor": 2,
        "export.require_int8": False,
    }


def run_seed(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    cfg = resolve_paths(load_config("offline", overrides(args, seed)), ROOT)
    run = Run(cfg, Path(args.runs_dir) / f"seed{seed}", RunContext())
    started = time.perf_counter()
    run.pin_config()
    run.make("prepare")
    run.make("generate")
    run.make("teacher")
    run.make("tgt")
    run.make("distill")
    run.make("tgt-distill")
    run.make("baseline")
    run.evaluate()
    results = json.loads((run.layout.evaluate / "results.json").read_text())
    tgt = json.loads((run.layout.tgt / "stage.json").read_text())["summary"]
    per_epoch = {
        m: results["models"][f"tgt:{m}"].get("tgt", {}).get("generated_per_epoch")
        for m in cfg.tgt.modes
    }
    stage_seconds = {}
    for d in sorted(run.dir.iterdir()):
        record = d / "stage.json"
        if record.is_file():
            stage_seconds[d.name] = json.loads(record.read_text()).get("seconds")
    return {
        "seed": seed,
        "test_accuracy": {k: results["models"][k]["test"]["accuracy"] for k, _ in ROWS},
        "tgt": tgt,
        "generated_per_epoch": per_epoch,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "stage_seconds": stage_seconds,
    }


def table(done: list[dict[str, Any]]) -> str:
    seeds = [r["seed"] for r in done]
    head = "| Model | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | sd |"
    lines = [head, "|---|" + "---:|" * (len(seeds) + 2)]
    for key, name in ROWS:
        vals = [r["test_accuracy"][key] for r in done]
        sd = f"{statistics.stdev(vals):.3f}" if len(vals) > 1 else "–"
        cells = " | ".join(f"{v:.3f}" for v in vals)
        lines.append(f"| {name} | {cells} | {statistics.mean(vals):.3f} | {sd} |")
    return "\n".join(lines)


def write(args: argparse.Namespace, done: list[dict[str, Any]], total: float) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "tgt_rotten_tomatoes"
    out.with_suffix(".json").write_text(json.dumps({"args": vars(args), "seeds": done}, indent=2))
    counts = [
        f"- seed {r['seed']}: {r['tgt']['requested']} generated, {r['tgt']['kept']} kept "
        f"(sampling set {r['tgt']['kept_sampling']}; dropped {r['tgt']['dropped']}); per epoch "
        f"{r['generated_per_epoch']}; wall {r['wall_seconds']:.0f} s"
        for r in done
    ]
    text = [
        "# Teacher Guided Training on Rotten Tomatoes (offline preset)",
        "",
        f"Command: `python benchmarks/tgt_benchmark.py --seeds {' '.join(map(str, args.seeds))} "
        f"--train {args.train} --eval {args.eval} --k {args.k} "
        f"--teacher-modality {args.teacher_modality}`",
        "",
        f"{args.train} labelled training texts, dev and test {args.eval} each (seeded, "
        "stratified, per seed); test accuracy. Teacher modality: "
        f"{args.teacher_modality} (offline the images are noise: tiny-random generator).",
        "",
        table(done),
        "",
        "Generated texts (text generator tiny-bbc-masked, trained here on BBC News):",
        "",
        *counts,
        "",
        f"Total wall time: {total / 60:.1f} min for {len(done)} seed(s).",
    ]
    out.with_suffix(".md").write_text("\n".join(text) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--train", type=int, default=200)
    p.add_argument("--eval", type=int, default=300)
    p.add_argument("--k", type=int, default=2)
    p.add_argument(
        "--teacher-modality",
        default="text+image",
        choices=["text+image", "text"],
        help="'text': a text-only teacher (no images drawn or encoded; offline the images "
        "are noise anyway), for a machine too busy to encode them in time.",
    )
    p.add_argument("--runs-dir", default=str(ROOT / "runs" / "tgt-benchmark"))
    p.add_argument("--datasets", default=str(ROOT.parent / "shared" / "datasets"))
    args = p.parse_args()
    started, done = time.perf_counter(), []
    for seed in args.seeds:
        done.append(run_seed(args, seed))
        write(args, done, time.perf_counter() - started)
        print(table(done), flush=True)


if __name__ == "__main__":
    main()
