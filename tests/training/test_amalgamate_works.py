"""The data-free amalgamation works, not just runs: two teachers with disjoint label sets,
3 seeds, no teacher data anywhere in the amalgamation.

Task (tests/support/strata_fixture.py): 4 keyword classes; teacher "left" is trained on
north/south only, teacher "right" on east/west only (tiny random-init BERTs trained here).
The generator is a tiny masked LM trained here on BBC News plus an unlabelled corpus over
the same vocabulary; the seed texts are another unlabelled draw of that corpus. Neither
shares a text with the teachers' labelled data. The held-out test set (200 texts, all
four classes, balanced) is drawn apart from everything.

What makes it hard, and why the weighting matters: a teacher is confidently wrong on the
other teacher's classes ("left" calls most east/west texts north or south with p > 0.9,
while "right", trained the same way, is less sure even on its own classes). Plain
averaging then follows "left" on "right"'s texts; last-layer max probability trusts the
overconfident teacher everywhere; the layer-wise, self-regulated confidence judges each
teacher against its own texts (probe agreement and typicality per layer,
training/students/teacher_weighting.py) and routes most texts to the teacher they were made for.

Asserted (test accuracy over the 4 classes): on every seed the layer-wise student beats
each teacher alone (at most 0.5: half the classes are unknown to it) and the
max-probability student, and routes more texts to their own teacher; over the seeds its
mean beats the averaging student's by more than 0.05 (on one seed of three averaging
measured higher: docs/stratanet.md has the numbers).
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
    held_out,
    seed_file,
    teacher_data,
    train_strata_generator,
)

from contracts.config import PipelineConfig, parse_config
from models.text import load_text_classifier, predict_logits
from training.lugpi.distill import train_baseline
from training.strata.mode import (
    load_generation,
    run_generation,
    train_strata_student,
)
from training.strata.teachers import load_teachers, read_teacher
from training.students.train_loop import seed_everything
from training.tracking.progress import RunContext

pytestmark = pytest.mark.slow
SEEDS = (0, 1, 2)
MODES = ("mean", "max_prob", "layerwise")


@pytest.fixture(scope="module")
def strata_generator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_strata_generator(tmp_path_factory.mktemp("strata-generator-trained"))


def train_teachers(root: Path, seed: int, text_model: Path) -> dict[str, Path]:
    """Each teacher on its own two classes (CE, the pipeline's trainer)."""
    out = {}
    for name in TEACHER_CLASSES:
        cfg = parse_config(
            {
                "seed": seed,
                "device": "cpu",
                "data": {"train": "synthetic"},
                "student": {"text_model": str(text_model), "max_length": 16, "epochs": 30,
                            "learning_rate": 3e-3, "batch_size": 16,
                            "warmup_ratio": 0.0},  # chosen before warm-up was the default
            }
        )  # fmt: skip
        out[name] = train_baseline(
            cfg, teacher_data(name, seed), root / f"teacher-{name}", RunContext()
        )
    return out


def amalgamate_config(
    seed: int, text_model: Path, generator: Path, teachers: dict[str, Path], seeds: Path,
    **amalgamate: Any,
) -> PipelineConfig:  # fmt: skip
    return parse_config(
        {
            "seed": seed,
            "device": "cpu",
            "student": {"text_model": str(text_model), "max_length": 16, "epochs": 40,
                        "learning_rate": 3e-3, "batch_size": 8,
                        "warmup_ratio": 0.0},  # chosen before warm-up was the default
            "distill": {"alpha": 1.0, "beta": 0.0, "tau": 1.0},
            "text_generator": {"model": str(generator), "mask_fraction": 0.2, "batch_size": 64},
            "strata": {
                "enabled": True,
                "seed_texts": str(seeds),
                "teachers": [{"name": n, "model": str(d), "max_length": 16}
                             for n, d in teachers.items()],
                "steering": {"rounds": 4, "per_class": 150, "seeds_per_class": 16,
                             "draws_per_seed": 4, "seed_pool": 400},
                **amalgamate,
            },
        }
    )  # fmt: skip


def student_accuracy(model_dir: Path, test: list[tuple[str, str]]) -> float:
    model, tok, meta = load_text_classifier(model_dir)
    texts = [t for t, _ in test]
    logits = predict_logits(
        model, tok, texts, None, max_length=16, batch_size=64, device=model.device
    )
    gold = np.asarray([meta.labels.index(y) for _, y in test])
    return float((logits.argmax(-1) == gold).mean())


def teacher_accuracy(cfg: PipelineConfig, test: list[tuple[str, str]]) -> dict[str, float]:
    out = {}
    for t in load_teachers(cfg.strata.teachers, torch.device("cpu")):
        answer = read_teacher(t, [x for x, _ in test], []).logits.argmax(-1)
        out[t.name] = float(
            np.mean([t.labels[int(a)] == y for a, (_, y) in zip(answer, test, strict=True)])
        )
    return out


def one_seed(seed: int, root: Path, text_model: Path, generator: Path) -> dict[str, Any]:
    seed_everything(seed)
    ctx = RunContext()
    teachers = train_teachers(root, seed, text_model)
    seeds = seed_file(root / "seeds.txt")
    test = held_out(seed)
    cfg = amalgamate_config(seed, text_model, generator, teachers, seeds)
    gen_dir = run_generation(cfg, root / "strata", ctx, text_cache=root.parent / "text-cache")
    _, summary = load_generation(gen_dir)
    result: dict[str, Any] = {f"teacher_{k}": v for k, v in teacher_accuracy(cfg, test).items()}
    for mode in MODES:
        d = train_strata_student(cfg, gen_dir, root / f"student-{mode}", ctx, mode=mode)
        result[mode] = student_accuracy(d, test)
        meta = json.loads((d / "lugpi.json").read_text())
        result[f"{mode}_routed"] = meta["strata"]["routing"]["routed_to_owner"]
    result["generated"] = summary["generated"]
    result["kept"] = summary["kept"]
    return result


def test_layerwise_student_beats_each_teacher_averaging_and_max_prob_on_disjoint_label_sets(
    tmp_path: Path, tiny_text_model: Path, strata_generator: Path
) -> None:
    runs = {s: one_seed(s, tmp_path / f"seed{s}", tiny_text_model, strata_generator) for s in SEEDS}
    print(
        {
            s: {k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}
            for s, r in runs.items()
        }
    )
    for s, r in runs.items():
        best_teacher = max(r["teacher_left"], r["teacher_right"])
        assert best_teacher <= 0.5 + 1e-9, (s, r)  # each knows half the classes
        assert r["layerwise"] > best_teacher, (s, r)
        assert r["layerwise"] > r["max_prob"], (s, r)
        assert r["layerwise_routed"] > r["max_prob_routed"], (s, r)
    # Averaging is close on a seed whose teachers happen to be less sure off their own
    # classes (measured: seed 1), so against it the mean over the seeds is asserted.
    mean = {m: statistics.mean(runs[s][m] for s in SEEDS) for m in MODES}
    assert mean["layerwise"] > mean["mean"] + 0.05, mean


def test_steering_buys_confidence_and_coverage_over_unsteered_generation(
    tmp_path: Path, tiny_text_model: Path, strata_generator: Path
) -> None:
    """Same teachers, generator and seed texts, about as many texts per teacher: the
    steered texts cover every class of each teacher far better (texts per class the
    teacher accepts at its own bar), at no loss of confidence. Diversity (distinct
    2-grams) is reported, not asserted: steering trades a little of it."""
    ctx = RunContext()
    teachers = train_teachers(tmp_path, 0, tiny_text_model)
    seeds = seed_file(tmp_path / "seeds.txt")
    stats = {}
    for steer in (True, False):
        cfg = amalgamate_config(0, tiny_text_model, strata_generator, teachers, seeds)
        a = cfg.strata.model_copy(
            update={"steering": cfg.strata.steering.model_copy(update={"enabled": steer})}
        )
        cfg = cfg.model_copy(update={"strata": a})
        out = run_generation(cfg, tmp_path / f"gen-{steer}", ctx, text_cache=tmp_path / "cache")
        _, summary = load_generation(out)
        stats[steer] = {n: v["kept_stats"] for n, v in summary["teachers"].items()}
    print({k: v for k, v in stats.items()})
    # Measured (seed 0): accepted per class at each teacher's own bar, steered vs not:
    # left 110/150 vs 73/79, right 150/150 vs 82/60; mean confidence 0.980 vs 0.975 and
    # 0.620 vs 0.618; distinct 2-grams 0.23 vs 0.25 and 0.21 vs 0.26.
    for name in TEACHER_CLASSES:
        steered, plain = stats[True][name], stats[False][name]
        coverage = min(steered["accepted_per_class"].values())
        assert coverage > 1.2 * min(plain["accepted_per_class"].values()), stats
        assert steered["mean_confidence"] >= plain["mean_confidence"] - 0.005, stats
