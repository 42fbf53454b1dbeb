"""The ``offline`` preset's run as a results file: every figure the README states about it,
read from the run directory, so that a rerun rewrites them (README block
``offline-preset``) and a test diffs the README against the file.

    /usr/bin/time -v lugpi run offline --run-dir runs/cwi-news-offline \\
        --repository runs/offline-repository 2> time.log
    python benchmarks/offline_report.py --run-dir runs/cwi-news-offline --time-log time.log \\
        --command "lugpi run offline ..." --machine "2 cores, load average ..."

Read: each stage's record (``stage.json``: seconds, the training budget it chose), the
evaluation (``evaluate/results.json``), the exported bundle's manifest (what export
shipped and its checks), the publish record (``published.json``: version, gate), and
``/usr/bin/time -v``'s log for peak memory and wall time.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.paper_estimate import format_seconds  # noqa: E402
from contracts.bundle import MODEL_INT8, read_manifest  # noqa: E402
from contracts.layout import RunLayout  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
STEM = "offline_cwi_news"
MODELS = {"baseline": "Baseline (text only, CE)", "student": "Student (LUGPI)"}
TIME_FIELDS = {
    "peak_rss_mb": re.compile(r"Maximum resident set size \(kbytes\): (\d+)"),
    "wall": re.compile(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)"),
}


def _json(path: Path) -> Any:
    return json.loads(path.read_text())


def _seconds(clock: str) -> float:
    """'1:02:03.4' or '2:03.4' -> seconds."""
    total = 0.0
    for part in clock.split(":"):
        total = total * 60 + float(part)
    return total


def read_time_log(path: Path) -> dict[str, float]:
    text = path.read_text(errors="replace")
    found = {k: m.group(1) for k, rx in TIME_FIELDS.items() if (m := rx.search(text))}
    out: dict[str, float] = {}
    if "peak_rss_mb" in found:
        out["peak_rss_mb"] = int(found["peak_rss_mb"]) / 1024
    if "wall" in found:
        out["wall_seconds"] = _seconds(found["wall"])
    return out


def _majority(split: dict[str, Any]) -> float:
    """The share of the most frequent true label (rows of the confusion matrix)."""
    rows = [sum(row) for row in split["confusion"]]
    return max(rows) / sum(rows)


def collect(run_dir: Path, time_log: Path | None) -> dict[str, Any]:
    layout = RunLayout(run_dir)
    stages: dict[str, dict[str, Any]] = {}
    for record in sorted(run_dir.glob("*/stage.json")):
        rec = _json(record)
        stages[record.parent.name] = {
            "seconds": rec["seconds"],
            "budget": rec.get("summary", {}).get("budget"),
        }
    results = _json(layout.evaluate / "results.json")
    models = {}
    for key, m in results["models"].items():
        models[key] = {
            split: {k: m[split][k] for k in ("accuracy", "macro_f1", "n")}
            for split in ("dev", "test")
        }
    any_model = next(iter(results["models"].values()))
    export: dict[str, Any] = {}
    bundles = sorted(p.parent for p in layout.export.glob("*/bundle.json"))
    if bundles:
        manifest = read_manifest(bundles[0])
        checks = manifest.export_checks
        export = {
            "bundle": bundles[0].name,
            "int8": MODEL_INT8 in manifest.files,
            "int8_argmax_agreement": checks.int8_argmax_agreement if checks else None,
            "n_checked": checks.n_texts if checks else None,
            "dev_accuracy_fp32": checks.dev_accuracy_fp32 if checks else None,
            "dev_accuracy_int8": checks.dev_accuracy_int8 if checks else None,
        }
    published = _json(layout.published) if layout.published.is_file() else None
    return {
        "created_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "labels": results["labels"],
        "majority": {s: _majority(any_model[s]) for s in ("dev", "test")},
        "models": models,
        "stages": stages,
        "export": export,
        "published": None
        if published is None
        else {
            "version": published.get("version"),
            "gate": (published.get("gate") or {}).get("action"),
            "reason": "; ".join(
                c.get("detail", "")
                for c in (published.get("gate") or {}).get("checks", [])
                if c.get("status") == "failed"
            ),
        },
        **(read_time_log(time_log) if time_log is not None else {}),
    }


def _name(key: str) -> str:
    """The evaluation's model keys (``teacher:<name>``, ``student[:<teacher>]``) in words."""
    kind, _, teacher = key.partition(":")
    if kind == "teacher":
        return f"Teacher {teacher} (text + image)"
    if kind == "student" and teacher:
        return f"{MODELS['student']}, from teacher {teacher}"
    return MODELS.get(key, key)


def render(report: dict[str, Any]) -> str:
    """The tables and the sentences with figures (the README block and the results file)."""
    lines = [
        "| Model | dev accuracy | test accuracy | test macro-F1 |",
        "|---|---:|---:|---:|",
    ]
    for key, m in report["models"].items():
        lines.append(
            f"| {_name(key)} | {m['dev']['accuracy']:.3f} | {m['test']['accuracy']:.3f} | "
            f"{m['test']['macro_f1']:.3f} |"
        )
    maj = report["majority"]
    lines += ["", f"Majority class: dev {maj['dev']:.3f}, test {maj['test']:.3f}.", ""]
    lines += ["| stage | seconds | budget |", "|---|---:|---|"]
    for stage, s in report["stages"].items():
        b = s["budget"]
        budget = (
            ""
            if not b
            else f"{b['examples']} examples, batch {b['batch_size']}, {b['epochs']:g} epochs "
            f"({b['epochs_reason']}), {b['steps']} steps, warm-up {b['warmup_steps']}, "
            f"lr {b['learning_rate']:g} ({b['learning_rate_reason']})"
        )
        lines.append(f"| {stage} | {s['seconds']:,.0f} | {budget} |")
    facts = []
    if "wall_seconds" in report:
        facts.append(f"wall time {format_seconds(report['wall_seconds'])}")
    if "peak_rss_mb" in report:
        facts.append(f"peak resident memory {report['peak_rss_mb'] / 1024:.2f} GB")
    ex = report["export"]
    if ex:
        shipped = "int8 and fp32" if ex["int8"] else "fp32 only"
        agree = ex["int8_argmax_agreement"]
        facts.append(
            f"export shipped {shipped}"
            + (
                ""
                if agree is None
                else f" (int8 argmax agreement {agree:.3f} on {ex['n_checked']} texts)"
            )
        )
    pub = report["published"]
    if pub is not None:
        facts.append(
            f"published as {pub['version']} (publish gate: {pub['gate']})"
            if pub["version"]
            else f"not published: {pub['reason'] or pub['gate']}"
        )
    sentence = ", ".join(facts) + "."
    lines += ["", sentence[0].upper() + sentence[1:] if facts else ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--time-log", type=Path, help="/usr/bin/time -v's output of the run")
    p.add_argument("--command", required=True, help="the command that made the run")
    p.add_argument("--machine", required=True, help="the machine and its load, in words")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    report = collect(args.run_dir, args.time_log)
    report.update(command=args.command, machine=args.machine)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{STEM}.json").write_text(json.dumps(report, indent=1) + "\n")
    md = [
        "# The `offline` preset on CWI 2018 English News",
        "",
        f"{report['created_at']}; {report['machine']}.",
        f"Command: `{report['command']}`",
        "",
        "**The images are noise** (the preset's generator has random weights): the teacher "
        "cannot learn anything from them, and the student is not expected to beat the "
        "baseline here.",
        "",
        render(report),
    ]
    (args.out_dir / f"{STEM}.md").write_text("\n".join(md))
    print(f"wrote {args.out_dir / STEM}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
