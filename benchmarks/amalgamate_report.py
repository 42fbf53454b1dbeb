"""Data-free amalgamation over seeds: the per-seed results of one setting, aggregated.

Reads every ``amalgamate_<stem>_seed<N>.json`` that ``benchmarks/amalgamate_benchmark.py
--setting <setting> --seed N`` wrote (stem ``20ng`` or ``crossdomain``; the ``_small``
ones instead with ``--small``) and writes ``amalgamate_<stem>{,_small}.{md,json}`` beside
them: per row, accuracy overall and on each teacher's labels as mean ± sample sd over the
seeds with each seed's value; paired 95 % t-intervals over seeds (``paired_interval`` of
paper_report.py) for the differences that say whether a weighting helps; per seed its
command, generated / kept texts and wall time. One seed gives no interval, and the
tables say so.

    python benchmarks/amalgamate_report.py --setting 20ng-halves
    python benchmarks/amalgamate_report.py --setting cross-domain --small --results-dir DIR

The README and docs/stratanet.md show these tables (benchmarks/readme_blocks.py).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as a script: the repository's packages are importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.paper_report import paired_interval

RESULTS = Path(__file__).resolve().parent / "results"
STEMS = {"20ng-halves": "20ng", "cross-domain": "crossdomain"}  # --setting -> file names

# The benchmark's rows (amalgamate_benchmark.py names them from these).
AVERAGING = "data-free student (averaging)"
MAX_PROB = "data-free student (max probability)"
OWNER = "data-free student (owner-routing control)"
RMD = "data-free student (RMD, output only)"
RMD_ST = "data-free student (RMD + ST-amalg)"
REAL_DATA = "student on the real data (upper bound)"
DATA_FREE = "data-free student"  # the prefix of every data-free row
BEST_DATA_FREE = "best data-free row"
BEST_TEACHER = "best single teacher"
# The most any teacher alone can score overall: the share of the test set in its labels (it
# never answers another teacher's label). Not a row of the benchmark: read off each
# teacher's row (overall = share x accuracy on its own labels), exactly, per seed.
TEACHER_CAP = "a teacher's best possible score"
PAIRS = (
    (RMD, OWNER, "RMD − owner-routing"),
    (RMD, MAX_PROB, "RMD − max probability"),
    (RMD, AVERAGING, "RMD − averaging"),
    (RMD_ST, RMD, "RMD + ST-amalg − RMD (output only)"),
    # The default row, fixed before the runs, against the teachers: the method's claim.
    (RMD_ST, BEST_TEACHER, "RMD + ST-amalg − best single teacher"),
    (RMD_ST, TEACHER_CAP, "RMD + ST-amalg − a teacher's best possible score"),
    (BEST_DATA_FREE, BEST_TEACHER, "best data-free row − best single teacher"),
)


def teacher_row(name: str) -> str:
    return f"teacher {name} alone"


def run_commands(setting: str, seeds: int = 3) -> list[str]:
    """What makes a setting's table: each seed's benchmark run, this report, the blocks."""
    return [
        f"for seed in {' '.join(map(str, range(seeds)))}; do "
        f"OMP_NUM_THREADS=1 python benchmarks/amalgamate_benchmark.py --setting {setting} "
        "--seed $seed; done",
        f"python benchmarks/amalgamate_report.py --setting {setting}",
        "python benchmarks/readme_blocks.py",
    ]


def seed_files(results_dir: Path, stem: str, small: bool) -> list[Path]:
    """The setting's per-seed files, by seed."""
    name = re.compile(rf"amalgamate_{re.escape(stem)}_seed(\d+){'_small' if small else ''}\.json")
    found = [(m, p) for p in results_dir.glob(f"amalgamate_{stem}_seed*.json")
             if (m := name.fullmatch(p.name))]  # fmt: skip
    return [p for m, p in sorted(found, key=lambda mp: int(mp[0][1]))]


def _round(x: float) -> float:
    return round(x, 4)


def _check_same_setting(seeds: Sequence[dict[str, Any]]) -> None:
    """Seeds of one table must differ in their seed only."""
    first = seeds[0]
    for s in seeds[1:]:
        a, b = first["setting"], s["setting"]
        differs = sorted(k for k in a.keys() | b.keys() if k != "seed" and a.get(k) != b.get(k))
        if differs or s["halves"] != first["halves"]:
            raise ValueError(
                f"seeds {a['seed']} and {b['seed']} differ in {differs or ['teachers']}: "
                "one report holds one setting"
            )


