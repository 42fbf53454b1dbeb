"""The README's benchmark figures, generated from ``benchmarks/results/*.json``.

Each generated block sits in README.md (or a page of docs/ in ``DOCUMENTS``; a block may
appear in several) between two marker comments::

    <!-- results:NAME begin (benchmarks/readme_blocks.py writes this block) -->
    ...
    <!-- results:NAME end -->

    python benchmarks/readme_blocks.py          # rewrite the blocks in every document
    python benchmarks/readme_blocks.py --check  # exit 1 and name the stale blocks

``tests/test_readme_blocks.py`` fails when a block differs from what this script makes of
the results files, so a rerun that changes a JSON file cannot leave a stale figure behind.
Figures outside the blocks (results with no JSON file) are written by hand.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from training.export.quantize import MIN_INT8_AGREEMENT, QUANT_CANDIDATES  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
README = REPO / "README.md"
DOCUMENTS = (README, REPO / "docs" / "stratanet.md")
MARKER = re.compile(
    r"(?P<begin><!-- results:(?P<name>[a-z0-9-]+) begin [^>]*-->\n)"
    r"(?P<body>.*?)"
    r"(?P<end><!-- results:(?P=name) end -->)",
    re.S,
)


def _load(name: str) -> Any:
    return json.loads((RESULTS / name).read_text())


# -- int8: the variant export ships for each real student ------------------------------------
# Which measured students the README's table shows, in order: (results file, the student's
# model directory as the file names it, how the README names it).
INT8_STUDENTS = (
    ("int8.json", "runs/demo/run/student", "demo BBC News student"),
    ("int8_cwi_news.json", "/work/runs/item3/baseline", "CWI News CE baseline, full train set"),
    (
        "int8_cwi_news_student.json",
        "/work/runs/paper-quick/cwi-news/seed0/lugpi/student-effnet",
        "CWI News LUGPI student, offline preset, quick budget",
    ),
    (
        "int8_cwi_wikinews.json",
        "/work/runs/wikinews-ce/baseline",
        "WikiNews CE baseline, 2,000 train rows",
    ),
)


def shipped_row(result: dict[str, Any]) -> dict[str, Any]:
    """The row of the variant export ships today: the first of the export's candidates (in
    its current order) that agrees with PyTorch on enough of dev, else the layer search's
    row. (A results file records what export shipped with the order it had then.)"""
    rows = {r["variant"]: r for r in result["rows"]}
    for settings in QUANT_CANDIDATES:
        row = rows.get("int8 " + settings.label)
        if row is not None and row["dev_agreement"] >= MIN_INT8_AGREEMENT:
            return row
    search = [r for r in result["rows"] if r["variant"].endswith("(search)")]
    if not search:
        raise ValueError(f"{result['model']}: no variant passes and no search row")
    return search[0]


def int8_table() -> str:
    lines = [
        "| student | variant export ships | agree dev | agree test | b1 CPU vs fp32 "
        "| b32 throughput vs fp32 | table |",
        "|---|---|--:|--:|--:|--:|---|",
    ]
    for file, model, title in INT8_STUDENTS:
        result = next(r for r in _load(file) if r["model"] == model)
        row, fp32 = shipped_row(result), result["rows"][0]
        assert fp32["variant"] == "fp32 traced", file
        variant = row["variant"].removeprefix("int8 ")
        lines.append(
            f"| {title} ({result['n_dev']} dev; test acc {result['test_accuracy_torch']:.3f}) "
            f"| {variant} | {row['dev_agreement']:.4f} | {row['test_agreement']:.4f} "
            f"| {row['b1_ms'] / fp32['b1_ms']:.2f}× "
            f"| {row['b32_texts_per_s'] / fp32['b32_texts_per_s']:.2f}× "
            f"| `{file.removesuffix('.json')}.md` |"
        )
    return "\n".join(lines)


# -- Teacher Guided Training on Rotten Tomatoes ----------------------------------------------
TGT_MODELS = (
    ("baseline", "baseline"),
    ("student:effnet", "plain student"),
    ("tgt:sampling", "TGT sampling"),
    ("tgt:disagreement", "TGT disagreement"),
)


def _mean_sd(values: list[float]) -> str:
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"


def tgt_rotten_tomatoes() -> str:
    result = _load("tgt_rotten_tomatoes.json")
    seeds = result["seeds"]
    acc = {key: [s["test_accuracy"][key] for s in seeds] for key, _ in TGT_MODELS}
    cells = ", ".join(f"{title} {_mean_sd(acc[key])}" for key, title in TGT_MODELS)
    diff = [a - b for a, b in zip(acc["tgt:sampling"], acc["student:effnet"], strict=True)]
    kept = [s["tgt"]["kept"] for s in seeds]
    generated = {s["tgt"]["newly_generated"] for s in seeds}
    minutes = sum(s["wall_seconds"] for s in seeds) / 60
    return (
        f"Test accuracy, mean ± sd over {len(seeds)} seeds: {cells}. Paired by seed, TGT "
        f"sampling − plain student is {statistics.fmean(diff):+.3f} (sd "
        f"{statistics.stdev(diff):.3f}). Each seed generated "
        f"{' / '.join(map(str, sorted(generated)))} texts and kept {min(kept)}–{max(kept)}. "
        f"The run took {minutes:.0f} min of wall time on the loaded machine."
    )


def tgt_setting() -> str:
    """The TGT-setting benchmark (a teacher on the full split, students on a subset): the
    reported seeds' table and paired differences, as tgt_benchmark.py renders them."""
    from benchmarks.tgt_benchmark import paired, setting_table

    state = _load("tgt_setting.json")
    chosen = set(state["args"]["choose_seeds"])
    reported = [r for r in state["seeds"] if r["seed"] not in chosen]
    if not reported:
        return "No reported seed has finished yet."
    lines = [f"Reported seeds {', '.join(str(r['seed']) for r in reported)}:", ""]
    lines += [setting_table(reported), ""]
    names = dict(TGT_SETTING_PAIRS)
    for (a, b), title in names.items():
        diffs, mean, half = paired(reported, a, b)
        ci = "" if half != half else f", 95 % interval [{mean - half:+.3f}, {mean + half:+.3f}]"
        per_seed = " / ".join(f"{d:+.3f}" for d in diffs)
        lines.append(f"- {title}: {mean:+.3f}{ci} (per seed {per_seed})")
    if "ceiling" in state:
        c = state["ceiling"]
        lines.append(
            f"- Ceiling, the student on the full train split ({c['train_examples']} texts, "
            f"seed 0): {c['test_accuracy']:.3f}"
        )
    return "\n".join(lines)


