"""Results of the paper benchmark: read them from the run dirs, write the tables.

``collect_run`` turns one dataset-and-seed run (its combined ``evaluate/results.json`` and
the ``stage.json`` of every stage it ran) into plain numbers; ``render`` turns the whole
report (what ``paper_tables.json`` holds) into ``paper_tables.md``. Cells over several
seeds are mean ± sample standard deviation; differences (student − baseline, ...) are
taken per seed first, so the spread is that of the paired difference.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from contracts.artifacts import is_complete, read_stage

Report = dict[str, Any]  # what paper_tables.json holds
METRICS = ("accuracy", "macro_f1")
SMOKE_NOTE = [
    "> **Smoke budget:** tiny RANDOM-weight text and image models, 40 training examples: "
    "these numbers only show that every model ran. They mean nothing.",
    "",
]


def role(result_key: str, image_only: dict[str, str]) -> str:
    """results.json model key -> role in the tables.

    ``image_only`` maps an image-only teacher's name to the teacher it copies."""
    if result_key.startswith("ablation:"):
        return {"self-distill": "self-distilled"}.get(result_key[9:], result_key[9:])
    if result_key == "teacher:text-only":
        return "text teacher"
    if result_key.startswith("teacher:"):
        name = result_key[8:]
        return f"image-only:{image_only[name]}" if name in image_only else f"teacher:{name}"
    return result_key  # baseline, student


def collect_run(root: Path, image_only: dict[str, str]) -> dict[str, Any]:
    """Test/dev metrics per role and the seconds of every stage this run computed.

    Stage dirs shared through symlinks are counted once, where they were made."""
    results = json.loads((root / "evaluate" / "results.json").read_text())
    models = {
        role(key, image_only): {
            split: {k: entry[split][k] for k in (*METRICS, "n")}
            for split in ("dev", "test")
            if isinstance(entry.get(split), dict)
        }
        for key, entry in results["models"].items()
    }
    stages: dict[str, float] = {}
    for stage_dir in sorted([*root.glob("*/*/"), root / "evaluate"]):
        if stage_dir.is_symlink() or not is_complete(stage_dir):
            continue
        stages[str(stage_dir.relative_to(root))] = round(read_stage(stage_dir).seconds, 1)
    return {"models": models, "stage_seconds": stages, "compute_seconds": sum(stages.values())}


def stats(values: Sequence[float]) -> dict[str, float]:
    """mean, sample std (0 for one value) and n."""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": sd, "n": len(values)}


def roles_of(runs: dict[str, Any]) -> list[str]:
    """Every role any seed has (a seed run with fewer --variants lacks some)."""
    return list(dict.fromkeys(r for run in runs.values() for r in run["models"]))


def summarize(runs: dict[str, Any], split: str = "test") -> dict[str, dict[str, Any]]:
    """role -> metric -> stats over the seeds that have the role."""
    return {
        r: {
            m: stats([run["models"][r][split][m] for run in runs.values() if r in run["models"]])
            for m in METRICS
        }
        for r in roles_of(runs)
    }


def _cell(values: Sequence[float], signed: bool = False) -> str:
    if not values:
        return "–"  # not trained for this dataset (see --variants)
    s = stats(values)
    text = f"{s['mean']:+.3f}" if signed else f"{s['mean']:.3f}"
    return f"{text} ± {s['std']:.3f}" if s["n"] > 1 else text


def _values(ds: dict[str, Any], r: str, metric: str = "accuracy") -> list[float]:
    return [run["models"][r]["test"][metric] for run in ds["runs"].values() if r in run["models"]]


def _diff(ds: dict[str, Any], a: str, b: str, metric: str = "accuracy") -> str:
    """Per seed first (seeds with both roles), then mean ± std of the differences."""
    runs = [run["models"] for run in ds["runs"].values()]
    both = [m for m in runs if a in m and b in m]
    return _cell([m[a]["test"][metric] - m[b]["test"][metric] for m in both], signed=True)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _teachers(ds: dict[str, Any]) -> list[str]:
    return [r.split(":", 1)[1] for r in roles_of(ds["runs"]) if r.startswith("teacher:")]


def table1(report: Report, metric: str) -> str:
    # The paper's figures are accuracies (baseline -> best student) only.
    paper_column = metric == "accuracy"
    header = ["Dataset", *(["Paper: baseline → student"] if paper_column else []), "Baseline"]
    first = next(iter(report["datasets"].values()))
    names = _teachers(first)
    header += [f"Image only ({n})" for n in names] + [f"Teacher ({n})" for n in names]
    header += ["Student", "Student − baseline"]
    rows = []
    for ds in report["datasets"].values():
        seeds = f" ({len(ds['runs'])} seeds)" if len(ds["runs"]) > 1 else ""
        row = [ds["title"] + seeds]
        if paper_column:
            row.append(f"{ds['paper']['baseline']:.3f} → {ds['paper']['student']:.3f}")
        row.append(_cell(_values(ds, "baseline", metric)))
        row += [_cell(_values(ds, f"image-only:{n}", metric)) for n in names]
        row += [_cell(_values(ds, f"teacher:{n}", metric)) for n in names]
        row += [_cell(_values(ds, "student", metric)), _diff(ds, "student", "baseline", metric)]
        rows.append(row)
    return _table(header, rows)


