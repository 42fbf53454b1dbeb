"""Results of the paper benchmark: read them from the run dirs, write the tables.

``collect_run`` turns one dataset-and-seed run (its combined ``evaluate/results.json`` and
the ``stage.json`` of every stage it ran) into plain numbers; ``render`` turns the whole
report (what ``paper_tables.json`` holds) into ``paper_tables.md``; ``merge`` joins the
reports of several calls (say one per dataset) into one. Cells over several seeds are
mean ± sample standard deviation; differences (student − baseline, ...) are taken per
seed first, so the spread is that of the paired difference.

    python benchmarks/paper_report.py benchmarks/results/paper/*/paper_tables.json \
        --out-dir benchmarks/results          # the merged paper_tables.json and .md
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as a script: the repository's packages are importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.paper_setup import DATASETS
from contracts.artifacts import is_complete, read_stage, write_json_atomic
from contracts.config import PipelineConfig, load_config

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


def paired_interval(diffs: Sequence[float], level: float = 0.95) -> dict[str, float] | None:
    """Mean of per-seed paired differences with its t-interval (None under two seeds).

    The interval is over seeds only: each seed's test-set noise is inside its difference,
    so with few seeds it is wide, which is the point."""
    from scipy.stats import t

    n = len(diffs)
    if n < 2:
        return None
    mean, sd = statistics.fmean(diffs), statistics.stdev(diffs)
    half = float(t.ppf(0.5 + level / 2, n - 1)) * sd / n**0.5
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": n}


PAIRS = (
    ("student", "baseline", "LUGPI − baseline"),
    ("self-distilled", "baseline", "self-distilled − baseline"),
    ("student", "self-distilled", "LUGPI − self-distilled"),
)


def paired_diffs(ds: dict[str, Any], a: str, b: str, metric: str = "accuracy") -> list[float]:
    runs = [run["models"] for run in ds["runs"].values()]
    return [m[a]["test"][metric] - m[b]["test"][metric] for m in runs if a in m and b in m]


# Table 2's pairs: what each loss term adds to the other, and alone over the baseline.
ABLATION_PAIRS = (
    ("student", "alpha=0", "both − α=0 (the α term's gain)"),
    ("student", "beta=0", "both − β=0 (the β term's gain)"),
    ("alpha=0", "baseline", "α=0 − baseline (β term alone)"),
    ("beta=0", "baseline", "β=0 − baseline (α term alone)"),
)


def _interval_cell(diffs: Sequence[float]) -> str:
    ci = paired_interval(diffs)
    if ci is not None:
        return f"{ci['mean']:+.3f} [{ci['low']:+.3f}, {ci['high']:+.3f}] (n={ci['n']})"
    return _cell(diffs, signed=True) + (" (n=1)" if diffs else "")


def intervals_table(report: Report) -> str:
    header = ["Dataset", *(name for _, _, name in PAIRS)]
    rows = [
        [ds["title"], *(_interval_cell(paired_diffs(ds, a, b)) for a, b, _ in PAIRS)]
        for ds in report["datasets"].values()
    ]
    return _table(header, rows)


def table2_intervals(report: Report) -> str:
    """Table 2 as paired differences, over the seeds that trained every ablation."""
    header = ["Dataset", *(name for _, _, name in ABLATION_PAIRS)]
    rows = []
    for full in report["datasets"].values():
        ds = same_seeds(full, ("baseline", "alpha=0", "beta=0", "student"))
        cells = [_interval_cell(paired_diffs(ds, a, b)) for a, b, _ in ABLATION_PAIRS]
        rows.append([_title(ds, full), *cells])
    return _table(header, rows)


def collapsed(report: Report, margin: float = 0.01) -> list[str]:
    """Every (dataset, seed, model) whose test accuracy is within ``margin`` of the
    majority-class rate: a model that may have learnt nothing but the prior."""
    found = []
    for ds in report["datasets"].values():
        rate = ds.get("majority", {}).get("test")
        if rate is None:
            continue
        for seed, run in ds["runs"].items():
            for r, m in run["models"].items():
                if abs(m["test"]["accuracy"] - rate) <= margin:
                    found.append(f"{ds['title']}, seed {seed}: {r} {m['test']['accuracy']:.3f}")
    return found


def _cell(values: Sequence[float], signed: bool = False, of: int | None = None) -> str:
    """Mean ± std; ``of``: the seeds the cell's row names, so that a cell over fewer of
    them (a control trained on some seeds only) says its own count."""
    if not values:
        return "–"  # not trained for this dataset (see --variants)
    s = stats(values)
    text = f"{s['mean']:+.3f}" if signed else f"{s['mean']:.3f}"
    text = f"{text} ± {s['std']:.3f}" if s["n"] > 1 else text
    return f"{text} (n={len(values)})" if of is not None and len(values) < of else text


def _values(ds: dict[str, Any], r: str, metric: str = "accuracy") -> list[float]:
    return [run["models"][r]["test"][metric] for run in ds["runs"].values() if r in run["models"]]


def _diff(ds: dict[str, Any], a: str, b: str, metric: str = "accuracy") -> str:
    """Per seed first (seeds with both roles), then mean ± std of the differences."""
    runs = [run["models"] for run in ds["runs"].values()]
    both = [m for m in runs if a in m and b in m]
    diffs = [m[a]["test"][metric] - m[b]["test"][metric] for m in both]
    return _cell(diffs, signed=True, of=len(runs))


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _teachers(ds: dict[str, Any]) -> list[str]:
    return [r.split(":", 1)[1] for r in roles_of(ds["runs"]) if r.startswith("teacher:")]


def table1(report: Report, metric: str) -> str:
    # The paper's figures are accuracies (baseline -> best student) only.
    paper_column = metric == "accuracy"
    header = ["Dataset", *(["Paper: baseline → student"] if paper_column else [])]
    header += [*(["Majority class"] if paper_column else []), "Baseline"]
    first = next(iter(report["datasets"].values()))
    names = _teachers(first)
    header += [f"Image only ({n})" for n in names] + [f"Teacher ({n})" for n in names]
    header += ["Student", "Student − baseline"]
    header += ["What differs from the paper"] if paper_column else []
    rows = []
    for ds in report["datasets"].values():
        seeds = f" ({len(ds['runs'])} seeds)" if len(ds["runs"]) > 1 else ""
        row = [ds["title"] + seeds]
        if paper_column:
            row.append(f"{ds['paper']['baseline']:.3f} → {ds['paper']['student']:.3f}")
            rate = ds.get("majority", {}).get("test")
            row.append("–" if rate is None else f"{rate:.3f}")
        cells = ["baseline", *(f"image-only:{n}" for n in names)]
        cells += [*(f"teacher:{n}" for n in names), "student"]
        row += [_cell(_values(ds, r, metric), of=len(ds["runs"])) for r in cells]
        row.append(_diff(ds, "student", "baseline", metric))
        row += [differs_from_paper(report, ds)] if paper_column else []
        rows.append(row)
    return _table(header, rows)


@cache
def paper_config() -> PipelineConfig:
    """The paper's setup, as the ``paper`` preset states it (models, schedule, images)."""
    return load_config("paper")


