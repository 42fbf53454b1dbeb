"""TGT's latent modes through the whole pipeline (issue 24): 'sampling' in the tgt stage,
'gradient' online while the student trains, both resumable.

Tiny models: a random 2-layer BERT (MiniLM vocabulary) as the text-only teacher and the
student, the tiny latent generator TRAINED HERE (conftest ``tiny_latent_generator``), 24
labelled texts of the synthetic keyword task (tests/support/tgt_fixture.py). What is
tested is the wiring: where texts come from, that new ones appear between epochs, that
the budget of teacher queries holds, and that a restart decodes and queries nothing it
had done. Not the accuracies.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from support.tgt_fixture import limited_data

from contracts.artifacts import is_complete
from contracts.config import PipelineConfig, parse_config
from training.pipeline import run_pipeline
from training.tracking.progress import RunContext

pytestmark = pytest.mark.slow
EPOCHS, PER_EPOCH, BUDGET = 3, 8, 12  # the budget runs out during the second epoch


def _write(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    return path


def _config(tmp: Path, text_model: Path, latent: Path, **tgt: object) -> PipelineConfig:
    data = limited_data(0, n_train=24, seen_words=5, label_noise=0.0)
    files = {
        split: _write(tmp / f"{split}.csv", [(e.text, str(e.label)) for e in examples[:20]])
        for split, examples in data.splits.items()
        if split in ("train", "dev", "test")
    }
    small = {"epochs": EPOCHS, "batch_size": 8, "learning_rate": 3e-3}
    return parse_config(
        {
            "name": "tgt-latent",
            "device": "cpu",
            "data": {k: str(v) for k, v in files.items()},
            "teachers": [
                {"name": "txt", "modality": "text", "text_model": str(text_model),
                 "hidden_size": 16, **small}
            ],
            "student": {"text_model": str(text_model), "max_length": 24, **small},
            "tgt": {
                "enabled": True, "k": 2, "modes": ["sampling", "gradient"],
                "latent_model": str(latent), "explore_per_epoch": PER_EPOCH,
                "query_budget": BUDGET, **tgt,
            },
            "export": {"require_int8": False},
        }
    )  # fmt: skip


def _record(d: Path) -> dict[str, Any]:
    return dict(json.loads((d / "stage.json").read_text())["summary"])


def _explored(queries: Path, by: str = "epoch") -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for line in (queries / "explored.jsonl").read_text().splitlines():
        row = json.loads(line)
        out.setdefault(row[by], []).append(row["text"])
    return out


def test_sampling_and_gradient_run_in_the_pipeline_online_and_resumable(
    tmp_path: Path, tiny_text_model: Path, tiny_latent_generator: Path
) -> None:
    cfg = _config(tmp_path, tiny_text_model, tiny_latent_generator)
    run_dir = tmp_path / "run"
    run_pipeline(cfg, run_dir, RunContext(), repository=None)

    # sampling: the stage's texts are latent decodes, each with its source row.
    stage = _record(run_dir / "tgt")
    train = [r["text"] for r in csv.DictReader((tmp_path / "train.csv").open())]
    sampled = stage["by_origin"]["sampling"]
    assert "augment" not in stage["by_origin"]  # no masked-LM text without an augment mode
    assert sampled["requested"] == 2 * len(train) == sampled["newly_generated"]
    rows = [json.loads(x) for x in (run_dir / "tgt" / "generated.jsonl").read_text().splitlines()]
    assert len(rows) == sampled["kept"] > 0
    assert {r["origin"] for r in rows} == {"sampling"}
    assert all(r["text"] not in train and 0 <= r["source"] < len(train) for r in rows)
    assert len(list((run_dir / "text-cache" / "latent").glob("*/*.json"))) == 2 * len(train)

    # gradient: explored before each epoch, within the budget, all queried once.
    online = _record(run_dir / "tgt-student-gradient")["tgt"]
    epochs = online["rounds"]
    assert online["explore_every"] == "epoch"
    assert [e["epoch"] for e in epochs] == list(range(EPOCHS))
    assert epochs[0]["explored"] > 0 and epochs[1]["explored"] > 0  # new texts mid-training
    queries = run_dir / "tgt-queries" / "tgt-student-gradient"
    texts = _explored(queries)
    assert [len(texts.get(e, [])) for e in range(EPOCHS)] == [e["explored"] for e in epochs]
    assert not set(texts[1]) & set(texts[0])
    assert not set(texts[0]) & set(train)
    assert sum(e["explored"] for e in epochs) == online["explored"] <= BUDGET
    assert epochs[-1]["explored"] == 0  # spent before the last epoch
    assert online["teacher_queries"] == online["explored"] and online["cache_hits"] == 0
    # The explored texts train: the epoch after each round trains on them (or all there are).
    selected = online["trained_explored"]
    assert selected[-1] == min(PER_EPOCH, online["explored"]) > 0
    cached = (queries / "txt.jsonl").read_text()
    assert len(cached.splitlines()) == online["explored"]
    results = json.loads((run_dir / "evaluate" / "results.json").read_text())["models"]
    assert {"tgt:sampling", "tgt:gradient"} <= set(results)

    # A restart of both students (e.g. after a crash): nothing decoded, nothing queried.
    for mode in ("sampling", "gradient"):
        shutil.rmtree(run_dir / f"tgt-student-{mode}")
    shutil.rmtree(run_dir / "tgt")
    run_pipeline(cfg, run_dir, RunContext(), repository=None)
    assert _record(run_dir / "tgt")["by_origin"]["sampling"]["newly_generated"] == 0
    again = _record(run_dir / "tgt-student-gradient")["tgt"]
    assert again["teacher_queries"] == 0
    assert again["cache_hits"] == again["explored"] == online["explored"]
    assert _explored(queries) == texts
    assert is_complete(run_dir / "tgt-student-sampling")


def test_sampling_texts_get_images_and_rebuild_alike_for_a_worker(
    tmp_path: Path, tiny_latent_generator: Path
) -> None:
    """An image-reading teacher keeps the generate-then-draw path for 'sampling': each kept
    latent sample gets its own image, and the rows a worker rebuilds to draw a shard of
    them (``stage_texts``, all cached by then) are the stage's, none decoded again."""
    from support.tgt_fixture import KeywordColourPipeline

    from training.tgt.texts import load_generated, run_tgt, stage_texts

    cfg = parse_config(
        {
            "device": "cpu",
            "data": {"train": "synthetic"},
            "generator": {"model": "keyword-colour", "image_size": 32, "steps": 1},
            "tgt": {"enabled": True, "k": 2, "modes": ["sampling"],
                    "latent_model": str(tiny_latent_generator)},
        }
    )  # fmt: skip
    data = limited_data(0, n_train=8)
    out = run_tgt(
        cfg, data, tmp_path / "tgt", RunContext(), text_cache=tmp_path / "texts",
        image_cache=tmp_path / "images", image_pipe=KeywordColourPipeline(),
    )  # fmt: skip
    rows, summary = load_generated(out)
    assert rows and {r.origin for r in rows} == {"sampling"}
    assert summary["images_drawn"] == len(rows) == len({r.image for r in rows})
    assert all(r.image is not None and Path(r.image).is_file() for r in rows)
    again = stage_texts(cfg, data, tmp_path / "texts", RunContext())
    assert again.newly_generated == 0
    assert [(r.text, r.source, r.draw) for r in again.rows] == [
        (r.text, r.source, r.draw) for r in rows
    ]


