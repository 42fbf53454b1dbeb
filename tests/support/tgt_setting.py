"""Data, config and checks shared by the tests of TGT's setting (issue 24 item 4):
tests/training/test_tgt_setting.py (the pipeline) and tests/worker/test_tgt_setting_job.py
(the same config as a job). Two classes of keyword sentences, written here."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

from contracts.config import PipelineConfig
from training.data.prepare import load_prepared

N_TRAIN, N_STUDENT = 20, 8
WORDS = {"pos": ["bright", "warm", "lovely", "grand"], "neg": ["grim", "cold", "dull", "bleak"]}
FILLER = ["the", "film", "was", "a", "story", "of", "its", "cast", "and", "plot", "really"]


def write_data(folder: Path, seed: int = 0) -> dict[str, str]:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, n in (("train", N_TRAIN), ("dev", 10), ("test", 10)):
        path = folder / f"{split}.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            for i in range(n):
                label = ("pos", "neg")[i % 2]
                words = [*rng.sample(FILLER, 5), rng.choice(WORDS[label])]
                rng.shuffle(words)
                w.writerow([f"{split} {i} " + " ".join(words), label])
        files[split] = str(path)
    return files


def raw_config(data: dict[str, str], text_model: Path, latent: Path, **tgt: Any) -> dict[str, Any]:
    small = {"epochs": 1, "batch_size": 8, "learning_rate": 3e-3}
    return {
        "name": "tgt-setting",
        "device": "cpu",
        "data": dict(data),
        "generator": {"model": "tiny-random"},
        "teachers": [
            {"name": "txt", "modality": "text", "text_model": str(text_model),
             "image_model": "efficientnet-lite0", "hidden_size": 16, **small}
        ],
        "student": {"text_model": str(text_model), "max_length": 24, **small},
        "tgt": {
            "enabled": True, "k": 1, "modes": ["sampling"], "latent_model": str(latent),
            "student_train_samples": N_STUDENT, **tgt,
        },
        "export": {"require_int8": False},
    }  # fmt: skip


def summary(d: Path) -> dict[str, Any]:
    return dict(json.loads((d / "stage.json").read_text())["summary"])


def train_texts(d: Path) -> int:
    return int(json.loads((d / "lugpi.json").read_text())["train_examples"]["train"])


def check_the_split(run_dir: Path, cfg: PipelineConfig) -> None:
    """The teacher trained on every train row, each student on the stratified subset."""
    data = load_prepared(run_dir / "data")
    assert len(data.splits["train"]) == N_TRAIN
    assert summary(run_dir / "teacher-txt")["train_examples"] == N_TRAIN
    students = [run_dir / "baseline", run_dir / "student-txt", run_dir / "tgt-student-sampling"]
    assert [train_texts(d) for d in students] == [N_STUDENT] * 3
    record = summary(run_dir / "tgt")["student_train"]
    assert record == {
        "samples": N_STUDENT,
        "of": N_TRAIN,
        "seed": cfg.seed,
        "label_counts": {"neg": N_STUDENT // 2, "pos": N_STUDENT // 2},
    }
    # TGT explored around the students' texts only: every generated text's source is one
    # of the N_STUDENT rows (indices into the students' train split).
    generated = (run_dir / "tgt" / "generated.jsonl").read_text().splitlines()
    assert generated and all(0 <= json.loads(g)["source"] < N_STUDENT for g in generated)