def _short(model: str) -> str:
    return model.rsplit("/", 1)[-1]


def differs_from_paper(report: Report, ds: dict[str, Any]) -> str:
    """One cell: how this dataset's runs differ from the paper's (models, images, budget,
    data), so that the paper's number is never read as a like-for-like comparison."""
    paper, b = paper_config(), ds["budget"]
    ours_image = ", ".join(b["image_models"])
    paper_image = ", ".join(_short(t.image_model or "") for t in paper.teachers)
    images = "noise images" if report["generator"] == "tiny-random" else report["generator"]
    paper_train = paper.data.max_train_samples or "all"
    parts = [
        f"{b['text_model']} (paper {_short(paper.student.text_model)})",
        f"{ours_image} on {images} (paper {paper_image} on {_short(paper.generator.model)})",
        f"{b['train']} train examples (paper {paper_train}), {b['student_epochs']:g} epochs "
        f"(paper {paper.student.epochs:g}), batch {b['batch_size']} "
        f"(paper {paper.student.batch_size}), lr {b['learning_rate']:g} "
        f"(paper {paper.student.learning_rate:g})",
    ]
    if ds["paper"]["note"]:
        parts.append(ds["paper"]["note"])
    return "; ".join(parts)


def same_seeds(ds: dict[str, Any], roles: Sequence[str]) -> dict[str, Any]:
    """``ds`` cut to the seeds that have every one of ``roles`` that any seed has, so that
    an ablation cell stands only beside numbers from its own seeds."""
    present = [r for r in roles if any(r in run["models"] for run in ds["runs"].values())]
    runs = {k: v for k, v in ds["runs"].items() if all(r in v["models"] for r in present)}
    return {**ds, "runs": runs}