def _mean_of(report: dict[str, Any], row: str, column: str = "overall") -> float:
    return float(report["rows"][row]["accuracy"][column]["mean"])


def aggregate(seeds: Sequence[dict[str, Any]], setting: str) -> dict[str, Any]:
    """The report of one setting from its seeds' results (what the benchmark writes)."""
    if not seeds:
        raise ValueError(f"no seed of {setting} to report")
    _check_same_setting(seeds)
    halves: dict[str, list[str]] = seeds[0]["halves"]
    columns = ["overall", *halves]
    by_seed = {int(s["setting"]["seed"]): s for s in seeds}
    if len(by_seed) != len(seeds):
        raise ValueError(f"{setting}: a seed appears twice")
    names = list(dict.fromkeys(r for s in seeds for r in s["models"]))
    rows: dict[str, Any] = {}
    for r in names:
        scored = {
            k: s["models"][r] for k, s in by_seed.items() if "accuracy" in s["models"].get(r, {})
        }
        if not scored:
            continue
        accuracy = {}
        for c in columns:
            values = [m["accuracy"][c] for m in scored.values()]
            accuracy[c] = {
                "mean": _round(statistics.fmean(values)),
                "sd": _round(statistics.stdev(values)) if len(values) > 1 else None,
                "per_seed": {str(k): m["accuracy"][c] for k, m in scored.items()},
            }
        seconds = {str(k): m.get("seconds") for k, m in scored.items()}
        rows[r] = {"n": len(scored), "accuracy": accuracy, "seconds": seconds}
    report: dict[str, Any] = {
        "setting": setting,
        "title": seeds[0].get("title", setting),
        "seeds": sorted(by_seed),
        "n": len(by_seed),
        "halves": halves,
        "columns": columns,
        "rows": rows,
    }
    # "Best" rows are picked on these same seeds (highest mean overall accuracy), so that
    # difference is chosen after seeing the results: read it as optimistic.
    chosen = {}
    for key, prefix in ((BEST_DATA_FREE, DATA_FREE), (BEST_TEACHER, "teacher ")):
        candidates = [r for r in rows if r.startswith(prefix)]
        if candidates:
            chosen[key] = max(candidates, key=lambda r: _mean_of(report, r))
    report["chosen"] = chosen
    # The cap joins each seed's models as one more row, for the differences only.
    capped = {
        k: {**s, "models": {**s["models"], **teacher_cap(s["models"])}} for k, s in by_seed.items()
    }
    report["differences"] = [
        difference(capped, chosen.get(a, a), chosen.get(b, b), title, columns)
        for a, b, title in PAIRS
    ]
    report["per_seed"] = {
        str(k): {
            "command": s["command"],
            "generated": s.get("generation", {}).get("generated"),
            "kept": s.get("generation", {}).get("kept"),
            "generation_seconds": s.get("generation", {}).get("seconds"),
            "wall_seconds": s.get("wall_seconds"),
            "finished": s.get("finished", False),
        }
        for k, s in by_seed.items()
    }
    return report


def teacher_cap(models: dict[str, Any]) -> dict[str, Any]:
    """A seed's ``TEACHER_CAP`` row, overall only: the largest share of the test set any
    teacher's labels hold, from the teacher rows (no row when a teacher scored 0 on its
    own labels)."""
    shares = []
    for name, m in models.items():
        if not name.startswith("teacher ") or "accuracy" not in m:
            continue
        own = max(v for c, v in m["accuracy"].items() if c != "overall")
        if own <= 0:
            return {}
        shares.append(m["accuracy"]["overall"] / own)
    return {TEACHER_CAP: {"accuracy": {"overall": _round(max(shares))}}} if shares else {}


def difference(
    by_seed: dict[int, dict[str, Any]], a: str, b: str, title: str, columns: Sequence[str]
) -> dict[str, Any]:
    """``a`` − ``b`` per seed that scored both, per column both rows have (the cap row has
    only the overall one), with its paired interval."""
    both = {
        k: (s["models"][a]["accuracy"], s["models"][b]["accuracy"])
        for k, s in by_seed.items()
        if all("accuracy" in s["models"].get(r, {}) for r in (a, b))
    }
    out: dict[str, Any] = {"title": title, "a": a, "b": b, "n": len(both), "columns": {}}
    for c in columns:
        if not all(c in x and c in y for x, y in both.values()):
            continue
        diffs = {str(k): _round(x[c] - y[c]) for k, (x, y) in both.items()}
        ci = paired_interval(list(diffs.values()))
        out["columns"][c] = {
            "mean": _round(statistics.fmean(diffs.values())) if diffs else None,
            "interval": None if ci is None else [_round(ci["low"]), _round(ci["high"])],
            "per_seed": diffs,
        }
    return out


