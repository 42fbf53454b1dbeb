"""StrataNet's learned steering (issue 25 item 3): a steering vector per teacher and class
on the latent generator's states, optimised against the teacher's cross-entropy for the
class with a diversity term (training/strata/learned.py), against its unsteered control
(the same decodes without the vector) and reseeding, at one acceptance filter and one
budget.

Task: the StrataNet fixture (tests/support/strata_fixture.py): teachers "left"
(north/south) and "right" (east/west), tiny random-init BERTs trained here on their own
keyword texts. The latent generator is TGT's architecture, small, trained here on the
fixture's generator corpus (BBC News plus unlabelled keyword texts, no teacher or test
text). Generation starts from the class NAMES (no prompts: the names are not keywords)
and 300 keyword-free BBC News seed texts, so what the unsteered control decodes carries
no keyword of the class unless the generator puts one in: the teachers are not oracles
(they are the trained classifiers the mode amalgamates) and steering can fail.

Settings (relative latent distance 1.0, 20 steps of 0.1, diversity 0.3, 2 rounds of
8 x 4 decodes per class) were chosen on seeds 0-1; the assertions run on seeds 2-3.
Measured (teacher: learned vs unsteered mean class confidence, at the same 128 decodes):
tuning seeds: 0 left 0.952 / 0.793, 0 right 0.765 / 0.577, 1 left 0.504 / 0.503 (that
teacher barely learned its task: every answer near 0.5), 1 right 0.876 / 0.824;
asserted seeds: 2 left 0.569 / 0.533, 2 right 0.506 / 0.503, 3 left 0.802 / 0.626,
3 right 0.816 / 0.500. Distinct 2-grams of the learned arm with the diversity term and
without: seeds 0-1 0.277 / 0.295, 0.196 / 0.045, 0.427 / 0.163, 0.168 / 0.196; seeds 2-3
0.544 / 0.180, 0.444 / 0.055, 0.216 / 0.026, 0.216 / 0.023. Not asserted, because it did
not hold: learned steering more diverse than the unsteered control (its distinct 2-grams
were lower on every tuning run: 0.28 vs 0.40, 0.20 vs 0.38, 0.17 vs 0.36, except the
untrained teacher) and more texts accepted than the control on every teacher (seed 2
right: 32 vs 40; seed 3 right 34 vs 44). Without the diversity term the steered texts
collapse onto a repeated word ("as as as ...").
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from support.strata_fixture import (
    TEACHER_CLASSES,
    neutral_seed_texts,
    train_strata_latent_generator,
    train_teachers,
)

from contracts.config import PipelineConfig, parse_config
from training.strata.mode import learned_teacher, steering_report
from training.strata.teachers import load_teachers, read_teacher
from training.students.train_loop import seed_everything
from training.tgt.latent_generator import TinyLatentGenerator
from training.tracking.progress import RunContext

pytestmark = pytest.mark.slow
SEEDS = (2, 3)  # seeds 0-1 chose the settings


@pytest.fixture(scope="module")
def latent_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_strata_latent_generator(tmp_path_factory.mktemp("strata-latent"))


@pytest.fixture(scope="module")
def seeded_teachers(
    tmp_path_factory: pytest.TempPathFactory, tiny_text_model: Path
) -> dict[int, dict[str, Path]]:
    root = tmp_path_factory.mktemp("strata-steer-teachers")
    out = {}
    for seed in SEEDS:
        seed_everything(seed)
        out[seed] = train_teachers(root / f"seed{seed}", seed, tiny_text_model)
    return out


def steer_config(
    seed: int, text_model: Path, latent: Path, teachers: dict[str, Path], **steering: Any
) -> PipelineConfig:
    """Data-free from the class names: no prompts."""
    return parse_config(
        {
            "seed": seed,
            "device": "cpu",
            "student": {"text_model": str(text_model), "max_length": 16},
            "tgt": {"latent_model": str(latent)},
            "strata": {
                "enabled": True,
                "teachers": [{"name": n, "model": str(d), "max_length": 16}
                             for n, d in teachers.items()],
                "steering": {"method": "learned", "rounds": 2, "per_class": 1000,
                             "seeds_per_class": 8, "draws_per_seed": 4, **steering},
            },
        }
    )  # fmt: skip


def learned_arms(cfg: PipelineConfig, latent: Path) -> dict[str, dict[str, Any]]:
    """Per teacher: the steering report of the learned arm and its unsteered control."""
    generator = TinyLatentGenerator(latent)
    pool = neutral_seed_texts()
    out = {}
    for t in load_teachers(cfg.strata.teachers, torch.device("cpu")):
        pool_probs = read_teacher(t, pool, []).probs
        _, record, arms = learned_teacher(cfg, t, pool, pool_probs, generator, RunContext())
        out[t.name] = steering_report(t, arms, record["thresholds"])
    return out


@pytest.fixture(scope="module")
def default_runs(
    seeded_teachers: dict[int, dict[str, Path]], tiny_text_model: Path, latent_dir: Path
) -> dict[int, dict[str, dict[str, Any]]]:
    return {
        s: learned_arms(steer_config(s, tiny_text_model, latent_dir, ts), latent_dir)
        for s, ts in seeded_teachers.items()
    }


def test_learned_steering_raises_class_confidence_over_unsteered_at_the_same_budget(
    default_runs: dict[int, dict[str, dict[str, Any]]],
) -> None:
    gains = []
    for seed, reports in default_runs.items():
        for name, report in reports.items():
            arms = report["arms"]
            learned, plain = arms["learned"], arms["unsteered"]
            print(seed, name, json.dumps(report))
            # The same budget: the control decodes the very requests without the vector.
            assert (
                learned["decoded"] == plain["decoded"] == sum(report["budget_per_class"].values())
            )
            gains.append(learned["mean_class_confidence"] - plain["mean_class_confidence"])
    print("gains", gains)
    assert statistics.mean(gains) > 0.03, gains
    assert min(gains) > -0.02, gains


def test_the_diversity_term_keeps_the_steered_texts_apart(
    default_runs: dict[int, dict[str, dict[str, Any]]],
    seeded_teachers: dict[int, dict[str, Path]],
    tiny_text_model: Path,
    latent_dir: Path,
) -> None:
    on, off = [], []
    for seed, ts in seeded_teachers.items():
        cfg = steer_config(seed, tiny_text_model, latent_dir, ts, diversity=0.0)
        without = learned_arms(cfg, latent_dir)
        for name in TEACHER_CLASSES:
            on.append(default_runs[seed][name]["arms"]["learned"]["distinct_2"])
            off.append(without[name]["arms"]["learned"]["distinct_2"])
    print("distinct-2 with / without the diversity term", on, off)
    assert np.mean(on) > np.mean(off), (on, off)
