"""benchmarks/paper_report.py on hand-made reports (no training): the reports of several
calls merge into one set of tables that keeps each dataset's command, and Table 1 says
beside the paper's number how our setup differs from the paper's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.paper_report import main, merge, render, summarize


def _run(baseline: float, student: float) -> dict[str, Any]:
    def scores(acc: float) -> dict[str, Any]:
        split = {"accuracy": acc, "macro_f1": acc - 0.01, "n": 500}
        return {"dev": split, "test": split}

    return {
        "models": {"baseline": scores(baseline), "student": scores(student)},
        "stage_seconds": {"baseline": 60.0},
        "compute_seconds": 60.0,
    }


def _report(key: str, title: str, command: str, seeds: dict[str, tuple[float, float]]) -> dict:
    runs = {seed: _run(*accs) for seed, accs in seeds.items()}
    dataset = {
        "title": title,
        "runs": runs,
        "majority": {"dev": 0.6, "test": 0.6},
        "paper": {"dataset": title, "baseline": 0.9, "student": 0.91, "note": ""},
        "budget": {
            "train": 800,
            "dev": 500,
            "test": 500,
            "teacher_epochs": 3.0,
            "student_epochs": 3.0,
            "max_length": 96,
            "batch_size": 8,
            "learning_rate": 1e-4,
            "warmup_ratio": 0.1,
            "text_model": "all-minilm-l6-v2",
            "image_models": ["efficientnet-lite0"],
        },
        "wall_seconds": 60.0,
        "estimate_seconds": 50.0,
        "summary": summarize(runs),
    }
    return {
        "created_at": "2026-12-06 08:00 UTC",
        "command": command,
        "budget": "quick",
        "preset": "offline",
        "machine": "no GPU, 2 CPU cores, 1 torch threads",
        "generator": "tiny-random",
        "images_note": "noise",
        "datasets": {key: dataset},
    }


def _table_rows(markdown: str, heading: str) -> list[list[str]]:
    section = next(s for s in markdown.split("\n## ") if s.startswith(heading))
    lines = [line for line in section.splitlines() if line.startswith("| ")][1:]  # no header
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines]


def test_merged_reports_keep_each_datasets_command_in_the_papers_order(tmp_path: Path) -> None:
    rt = _report("rotten-tomatoes", "RT", "python x --datasets rotten-tomatoes", {"0": (0.7, 0.72)})
    news = _report(
        "cwi-news", "News", "python x --datasets cwi-news", {"0": (0.8, 0.82), "1": (0.78, 0.8)}
    )
    paths = []
    for name, report in (("rt", rt), ("news", news)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(report))
    assert main([*map(str, paths), "--out-dir", str(tmp_path / "out")]) == 0

    merged = json.loads((tmp_path / "out" / "paper_tables.json").read_text())
    assert list(merged["datasets"]) == ["cwi-news", "rotten-tomatoes"]  # not the files' order
    assert merged["datasets"]["cwi-news"]["command"] == "python x --datasets cwi-news"
    md = (tmp_path / "out" / "paper_tables.md").read_text()
    assert md == render(merged)
    assert "- News: `python x --datasets cwi-news`" in md
    assert "- RT: `python x --datasets rotten-tomatoes`" in md
    rows = _table_rows(md, "Table 1: accuracy")
    assert [r[0] for r in rows] == ["News (2 seeds)", "RT"]
    assert rows[0][4] == "0.810 ± 0.014" and rows[1][4] == "0.720"  # the student


def test_a_later_report_of_a_dataset_replaces_the_earlier() -> None:
    one = _report("cwi-news", "News", "python x --seeds 1", {"0": (0.8, 0.82)})
    two = _report("cwi-news", "News", "python x --seeds 2", {"0": (0.8, 0.82), "1": (0.7, 0.7)})
    merged = merge([one, two])
    assert list(merged["datasets"]["cwi-news"]["runs"]) == ["0", "1"]
    assert merged["command"] == "python x --seeds 2"
    assert "Reproduce with `python x --seeds 2`" in render(merged)


def test_seeds_of_one_dataset_from_two_calls_are_pooled() -> None:
    one = _report("rotten-tomatoes", "RT", "python x --other-seeds 1", {"0": (0.7, 0.72)})
    two = _report(
        "rotten-tomatoes",
        "RT",
        "python x --other-seed-list 1 2",
        {"1": (0.74, 0.74), "2": (0.72, 0.76)},
    )
    ds = merge([one, two])["datasets"]["rotten-tomatoes"]
    assert list(ds["runs"]) == ["0", "1", "2"]
    assert ds["summary"]["student"]["accuracy"]["n"] == 3
    assert ds["summary"]["student"]["accuracy"]["mean"] == pytest.approx(0.74)
    assert ds["command"] == "python x --other-seeds 1`, then `python x --other-seed-list 1 2"
    assert ds["wall_seconds"] == 120.0
    other_rate = _report("rotten-tomatoes", "RT", "c", {"1": (0.7, 0.7)})
    other_rate["datasets"]["rotten-tomatoes"]["budget"]["learning_rate"] = 2e-4
    with pytest.raises(ValueError, match="budget"):
        merge([one, other_rate])


def test_reports_of_another_budget_are_not_merged() -> None:
    quick = _report("cwi-news", "News", "a", {"0": (0.8, 0.82)})
    full = {**_report("rotten-tomatoes", "RT", "b", {"0": (0.7, 0.7)}), "budget": "full"}
    with pytest.raises(ValueError, match="budget"):
        merge([quick, full])


def test_table1_says_beside_the_papers_number_what_differs() -> None:
    report = _report("cwi-news", "News", "a", {"0": (0.8, 0.82)})
    report["datasets"]["cwi-news"]["paper"]["note"] = "another split"
    row = _table_rows(render(report), "Table 1: accuracy")[0]
    assert row[1] == "0.900 → 0.910"
    differs = row[-1]
    # Ours against the paper preset's models, images and schedule (configs of record).
    assert "all-minilm-l6-v2 (paper distilbert-base-uncased)" in differs
    assert "efficientnet-lite0 on noise images" in differs
    assert "clip-vit-base-patch32" in differs and "stable-diffusion-2" in differs
    assert "800 train examples (paper all), 3 epochs (paper 100)" in differs
    assert "batch 8 (paper 14)" in differs and "another split" in differs
    real = {**report, "generator": "stabilityai/stable-diffusion-2"}
    assert "noise" not in _table_rows(render(real), "Table 1: accuracy")[0][-1]


def test_a_cell_over_fewer_seeds_than_its_row_names_its_own_count() -> None:
    # Regression: a control trained on one of four seeds showed that seed's value in a row
    # headed "(4 seeds)", read as a mean over four.
    seeds = {"0": (0.8, 0.82), "1": (0.78, 0.8), "2": (0.79, 0.81), "3": (0.77, 0.79)}
    report = _report("cwi-news", "News", "a", seeds)
    ds = report["datasets"]["cwi-news"]
    for run in ds["runs"].values():
        run["models"]["teacher:efficientnet-lite0"] = run["models"]["baseline"]
    ds["runs"]["3"]["models"]["image-only:efficientnet-lite0"] = _run(0.6, 0.6)["models"][
        "baseline"
    ]
    ds["runs"]["2"]["models"]["image-only:efficientnet-lite0"] = _run(0.62, 0.6)["models"][
        "baseline"
    ]
    del ds["runs"]["0"]["models"]["student"]  # the student - baseline pairs: 3 of 4 seeds
    ds["summary"] = summarize(ds["runs"])
    row = _table_rows(render(report), "Table 1: accuracy")[0]
    assert row[0] == "News (4 seeds)"
    assert row[3] == "0.785 ± 0.013"  # the baseline: all four seeds, no count
    assert row[4] == "0.610 ± 0.014 (n=2)"  # image only
    assert row[6] == "0.800 ± 0.010 (n=3)"  # the student
    assert row[7].endswith("(n=3)")  # student - baseline
    one = _report("cwi-news", "News", "a", {"0": (0.8, 0.82)})
    assert all("(n=" not in cell for cell in _table_rows(render(one), "Table 1: accuracy")[0])


def test_table2_has_paired_intervals_of_what_each_loss_term_adds() -> None:
    seeds = {"0": (0.8, 0.82), "1": (0.78, 0.8), "2": (0.79, 0.83)}
    report = _report("rotten-tomatoes", "RT", "a", seeds)
    ds = report["datasets"]["rotten-tomatoes"]
    ablations = [(0.81, 0.8), (0.8, 0.8), (0.8, 0.81)]
    for run, (a0, b0) in zip(ds["runs"].values(), ablations, strict=True):
        run["models"]["alpha=0"] = _run(a0, a0)["models"]["baseline"]
        run["models"]["beta=0"] = _run(b0, b0)["models"]["baseline"]
    ds["runs"]["3"] = _run(0.7, 0.9)  # no ablations: left out of Table 2's pairs
    ds["summary"] = summarize(ds["runs"])
    md = render(report)
    row = _table_rows(md, "Table 2: paired differences")[0]
    assert row[0] == "RT (seeds 0, 1, 2)"
    # Worked by hand, t(0.975, 2) = 4.303: half-width = 4.303 * sd / sqrt(3).
    assert row[1] == "+0.013 [-0.025, +0.051] (n=3)"  # both − α=0: .01, 0, .03
    assert row[2] == "+0.013 [-0.015, +0.042] (n=3)"  # both − β=0: .02, 0, .02
    assert row[3] == "+0.013 [-0.001, +0.028] (n=3)"  # α=0 − baseline: .01, .02, .01
    assert row[4] == "+0.013 [-0.015, +0.042] (n=3)"  # β=0 − baseline: 0, .02, .02