def _title(ds: dict[str, Any], full: dict[str, Any]) -> str:
    if len(ds["runs"]) == len(full["runs"]):
        return full["title"]
    return f"{full['title']} (seeds {', '.join(ds['runs']) or 'none'})"


def table2(report: Report) -> str:
    header = ["Dataset", "α=0, β=0 (baseline)", "α=0 (β term only)", "β=0 (α term only)"]
    header.append("both terms (LUGPI student)")
    roles = ("baseline", "alpha=0", "beta=0", "student")
    rows = []
    for full in report["datasets"].values():
        ds = same_seeds(full, roles)
        rows.append([_title(ds, full)] + [_cell(_values(ds, r)) for r in roles])
    return _table(header, rows)


def control_table(report: Report) -> str:
    header = ["Dataset", "Baseline", "Text-only teacher", "Self-distilled student"]
    header += ["LUGPI student", "Gain from distillation", "Gain from the images"]
    roles = ("baseline", "text teacher", "self-distilled", "student")
    rows = []
    for full in report["datasets"].values():
        ds = same_seeds(full, roles)
        rows.append(
            [_title(ds, full)]
            + [_cell(_values(ds, r)) for r in roles]
            + [_diff(ds, "self-distilled", "baseline"), _diff(ds, "student", "self-distilled")]
        )
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
    header += ["Batch", "Learning rate (warmup)", "Max length", "Compute per seed"]
    header += ["Estimated per seed", "Wall, this call"]
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
                str(b["batch_size"]),
                f"{b.get('learning_rate', 0):g} ({b.get('warmup_ratio', 0):g})",
                str(b["max_length"]),
                f"{compute / 60:.1f} min",
                "-" if ds["estimate_seconds"] is None else f"{ds['estimate_seconds'] / 60:.1f} min",
                f"{ds['wall_seconds'] / 60:.1f} min",
            ]
        )
    return _table(header, rows)


def lr_lines(report: Report) -> list[str]:
    datasets = report["datasets"].values()
    grids = [(ds["title"], ds["learning_rate"]) for ds in datasets if "learning_rate" in ds]
    if not grids:
        return []
    lines = ["## Learning rate, chosen on dev (seed 0's baseline)", ""]
    for title, lr in grids:
        cells = ", ".join(f"{k}: {v:.3f}" for k, v in lr["grid"].items())
        lines.append(f"- {title}: {lr['chosen']:g} (dev accuracy {cells})")
    return [*lines, ""]


def reproduce_lines(report: Report) -> list[str]:
    """The command(s) that made the numbers: one, or one per dataset for a merged report
    (a later call with more seeds resumes the earlier ones, so its command is the one)."""
    made = f"budget `{report['budget']}`, preset `{report['preset']}`"
    calls = {ds.get("command", report["command"]) for ds in report["datasets"].values()}
    if len(calls) == 1:
        return [
            f"Reproduce with `{calls.pop()}` ({report['created_at']}; {made}; {report['machine']})."
        ]
    lines = [f"Reproduce with one call per dataset ({made}):", ""]
    for ds in report["datasets"].values():
        lines.append(f"- {ds['title']}: `{ds['command']}` ({ds['created_at']}; {ds['machine']})")
    return lines