TGT_SETTING_PAIRS = (
    (("tgt:sampling", "tgt:augment"), "TGT sampling − augment"),
    (("tgt:gradient", "tgt:augment"), "TGT gradient − augment"),
    (("tgt:sampling", "student:teacher"), "TGT sampling − plain KD"),
    (("tgt:gradient", "student:teacher"), "TGT gradient − plain KD"),
    (("student:teacher", "baseline"), "plain KD − CE baseline"),
)


def paper_tables() -> str:
    """Table 1, Table 2 and their paired intervals, as paper_report.py renders them."""
    from benchmarks.paper_report import intervals_table, table1, table2, table2_intervals

    report = _load("paper_tables.json")
    tables = [table1(report, "accuracy"), intervals_table(report)]
    tables += [table2(report), table2_intervals(report)]
    return "\n\n".join(tables)


def amalgamate(setting: str) -> Callable[[], str]:
    """The StrataNet benchmark's tables over seeds (amalgamate_report.py's), or the
    commands that make them while the setting has no report yet."""

    def block() -> str:
        from benchmarks.amalgamate_report import STEMS, run_commands, tables

        path = RESULTS / f"amalgamate_{STEMS[setting]}.json"
        if not path.is_file():
            commands = "\n".join(run_commands(setting))
            intro = "Not run yet. The commands (3 seeds, then this table):"
            return f"{intro}\n\n```bash\n{commands}\n```"
        return tables(json.loads(path.read_text()))

    return block


def offline_preset() -> str:
    """The offline preset's run (offline_report.py's file), or how to make it."""
    from benchmarks.offline_report import STEM, render

    path = RESULTS / f"{STEM}.json"
    if not path.is_file():
        return (
            "Not measured with the current code yet: `/usr/bin/time -v lugpi run offline "
            "--run-dir runs/cwi-news-offline --repository R 2> time.log`, then "
            "`python benchmarks/offline_report.py --run-dir runs/cwi-news-offline "
            "--time-log time.log --command ... --machine ...`."
        )
    report = json.loads(path.read_text())
    head = f"{report['created_at']}, {report['machine']}: `{report['command']}`"
    return f"{head}\n\n{render(report)}".rstrip()


BLOCKS: dict[str, Callable[[], str]] = {
    "offline-preset": offline_preset,
    "int8-students": int8_table,
    "tgt-rotten-tomatoes": tgt_rotten_tomatoes,
    "tgt-setting": tgt_setting,
    "paper-tables": paper_tables,
    "amalgamate-20ng-halves": amalgamate("20ng-halves"),
    "amalgamate-cross-domain": amalgamate("cross-domain"),
}


def render(text: str) -> str:
    """``text`` with every marked block replaced by what its generator makes now."""

    def fill(m: re.Match[str]) -> str:
        name = m["name"]
        if name not in BLOCKS:
            raise KeyError(f"block {name!r} has no generator in {__file__}")
        return f"{m['begin']}{BLOCKS[name]()}\n{m['end']}"

    return MARKER.sub(fill, text)


def missing_blocks(texts: list[str]) -> list[str]:
    """The generators whose block is in none of ``texts``."""
    seen = {m["name"] for text in texts for m in MARKER.finditer(text)}
    return sorted(set(BLOCKS) - seen)


def stale_blocks(readme: str) -> list[str]:
    """The names of the blocks whose text differs from what the results files give."""
    now = {m["name"]: m["body"] for m in MARKER.finditer(readme)}
    fresh = {m["name"]: m["body"] for m in MARKER.finditer(render(readme))}
    return sorted(name for name in fresh if fresh[name] != now.get(name))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="only report stale blocks")
    p.add_argument("--documents", type=Path, nargs="+", default=list(DOCUMENTS))
    args = p.parse_args(argv)
    texts = {path: path.read_text() for path in args.documents}
    if missing := missing_blocks(list(texts.values())):
        print(f"no document has a block for {missing}")
        return 1
    if args.check:
        stale = [(path, name) for path, text in texts.items() for name in stale_blocks(text)]
        for path, name in stale:
            print(f"stale block {name} in {path} (run python benchmarks/readme_blocks.py)")
        return 1 if stale else 0
    for path, text in texts.items():
        path.write_text(render(text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
