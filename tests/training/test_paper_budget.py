"""The paper-tables benchmark takes its training budget from the library's plan
(training/students/budget.py), and that gives every budget the epochs the benchmark's own
step floor gave before it moved into the library (no run of an earlier table changes).
Builds configs only: well under a second."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.paper_setup import DATASETS, TinyModels, build_config


# (dataset, budget) -> (teacher epochs, student epochs) the benchmark's old MIN_STEPS rule
# gave: offline preset, batch 32 (cpu) or 8 (quick), at least 300 steps.
@pytest.mark.parametrize(
    ("key", "budget", "epochs"),
    [
        ("cwi-news", "cpu", (3.0, 3.0)),  # 4,000 / 32 = 125 steps an epoch
        ("20newsgroups", "cpu", (4.0, 4.0)),  # 3,000 / 32 = 94
        ("cwi-news", "quick", (3.0, 3.0)),  # 800 / 8 = 100
        ("20newsgroups", "quick", (5.0, 5.0)),  # 500 / 8 = 63
    ],
)
def test_the_benchmark_budgets_are_the_library_plan(
    key: str, budget: str, epochs: tuple[float, float], tmp_path: Path
) -> None:
    cfg = build_config("offline", DATASETS[key], budget, 0, tmp_path, tmp_path / "cache")  # type: ignore[arg-type]
    assert (cfg.teachers[0].epochs, cfg.student.epochs) == epochs
    assert cfg.student.warmup_ratio == 0.1 and cfg.student.min_steps == 300


def test_an_explicit_number_of_epochs_is_kept() -> None:
    tiny = TinyModels(Path("/tiny/text"), Path("/tiny/image"))
    cfg = build_config("offline", DATASETS["cwi-news"], "smoke", 0, Path("/d"), Path("/c"), tiny)
    assert (cfg.teachers[0].epochs, cfg.student.epochs) == (1.0, 1.0)
    paper = build_config("paper", DATASETS["cwi-news"], "cpu", 0, Path("/d"), Path("/c"))
    assert [t.epochs for t in paper.teachers] == [100.0, 100.0] and paper.student.epochs == 100
