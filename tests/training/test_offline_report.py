"""benchmarks/offline_report.py on a hand-made run directory (no training): every figure
the README's offline-preset block states comes from the run's own records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.offline_report import collect, main, render
from tests.chaos.bundles import make_exported_run

TIME_LOG = """\
\tCommand being timed: "lugpi run offline"
\tElapsed (wall clock) time (h:mm:ss or m:ss): 1:02:30.50
\tMaximum resident set size (kbytes): 3145728
"""


def _split(acc: float, confusion: list[list[int]]) -> dict[str, Any]:
    n = sum(map(sum, confusion))
    return {"accuracy": acc, "macro_f1": acc - 0.01, "n": n, "confusion": confusion}


def _run_dir(tmp_path: Path, published: dict[str, Any]) -> Path:
    run = make_exported_run(tmp_path / "run", "cwi-news")
    budget = {
        "examples": 4000,
        "batch_size": 32,
        "epochs": 3.0,
        "epochs_reason": "3 epochs: the default floor",
        "steps": 375,
        "warmup_steps": 38,
        "learning_rate": 5e-5,
        "learning_rate_reason": "set in the config",
    }
    for stage, seconds in (("baseline", 1200.0), ("images", 300.0)):
        (run / stage).mkdir()
        summary = {"budget": budget} if stage == "baseline" else {}
        record = {"stage": stage, "seconds": seconds, "summary": summary}
        (run / stage / "stage.json").write_text(json.dumps(record))
    (run / "evaluate").mkdir()
    results = {
        "labels": ["simple", "complex"],
        "models": {
            "baseline": {
                "dev": _split(0.8, [[60, 10], [10, 20]]),
                "test": _split(0.82, [[50, 8], [10, 32]]),
            },
            "student:effnet": {  # the evaluation's key of a one-teacher run's student
                "dev": _split(0.81, [[61, 9], [10, 20]]),
                "test": _split(0.84, [[52, 6], [10, 32]]),
            },
        },
    }
    (run / "evaluate" / "results.json").write_text(json.dumps(results))
    (run / "published.json").write_text(json.dumps(published))
    return run


def test_the_reports_figures_are_the_runs_own(tmp_path: Path) -> None:
    gate = {"action": "publish", "checks": [{"status": "passed", "detail": "ok"}]}
    run = _run_dir(tmp_path, {"name": "cwi-news", "version": "v3", "gate": gate})
    (tmp_path / "time.log").write_text(TIME_LOG)
    report = collect(run, tmp_path / "time.log")
    assert report["majority"] == {"dev": 0.7, "test": 0.58}  # the confusion rows' largest
    assert report["wall_seconds"] == 3750.5 and report["peak_rss_mb"] == 3072
    assert report["stages"]["baseline"]["seconds"] == 1200.0
    assert report["export"]["int8"] is False  # the fake bundle ships fp32 only
    md = render(report)
    assert "| Baseline (text only, CE) | 0.800 | 0.820 | 0.810 |" in md
    assert "| Student (LUGPI), from teacher effnet | 0.810 | 0.840 | 0.830 |" in md
    assert "lr 5e-05 (set in the config)" in md and "375 steps" in md
    assert "Wall time 1 h 03 min, peak resident memory 3.00 GB" in md
    assert "export shipped fp32 only" in md and "published as v3 (publish gate: publish)" in md

    assert (
        main(
            [
                "--run-dir",
                str(run),
                "--command",
                "c",
                "--machine",
                "m",
                "--out-dir",
                str(tmp_path / "o"),
            ]
        )
        == 0
    )
    written = json.loads((tmp_path / "o" / "offline_cwi_news.json").read_text())
    assert (
        written["command"] == "c"
        and render(written) in (tmp_path / "o" / "offline_cwi_news.md").read_text()
    )


def test_a_gated_run_says_why_it_was_not_published(tmp_path: Path) -> None:
    failed = {"status": "failed", "detail": "test accuracy 0.580 is within 0.02 of the majority"}
    gate = {"action": "skip", "checks": [failed]}
    run = _run_dir(tmp_path, {"name": "cwi-news", "version": None, "gate": gate})
    md = render(collect(run, None))
    assert "not published: test accuracy 0.580 is within 0.02 of the majority" in md
    assert "Wall time" not in md