def table2(report: Report) -> str:
    header = ["Dataset", "α=0, β=0 (baseline)", "α=0 (β term only)", "β=0 (α term only)"]
    header.append("both terms (LUGPI student)")
    roles = ("baseline", "alpha=0", "beta=0", "student")
    rows = [
        [ds["title"]] + [_cell(_values(ds, r)) for r in roles] for ds in report["datasets"].values()
    ]
    return _table(header, rows)


def control_table(report: Report) -> str:
    header = ["Dataset", "Baseline", "Text-only teacher", "Self-distilled student"]
    header += ["LUGPI student", "Gain from distillation", "Gain from the images"]
    rows = [
        [ds["title"]]
        + [_cell(_values(ds, r)) for r in ("baseline", "text teacher", "self-distilled")]
        + [_cell(_values(ds, "student"))]
        + [_diff(ds, "self-distilled", "baseline"), _diff(ds, "student", "self-distilled")]
        for ds in report["datasets"].values()
    ]
    return _table(header, rows)


def _order(role: str) -> int:
    """Table order: baseline, image-only, teacher(s), students, then the control."""
    head = role.split(":", 1)[0]
    order = ["baseline", "image-only", "teacher", "student", "alpha=0", "beta=0"]
    return order.index(head) if head in order else len(order) + (role == "self-distilled")


def seeds_table(ds: dict[str, Any]) -> str:
    roles = sorted(roles_of(ds["runs"]), key=_order)
    rows = [
        [f"seed {seed}"]
        + [
            f"{run['models'][r]['test']['accuracy']:.3f}" if r in run["models"] else "–"
            for r in roles
        ]
        for seed, run in ds["runs"].items()
    ]
    for name in ("mean", "std"):
        rows.append([name] + [f"{ds['summary'][r]['accuracy'][name]:.3f}" for r in roles])
    return _table(["Seed", *roles], rows)


def budget_table(report: Report) -> str:
    header = ["Dataset", "Seeds", "Train / dev / test", "Epochs (teacher / student)"]
    # "This call": 0 when the call only found finished runs and wrote the tables.
    header += ["Max length", "Compute per seed", "Estimated per seed", "Wall, this call"]
    rows = []
    for ds in report["datasets"].values():
        b = ds["budget"]
        compute = statistics.fmean(run["compute_seconds"] for run in ds["runs"].values())
        rows.append(
            [
                ds["title"],
                ", ".join(ds["runs"]),
                f"{b['train']} / {b['dev']} / {b['test']}",
                f"{b['teacher_epochs']:g} / {b['student_epochs']:g}",
                str(b["max_length"]),
                f"{compute / 60:.1f} min",
                "-" if ds["estimate_seconds"] is None else f"{ds['estimate_seconds'] / 60:.1f} min",
                f"{ds['wall_seconds'] / 60:.1f} min",
            ]
        )
    return _table(header, rows)


def render(report: Report) -> str:
    """paper_tables.md: every table, with what the numbers mean beside them."""
    datasets = report["datasets"].values()
    notes = [f"- {d['title']}: {d['paper']['note']}" for d in datasets if d["paper"]["note"]]
    parts = [
        "# LUGPI: the paper's tables on our data",
        "",
        f"Reproduce with `{report['command']}` ({report['created_at']}; budget "
        f"`{report['budget']}`, preset `{report['preset']}`; {report['machine']}).",
        "",
        f"> **About the images:** {report['images_note']}",
        "",
        *(SMOKE_NOTE if report["budget"] == "smoke" else []),
        "Test split. Nothing is tuned on test: hyper-parameters are the preset's (the quick "
        "budget's learning rate and batch size were chosen on CWI News dev, see the README), "
        "and each model keeps its epoch with the best dev accuracy. Cells over several seeds "
        "are mean ± sample std; '–': not trained for that seed or dataset (--variants).",
        "",
        "## Table 1: accuracy (test)",
        "",
        table1(report, "accuracy"),
        "",
        "Paper numbers: DistilBERT baseline → best LUGPI student (Stable Diffusion v2 images).",
        *notes,
        "",
        "## Table 1: macro-F1 (test)",
        "",
        table1(report, "macro_f1"),
        "",
        "## Table 2: ablation of the loss terms (student, test accuracy)",
        "",
        table2(report),
        "",
        "## The image-free control: self-distillation (test accuracy)",
        "",
        "The same distillation from a text-only teacher (same text model, fusion block and "
        "MLP, no image). Gain from distillation = self-distilled − baseline; gain from the "
        "images = LUGPI student − self-distilled student.",
        "",
        control_table(report),
    ]
    for ds in report["datasets"].values():
        if len(ds["runs"]) > 1:
            parts += ["", f"## {ds['title']}: every seed (test accuracy)", "", seeds_table(ds)]
    parts += ["", "## Compute budget", "", budget_table(report), ""]
    return "\n".join(parts)