def test_gradient_explores_every_n_steps_around_the_current_batch(
    tmp_path: Path, tiny_text_model: Path, tiny_latent_generator: Path
) -> None:
    """``tgt.explore_every_steps: 2``: rounds within an epoch (20 labelled + 8 generated rows
    in batches of 8: 4 steps, 2 rounds per epoch), around the batch's labelled texts, until
    the budget is spent."""
    cfg = _config(
        tmp_path, tiny_text_model, tiny_latent_generator, modes=["gradient"], explore_every_steps=2
    )
    run_dir = tmp_path / "run"
    run_pipeline(cfg, run_dir, RunContext(), repository=None)
    online = _record(run_dir / "tgt-student-gradient")["tgt"]
    rounds = online["rounds"]
    assert online["explore_every"] == 2
    assert [r["epoch"] for r in rounds] == [e for e in range(EPOCHS) for _ in range(2)]
    assert rounds[0]["explored"] > 0 and rounds[1]["explored"] > 0  # twice in epoch 1
    assert sum(r["explored"] for r in rounds) == online["explored"] <= BUDGET
    assert rounds[-1]["explored"] == 0  # the budget was spent before the last round
    texts = _explored(run_dir / "tgt-queries" / "tgt-student-gradient", by="round")
    assert not set(texts[0]) & set(texts[1])
    assert online["teacher_queries"] == online["explored"]
