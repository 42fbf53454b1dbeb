"""benchmarks/reproduce_paper.py end to end with ``--budget smoke``: tiny RANDOM-weight
models on 40 training examples of each real dataset. The accuracies mean nothing; what
is tested is that every model of every table is trained, scored and reported, that the
controls reuse the main run's stages, and that a rerun redoes nothing."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ROLES = {"baseline", "image-only:tiny", "teacher:tiny", "student", "alpha=0", "beta=0"}
ROLES |= {"text teacher", "self-distilled"}
NUMBER = re.compile(r"^[+-]?\d\.\d{3}( ± \d\.\d{3})?$")


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "reproduce_paper", REPO / "benchmarks" / "reproduce_paper.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(markdown: str, heading: str) -> list[list[str]]:
    """Body cells of the first table under the heading that starts with ``heading``."""
    section = next(s for s in markdown.split("\n## ") if s.startswith(heading))
    lines = [line for line in section.splitlines() if line.startswith("| ")][1:]  # no header
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines]


def test_smoke_budget_fills_every_table_and_resumes(shared_datasets: Path, tmp_path: Path) -> None:
    script = _script()
    runs, out = tmp_path / "runs", tmp_path / "out"
    args = ["--budget", "smoke", "--seeds", "2", "--datasets-dir", str(shared_datasets)]
    args += ["--runs-dir", str(runs), "--out-dir", str(out), "-q"]
    assert script.main(args) == 0

    report = json.loads((out / "paper_tables.json").read_text())
    datasets = report["datasets"]
    assert list(datasets) == ["cwi-news", "cwi-wikinews", "20newsgroups", "rotten-tomatoes"]
    for key, ds in datasets.items():
        assert list(ds["runs"]) == (["0", "1"] if key == "cwi-news" else ["0"])
        assert ds["budget"]["train"] == 40 and ds["budget"]["test"] == 20
        for run in ds["runs"].values():
            assert set(run["models"]) == ROLES
            for metrics in run["models"].values():
                assert metrics["test"]["n"] == 20 and metrics["dev"]["n"] == 20
            assert run["compute_seconds"] > 0

    md = (out / "paper_tables.md").read_text()
    assert "RANDOM weights" in md and "noise" in md  # said next to the numbers
    assert "Smoke budget" in md
    assert "--budget smoke" in md  # the command that reproduces them
    tables = ("Table 1: accuracy", "Table 1: macro-F1", "Table 2", "The image-free control")
    for heading in (*tables, "CWI 2018 English News: every seed"):
        rows = _rows(md, heading)
        assert len(rows) == 4, heading  # 4 datasets; or 2 seeds + mean + std
        for row in rows:  # every cell after the row name is a number (but Table 1's last)
            cells = row[1:-1] if heading == "Table 1: accuracy" else row[1:]
            assert all(NUMBER.match(cell) or "→" in cell for cell in cells), (heading, row)
    # Beside the paper's number, what differs from the paper's setup, in the same row.
    differs = _rows(md, "Table 1: accuracy")[0][-1]
    assert "noise images" in differs and "(paper distilbert-base-uncased)" in differs
    news = _rows(md, "Table 1: accuracy")[0]
    assert news[:2] == ["CWI 2018 English News (2 seeds)", "0.861 → 0.871"]
    # The majority-class rate beside every dataset, from the test split's labels.
    majority = datasets["cwi-news"]["majority"]["test"]
    assert 0.5 <= majority < 1 and news[2] == f"{majority:.3f}"
    student = [
        r["models"]["student"]["test"]["accuracy"] for r in datasets["cwi-news"]["runs"].values()
    ]
    assert news[6].startswith(f"{sum(student) / 2:.3f} ± ")
    # Paired differences: per seed, then a t-interval over the 2 seeds (n=1 elsewhere).
    paired = _rows(md, "Paired differences")
    assert len(paired) == 4 and paired[0][1].endswith("(n=2)") and "[" in paired[0][1]
    diffs = [
        r["models"]["student"]["test"]["accuracy"] - r["models"]["baseline"]["test"]["accuracy"]
        for r in datasets["cwi-news"]["runs"].values()
    ]
    assert paired[0][1].startswith(f"{sum(diffs) / 2:+.3f} [")
    assert "## Models at the majority-class rate" in md
    # The learning rate: chosen on dev over the grid for seed 0's baseline, used everywhere.
    grid = datasets["cwi-news"]["learning_rate"]
    assert set(grid["grid"]) == {"5e-05", "0.0001", "0.0002"}
    assert grid["grid"][f"{grid['chosen']:g}"] == max(grid["grid"].values())
    assert datasets["cwi-news"]["budget"]["learning_rate"] == grid["chosen"]
    assert datasets["cwi-news"]["budget"]["warmup_ratio"] == 0.1
    assert len(_rows(md, "Compute budget")) == 4

    seed0 = runs / "cwi-news" / "seed0"
    # Seed 0's main run IS the grid run at the chosen rate: its data and baseline are shared.
    assert (seed0 / "lugpi" / "baseline").is_symlink() and (seed0 / "lugpi" / "data").is_symlink()
    # The ablations reuse the main run's data, images and teacher; the control sees no image.
    assert (seed0 / "alpha0" / "teacher-tiny").is_symlink()
    assert (seed0 / "beta0" / "images").is_symlink()
    assert not (seed0 / "self-distill" / "images").exists()
    text_teacher = seed0 / "self-distill" / "teacher-text-only" / "teacher.json"
    assert json.loads(text_teacher.read_text())["modality"] == "text"

    stamps = {p: p.read_text() for p in seed0.glob("*/*/stage.json") if not p.parent.is_symlink()}
    assert script.main(args) == 0  # a rerun finds everything finished and redoes nothing
    assert {p: p.read_text() for p in stamps} == stamps
    assert json.loads((out / "paper_tables.json").read_text())["datasets"].keys() == datasets.keys()


def test_estimate_only_prepares_the_cpu_budget_and_trains_nothing(
    shared_datasets: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--budget", "cpu", "--estimate-only", "--datasets-dir", str(shared_datasets)]
    args += ["--runs-dir", str(tmp_path / "runs"), "--out-dir", str(tmp_path / "out"), "-q"]
    assert _script().main(args) == 0
    printed = capsys.readouterr().out
    assert "estimated total:" in printed
    assert "estimate cwi-news-seed2:" in printed and "estimate 20newsgroups-seed0:" in printed
    assert "train/dev/test 4000/1764/2095" in printed  # CWI News: train subset, full dev/test
    assert "train/dev/test 3000/1129/1500" in printed  # 20 Newsgroups: dev held out of train
    assert not list((tmp_path / "runs").glob("*/seed*/lugpi/student"))
    assert not (tmp_path / "out").exists()


def test_seeds_run_apart_with_fewer_controls_still_make_one_report(
    shared_datasets: Path, tmp_path: Path
) -> None:
    """Seed 0 with every control, seed 1 (another process) without the ablations: the
    report over both marks the missing cells '–' and takes the spread over seeds that have
    each model."""
    script = _script()
    common = ["--budget", "smoke", "--datasets", "cwi-news", "--datasets-dir", str(shared_datasets)]
    common += ["--runs-dir", str(tmp_path / "runs"), "-q"]
    assert script.main([*common, "--seed-list", "0", "--out-dir", str(tmp_path / "a")]) == 0
    sparse = ["--seed-list", "1", "--variants", "image-only", "self-distill"]
    assert script.main([*common, *sparse, "--out-dir", str(tmp_path / "b")]) == 0
    assert not (tmp_path / "runs" / "cwi-news" / "seed1" / "alpha0").exists()

    out = tmp_path / "both"
    assert script.main([*common, "--seeds", "2", "--out-dir", str(out)]) == 0
    runs = json.loads((out / "paper_tables.json").read_text())["datasets"]["cwi-news"]["runs"]
    assert set(runs["0"]["models"]) == ROLES
    assert set(runs["1"]["models"]) == ROLES - {"alpha=0", "beta=0"}
    md = (out / "paper_tables.md").read_text()
    # Ablation cells stand only beside numbers of their own seeds: Table 2 is seed 0's.
    table2 = _rows(md, "Table 2")[0]
    assert table2[0] == "CWI 2018 English News (seeds 0)"
    assert all(NUMBER.match(c) and " ± " not in c for c in table2[1:])
    table1 = _rows(md, "Table 1: accuracy")[0]
    assert " ± " in table1[3]  # the baseline over both seeds where no ablation stands by
    seeds = _rows(md, "CWI 2018 English News: every seed")
    assert seeds[1].count("–") == 2  # seed 1 has no alpha=0 / beta=0 cell


def test_paired_interval_is_the_t_interval_of_the_per_seed_differences() -> None:
    from benchmarks.paper_report import paired_interval

    assert paired_interval([0.02]) is None  # one seed: no interval
    ci = paired_interval([0.01, 0.03])
    assert ci is not None and ci["n"] == 2
    # mean 0.02, sd 0.01414, t(0.975, 1 df) = 12.706: half-width 12.706 * 0.01414 / sqrt 2.
    assert abs(ci["mean"] - 0.02) < 1e-12 and abs(ci["high"] - ci["low"] - 2 * 0.12706) < 1e-4
    five = paired_interval([0.01, -0.01, 0.02, 0.0, 0.03])
    assert five is not None and five["low"] < 0 < five["high"]  # contains 0: no evidence