def _merge_seeds(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """One dataset's runs from two calls (seed 0 in one, seeds 1-2 in a later one, say):
    the union of their seeds, the later call's run where both have a seed, the summary
    recomputed. Calls with another budget (learning rate included) are refused."""
    if before["budget"] != after["budget"]:
        raise ValueError(f"{after['title']}: the calls differ in budget: not one set of seeds")
    runs = {**before["runs"], **after["runs"]}
    # A later call that covers every earlier seed reproduces them all on its own.
    covers = set(before["runs"]) <= set(after["runs"])
    calls = [after["command"]] if covers else [before["command"], after["command"]]
    estimates = [e for e in (before["estimate_seconds"], after["estimate_seconds"]) if e]
    return {
        **before,
        **after,  # the chosen rate's record (seed 0's call) survives: a later call has none
        "runs": dict(sorted(runs.items(), key=lambda kv: int(kv[0]))),
        "summary": summarize(runs),
        "wall_seconds": before["wall_seconds"] + after["wall_seconds"],
        "estimate_seconds": estimates[-1] if estimates else None,
        "command": "`, then `".join(dict.fromkeys(calls)),
        "created_at": max(before["created_at"], after["created_at"]),
        "machine": "; ".join(dict.fromkeys([before["machine"], after["machine"]])),
    }


def merge(reports: Sequence[Report]) -> Report:
    """One report from several calls of reproduce_paper.py (a call per dataset, say).

    Each dataset keeps the command, date and machine of the call that made it; a dataset
    in several reports gets the union of their seeds (``_merge_seeds``). Reports of another
    budget, preset or generator are refused: their numbers do not belong in one table."""
    shared = ("budget", "preset", "generator", "images_note")
    first = reports[0]
    for other in reports[1:]:
        if differ := [k for k in shared if other[k] != first[k]]:
            raise ValueError(f"reports differ in {', '.join(differ)}: not one set of tables")
    datasets: dict[str, Any] = {}
    for report in reports:
        for key, ds in report["datasets"].items():
            call = {k: ds.get(k, report[k]) for k in ("command", "created_at", "machine")}
            ds = {**ds, **call}
            datasets[key] = _merge_seeds(datasets[key], ds) if key in datasets else ds
    order = list(DATASETS)
    keys = sorted(datasets, key=lambda k: order.index(k) if k in order else len(order))
    calls = {ds["command"] for ds in datasets.values()}
    return {
        **{k: first[k] for k in shared},
        "created_at": max(ds["created_at"] for ds in datasets.values()),
        "command": calls.pop() if len(calls) == 1 else "one call per dataset",
        "machine": "; ".join(sorted({ds["machine"] for ds in datasets.values()})),
        "datasets": {k: datasets[k] for k in keys},
    }


def write(report: Report, out_dir: Path) -> None:
    """``out_dir``/paper_tables.json (every number) and paper_tables.md (the tables)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "paper_tables.json", report)
    (out_dir / "paper_tables.md").write_text(render(report))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Merge paper_tables.json reports, write the tables")
    p.add_argument("reports", type=Path, nargs="+", help="paper_tables.json of each call")
    p.add_argument("--out-dir", type=Path, required=True)
    args = p.parse_args(argv)
    write(merge([json.loads(path.read_text()) for path in args.reports]), args.out_dir)
    print(f"wrote {args.out_dir / 'paper_tables.md'} and paper_tables.json")
    return 0


def render(report: Report) -> str:
    """paper_tables.md: every table, with what the numbers mean beside them."""
    datasets = report["datasets"].values()
    notes = [f"- {d['title']}: {d['paper']['note']}" for d in datasets if d["paper"]["note"]]
    parts = [
        "# LUGPI: the paper's tables on our data",
        "",
        *reproduce_lines(report),
        "",
        f"> **About the images:** {report['images_note']}",
        "",
        *(SMOKE_NOTE if report["budget"] == "smoke" else []),
        "Test split. Nothing is tuned on test: each dataset's learning rate was chosen on dev "
        "for seed 0's baseline (grid below) and used for every model of that dataset; every "
        "model warms up and takes at least 300 optimisation steps; each keeps its epoch with "
        "the best dev accuracy. Cells over several seeds are mean ± sample std; '–': not "
        "trained for that seed or dataset (--variants). Majority class: the test share of the "
        "most frequent label, what a model that learnt only the prior scores.",
        "",
        "## Table 1: accuracy (test)",
        "",
        table1(report, "accuracy"),
        "",
        "Paper numbers: DistilBERT baseline → best LUGPI student (Stable Diffusion v2 images).",
        *notes,
        "",
        "## Paired differences (test accuracy, 95% interval)",
        "",
        "Per seed first (same seed, same data and subsets), then the mean and a paired "
        "t-interval over the seeds; an interval that contains 0 is no evidence of a gain.",
        "",
        intervals_table(report),
        "",
        "## Models at the majority-class rate",
        "",
        *(
            [f"- {c}" for c in flagged]
            if (flagged := collapsed(report))
            else ["None: no model of any seed is within 0.01 of its dataset's majority rate."]
        ),
        "",
        *lr_lines(report),
        "## Table 1: macro-F1 (test)",
        "",
        table1(report, "macro_f1"),
        "",
        "## Table 2: ablation of the loss terms (student, test accuracy)",
        "",
        table2(report),
        "",
        "## Table 2: paired differences (test accuracy, 95% interval)",
        "",
        "Over the seeds that trained both ablations, as above: what each loss term adds to "
        "the other (both − α=0, both − β=0) and what it does alone (over the baseline).",
        "",
        table2_intervals(report),
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


if __name__ == "__main__":
    sys.exit(main())
