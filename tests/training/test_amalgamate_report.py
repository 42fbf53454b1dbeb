"""benchmarks/amalgamate_report.py on hand-made seed files (no training): means and sds
over seeds, paired t-intervals on known numbers, the best-row choice, the teachers' cap
read off their rows, and one seed, which gives no interval and says so."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.amalgamate_report import (
    AVERAGING,
    MAX_PROB,
    OWNER,
    REAL_DATA,
    RMD,
    RMD_ST,
    aggregate,
    main,
    teacher_row,
)

# Overall accuracy per seed; each teacher's labels get overall ± 0.1, except a teacher's
# row, which (as in the benchmark) scores 0 on the other teacher's labels and, the test set
# being half each teacher's, twice its overall accuracy on its own.
ACCURACY = {
    teacher_row("a"): (0.40, 0.42, 0.44),
    teacher_row("b"): (0.38, 0.39, 0.40),
    AVERAGING: (0.50, 0.52, 0.48),
    MAX_PROB: (0.45, 0.44, 0.46),
    OWNER: (0.47, 0.47, 0.47),
    RMD: (0.48, 0.51, 0.51),
    RMD_ST: (0.49, 0.50, 0.54),
    REAL_DATA: (0.75, 0.74, 0.76),
}


def _seed(seed: int, small: bool = False) -> dict[str, Any]:
    models = {
        name: {
            "accuracy": {"overall": acc[seed], "a": acc[seed] + 0.1, "b": acc[seed] - 0.1},
            "seconds": 100 + seed,
        }
        for name, acc in ACCURACY.items()
    }
    for half, other in (("a", "b"), ("b", "a")):
        overall = ACCURACY[teacher_row(half)][seed]
        models[teacher_row(half)]["accuracy"].update({half: 2 * overall, other: 0.0})
    return {
        "command": f"python benchmarks/amalgamate_benchmark.py --seed {seed}"
        + (" --small" if small else ""),
        "title": "two halves",
        "setting": {"per_half": 60 if small else 800, "seed": seed, "setting": "20ng-halves"},
        "halves": {"a": ["x", "y"], "b": ["z", "w"]},
        "models": models,
        "generation": {"generated": 300 + seed, "kept": 200 + seed, "seconds": 40},
        "wall_seconds": 1000 + seed,
        "finished": True,
    }


def test_means_sds_and_paired_intervals_over_three_seeds() -> None:
    report = aggregate([_seed(0), _seed(1), _seed(2)], "20ng-halves")
    assert report["n"] == 3 and report["seeds"] == [0, 1, 2]
    averaging = report["rows"][AVERAGING]["accuracy"]
    assert averaging["overall"]["mean"] == pytest.approx(0.50)
    assert averaging["overall"]["sd"] == pytest.approx(0.02)
    assert averaging["a"]["mean"] == pytest.approx(0.60)
    assert averaging["overall"]["per_seed"] == {"0": 0.50, "1": 0.52, "2": 0.48}

    diffs = {d["title"]: d for d in report["differences"]}
    # RMD − averaging per seed: -0.02, -0.01, +0.03; mean 0, sd 0.026458;
    # t(0.975, 2) = 4.302653, so the half-width is 4.302653 * 0.026458 / sqrt(3) = 0.065724.
    d = diffs["RMD − averaging"]
    assert d["n"] == 3
    overall = d["columns"]["overall"]
    assert overall["per_seed"] == {"0": -0.02, "1": -0.01, "2": 0.03}
    assert overall["mean"] == pytest.approx(0.0, abs=1e-9)
    assert overall["interval"] == pytest.approx([-0.0657, 0.0657], abs=1e-4)
    # The per-label columns differ by the same amounts (each row's offsets cancel).
    assert d["columns"]["a"]["interval"] == pytest.approx(overall["interval"], abs=1e-4)
    # RMD − owner-routing: +0.01, +0.04, +0.04.
    owner = diffs["RMD − owner-routing"]["columns"]["overall"]
    assert owner["mean"] == pytest.approx(0.03)
    assert owner["interval"][0] == pytest.approx(0.03 - 4.302653 * 0.017321 / 3**0.5, abs=1e-4)

    # Best data-free row by mean overall: RMD + ST-amalg (0.51) over averaging and RMD
    # (0.50); best single teacher: a (0.42). Never the real-data student.
    assert report["chosen"] == {
        "best data-free row": RMD_ST,
        "best single teacher": teacher_row("a"),
    }
    best = diffs["best data-free row − best single teacher"]["columns"]["overall"]
    assert best["per_seed"] == {"0": 0.09, "1": 0.08, "2": 0.10}
    # The default row, named before the runs, against the best teacher and the cap (each
    # teacher's share of the test set: 0.5), which has an overall column only.
    fixed = diffs["RMD + ST-amalg − best single teacher"]["columns"]["overall"]
    assert fixed["per_seed"] == best["per_seed"]
    cap = diffs["RMD + ST-amalg − a teacher's best possible score"]
    assert list(cap["columns"]) == ["overall"]
    assert cap["columns"]["overall"]["per_seed"] == {"0": -0.01, "1": 0.0, "2": 0.04}
    assert report["per_seed"]["1"] == {
        "command": "python benchmarks/amalgamate_benchmark.py --seed 1",
        "generated": 301,
        "kept": 201,
        "generation_seconds": 40,
        "wall_seconds": 1001,
        "finished": True,
    }


def test_one_seed_gives_no_interval_and_says_so(tmp_path: Path) -> None:
    (tmp_path / "amalgamate_20ng_seed0.json").write_text(json.dumps(_seed(0)))
    assert main(["--setting", "20ng-halves", "--results-dir", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "amalgamate_20ng.json").read_text())
    assert report["n"] == 1
    d = report["differences"][0]
    assert d["n"] == 1 and d["columns"]["overall"]["interval"] is None
    assert d["columns"]["overall"]["mean"] == pytest.approx(0.01)
    assert report["rows"][RMD]["accuracy"]["overall"]["sd"] is None
    md = (tmp_path / "amalgamate_20ng.md").read_text()
    assert "| RMD − owner-routing | +0.010 (n=1: no interval) |" in md
    assert "| data-free student (RMD, output only) | 0.480 (n=1) |" in md


def test_small_files_are_reported_apart_and_settings_are_not_mixed(tmp_path: Path) -> None:
    for seed in (0, 1):
        (tmp_path / f"amalgamate_20ng_seed{seed}.json").write_text(json.dumps(_seed(seed)))
    (tmp_path / "amalgamate_20ng_seed0_small.json").write_text(json.dumps(_seed(0, True)))
    assert main(["--setting", "20ng-halves", "--results-dir", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "amalgamate_20ng.json").read_text())["seeds"] == [0, 1]
    assert main(["--setting", "20ng-halves", "--small", "--results-dir", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "amalgamate_20ng_small.json").read_text())["seeds"] == [0]
    # No cross-domain seed yet: nothing to write.
    assert main(["--setting", "cross-domain", "--results-dir", str(tmp_path)]) == 1
    # A seed run with another budget is refused rather than averaged in.
    with pytest.raises(ValueError, match="per_half"):
        aggregate([_seed(0), _seed(1, small=True)], "20ng-halves")
