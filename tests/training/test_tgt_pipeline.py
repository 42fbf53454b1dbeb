"""The tgt stage and the TGT students through the CLI, as part of ``lugpi run``.

Tiny models: text encoder, ViT and diffusion pipeline with RANDOM weights (the smoke
preset's tiny-random generator: noise images), the shared tiny text generator TRAINED HERE
(conftest). Data: 30 CWI 2018 News pairs (sentence + target), so the generated texts must
keep their target. What is tested is that the stages connect, shard, resume, report and
export, not the accuracies.
"""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path

import pytest
from typer.testing import CliRunner

from contracts.artifacts import is_complete
from models.tiny import make_tiny_image_model
from training.cli import app
from training.generation.near_copies import normalise

pytestmark = pytest.mark.slow
runner = CliRunner()


def _opts(shared: Path, tmp: Path, text_model: Path, generator: Path, vit: Path) -> list[str]:
    opts = []
    for split, n in (("train", 200), ("dev", 60), ("test", 60)):
        src = shared / "cwi2018" / f"News_{split.capitalize()}.tsv"
        with src.open(encoding="utf-8") as f:
            (tmp / f"{split}.tsv").write_text("".join(islice(f, n)), encoding="utf-8")
        opts += ["--set", f"data.{split}={tmp / f'{split}.tsv'}"]
    sets = {
        "data.max_train_samples": 24,
        "data.max_eval_samples": 16,
        "teachers.0.text_model": text_model,
        "teachers.0.image_model": vit,
        "student.text_model": text_model,
        "text_generator.model": generator,
        "text_generator.num_shards": 2,
        "text_generator.batch_size": 8,
        "tgt.enabled": "true",
        "tgt.k": 2,
        "tgt.modes": "[augment, augment-disagreement]",
        "tgt.pool_factor": 2,
        "export.require_int8": "false",
    }
    for key, value in sets.items():
        opts += ["--set", f"{key}={value}"]
    return opts


def test_tgt_runs_in_the_pipeline_sharded_and_resumable_trained_generator_random_models(
    shared_datasets: Path, tmp_path: Path, tiny_text_model: Path, tiny_text_generator: Path
) -> None:
    run_dir = tmp_path / "run"
    vit = make_tiny_image_model(tmp_path / "tiny-vit-random")
    opts = [*_opts(shared_datasets, tmp_path, tiny_text_model, tiny_text_generator, vit)]
    opts += ["--run-dir", str(run_dir), "-q"]
    assert runner.invoke(app, ["prepare", "smoke", *opts]).exit_code == 0
    for shard in ("0", "1"):  # e.g. two machines sharing the text cache
        result = runner.invoke(app, ["tgt", "smoke", *opts, "--shard", shard])
        assert result.exit_code == 0, result.output
    assert not (run_dir / "tgt").exists()  # shards fill the cache only
    cached = list((run_dir / "text-cache").glob("*/*.json"))
    assert len(cached) == 24 * 2 * 2

    result = runner.invoke(app, ["run", "smoke", *opts])
    assert result.exit_code == 0, result.output
    record = json.loads((run_dir / "tgt" / "stage.json").read_text())["summary"]
    assert record["requested"] == 96 and record["newly_generated"] == 0
    rows = [json.loads(x) for x in (run_dir / "tgt" / "generated.jsonl").read_text().splitlines()]
    assert len(rows) == record["kept"] > 0
    # One image per generated text, seeded per sample like the training images (CWI's
    # prompt is the target alone, so without per-sample seeds it would be its source's).
    assert record["images_drawn"] == len(rows) and all(Path(r["image"]).is_file() for r in rows)
    assert len({r["image"] for r in rows}) == len(rows)
    # CWI: every kept sentence still contains its target phrase.
    assert all(
        set(normalise(r["text_pair"]).split()) <= set(normalise(r["text"]).split()) for r in rows
    )
    for mode in ("augment", "augment-disagreement"):
        assert is_complete(run_dir / f"tgt-student-{mode}")
    results = json.loads((run_dir / "evaluate" / "results.json").read_text())["models"]
    assert {"student:effnet", "baseline", "tgt:augment", "tgt:augment-disagreement"} <= set(results)
    per_epoch = results["tgt:augment-disagreement"]["tgt"]["generated_per_epoch"]
    assert per_epoch == round(results["tgt:augment-disagreement"]["tgt"]["generated_available"] / 2)
    table = (run_dir / "evaluate" / "results.md").read_text()
    assert "Student (TGT, augment" in table and "Student (TGT, augment-disagreement" in table
    assert f"{record['kept']} kept" in table
    # Every student is exported; the one of the best dev accuracy is selected.
    selected = json.loads((run_dir / "export" / "stage.json").read_text())["summary"]["selected"]
    assert selected in ("effnet", "tgt-augment", "tgt-augment-disagreement")
    bundle = json.loads((run_dir / "export" / "tgt-augment" / "bundle.json").read_text())
    assert bundle["provenance"]["text_generator"] == str(tiny_text_generator)
    assert bundle["provenance"]["tgt"]["modes"] == ["augment", "augment-disagreement"]
    own, recorded = bundle["metrics"]["student"]["test"], bundle["metrics"]["tgt-augment"]["test"]
    assert own["accuracy"] == recorded["accuracy"]  # the ONNX bundle reproduces its student