# -- markdown ---------------------------------------------------------------------------------
def _header(report: dict[str, Any], first: str) -> list[str]:
    cols = ["overall", *(f"labels of teacher {h}" for h in report["halves"])]
    return [f"| {first} | {' | '.join(cols)} |", "|---|" + "---:|" * len(cols)]


def _accuracy_cell(cell: dict[str, Any]) -> str:
    values = " / ".join(f"{v:.3f}" for v in cell["per_seed"].values())
    if cell["sd"] is None:
        return f"{cell['mean']:.3f} (n=1)"
    return f"{cell['mean']:.3f} ± {cell['sd']:.3f} ({values})"


def _difference_cell(cell: dict[str, Any], n: int) -> str:
    if n == 0:
        return "– (no seed has both rows)"
    if cell["interval"] is None:
        return f"{cell['mean']:+.3f} (n=1: no interval)"
    low, high = cell["interval"]
    values = " / ".join(f"{v:+.3f}" for v in cell["per_seed"].values())
    return f"{cell['mean']:+.3f} [{low:+.3f}, {high:+.3f}] (n={n}; {values})"


def tables(report: dict[str, Any]) -> str:
    """The tables of one setting: accuracies, paired differences, the seeds' runs."""
    seeds = ", ".join(map(str, report["seeds"]))
    lines = [
        f"Seeds {seeds} (n = {report['n']}). Accuracy, mean ± sample sd over seeds "
        "(each seed's value in parentheses, in seed order).",
        "",
        *_header(report, "model"),
    ]
    for name, row in report["rows"].items():
        seeds_note = "" if row["n"] == report["n"] else f" ({row['n']} of {report['n']} seeds)"
        cells = " | ".join(_accuracy_cell(row["accuracy"][c]) for c in report["columns"])
        lines.append(f"| {name}{seeds_note} | {cells} |")
    lines += [
        "",
        "Paired differences over seeds: mean [95 % t-interval] (n; each seed's difference).",
        "",
        *_header(report, "difference"),
    ]
    for d in report["differences"]:
        cells = " | ".join(
            _difference_cell(d["columns"][c], d["n"]) if c in d["columns"] else "–"
            for c in report["columns"]
        )
        lines.append(f"| {d['title']} | {cells} |")
    if report["chosen"]:
        picked = "; ".join(f"{k}: {v}" for k, v in report["chosen"].items())
        lines += [
            "",
            f"Best rows, by mean overall accuracy on these seeds ({picked}): chosen after "
            "seeing them, so that interval is optimistic.",
        ]
    lines += [
        "",
        "| seed | generated | kept | generation s | wall s | command |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for seed, s in report["per_seed"].items():
        keys = ("generated", "kept", "generation_seconds", "wall_seconds")
        fields = ["–" if s[k] is None else str(s[k]) for k in keys]
        if not s["finished"]:
            fields[-1] += " (not finished)"
        lines.append(f"| {seed} | {' | '.join(fields)} | `{s['command']}` |")
    return "\n".join(lines)


def markdown(report: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"# Data-free amalgamation over seeds: {report['title']}",
            "",
            "Written by `benchmarks/amalgamate_report.py` from the per-seed files "
            "`amalgamate_<setting>_seed<N>.json`.",
            "",
            tables(report),
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--setting", choices=tuple(STEMS), default="20ng-halves")
    p.add_argument("--small", action="store_true", help="the --small smoke runs' files")
    p.add_argument("--results-dir", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    small = "_small" if args.small else ""
    files = seed_files(args.results_dir, STEMS[args.setting], args.small)
    if not files:
        print(f"no amalgamate_{STEMS[args.setting]}_seed<N>{small}.json in {args.results_dir}")
        return 1
    stem = STEMS[args.setting] + small
    report = aggregate([json.loads(f.read_text()) for f in files], args.setting)
    (args.results_dir / f"amalgamate_{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.results_dir / f"amalgamate_{stem}.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
