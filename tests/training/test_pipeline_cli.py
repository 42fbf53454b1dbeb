"""The ``lugpi`` command line and the resumable pipeline behind it.

The end-to-end test runs every stage THROUGH THE CLI on 40 CWI examples with tiny
models with RANDOM weights (text encoder, ViT image encoder, diffusion pipeline):
its accuracies mean nothing; what is tested is that the stages connect, resume,
export and publish.
"""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from contracts.artifacts import is_complete
from training.cli import app

runner = CliRunner()


def _cwi_slice(shared: Path, tmp: Path) -> list[str]:
    """--set options pointing data.* at small slices of CWI News (tmp copies, not in the repo)."""
    opts = []
    for split, n in (("train", 400), ("dev", 120), ("test", 120)):
        src = shared / "cwi2018" / f"News_{split.capitalize()}.tsv"
        with src.open(encoding="utf-8") as f:
            (tmp / f"{split}.tsv").write_text("".join(islice(f, n)), encoding="utf-8")
        opts += ["--set", f"data.{split}={tmp / f'{split}.tsv'}"]
    return opts


def _invoke(*args: str | Path) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def test_help_explains_every_command() -> None:
    code, out = _invoke("--help")
    assert code == 0
    for command in ("run", "prepare", "generate", "teacher", "distill", "baseline", "evaluate"):
        assert command in out
    code, out = _invoke("run", "--help")
    assert code == 0 and "preset" in out and "--set" in out and "--repository" in out


def test_user_errors_print_one_line_and_exit_2(tmp_path: Path) -> None:
    code, out = _invoke("prepare", "no-such-config", "--run-dir", tmp_path / "r")
    assert code == 2 and "config no-such-config not found" in out and "Traceback" not in out
    code, out = _invoke("prepare", "smoke", "--set", "student.epochs")
    assert code == 2 and "expected KEY=VALUE" in out
    code, out = _invoke("prepare", "smoke", "--set", "student.epochs=-1", "--run-dir", tmp_path)
    assert code == 2 and "student.epochs" in out
    missing = tmp_path / "missing.tsv"
    code, out = _invoke("prepare", "smoke", "--set", f"data.train={missing}", "--run-dir", tmp_path)
    assert code == 2 and f"data file not found: {missing}" in out and "Traceback" not in out
    assert len([line for line in out.splitlines() if "error" in line]) == 1
    code, out = _invoke("distill", "smoke", "--run-dir", tmp_path / "fresh", "-q")
    assert code == 2 and "run `lugpi prepare` first" in out


def test_stage_commands_resume_shard_and_pin_the_config(
    shared_datasets: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    opts = [*_cwi_slice(shared_datasets, tmp_path), "--run-dir", str(run_dir), "-q"]
    opts += ["--set", "data.max_train_samples=30", "--set", "data.max_eval_samples=10"]
    opts += ["--set", "generator.num_shards=3"]
    code, out = _invoke("prepare", "smoke", *opts)
    assert code == 0, out
    assert is_complete(run_dir / "data")
    pinned = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert pinned["data"]["max_train_samples"] == 30
    assert Path(pinned["data"]["train"]).is_absolute()
    for shard in ("0", "1", "2"):
        code, out = _invoke("generate", "smoke", *opts, "--shard", shard)
        assert code == 0, out
    assert not (run_dir / "images").exists()  # shards fill the cache only
    code, out = _invoke("generate", "smoke", *opts)
    assert code == 0, out
    index = json.loads((run_dir / "images" / "images.json").read_text())
    assert index["summary"]["drawn"] == 0 and len(index["splits"]["train"]) == 30
    # Changing what the run makes is refused; changing how fast it runs is not.
    code, out = _invoke("prepare", "smoke", *opts, "--set", "seed=1")
    assert code == 2 and "different config (seed)" in out
    code, out = _invoke("prepare", "smoke", *opts, "--set", "generator.batch_size=4")
    assert code == 0, out


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight ViT (32x32 images, one layer) with its image processor."""
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    out = tmp_path_factory.mktemp("tiny-vit-random")
    torch.manual_seed(0)
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    )
    ViTModel(config, add_pooling_layer=False).save_pretrained(out)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(out)
    return out


@pytest.mark.slow
def test_whole_pipeline_through_the_cli_with_random_tiny_models(
    shared_datasets: Path, tmp_path: Path, tiny_text_model: Path, tiny_vit: Path
) -> None:
    run_dir, repo = tmp_path / "run", tmp_path / "repo"
    opts = [*_cwi_slice(shared_datasets, tmp_path), "--run-dir", str(run_dir), "-q"]
    opts += ["--set", "data.max_train_samples=40", "--set", "data.max_eval_samples=20"]
    for key in ("teachers.0.text_model", "student.text_model"):
        opts += ["--set", f"{key}={tiny_text_model}"]
    opts += ["--set", f"teachers.0.image_model={tiny_vit}"]
    opts += ["--set", "tracking.mlflow=true"]  # into a real local MLflow store in the run dir
    code, out = _invoke("run", "smoke", *opts, "--repository", repo)
    assert code == 0, out
    stages = ("data", "images", "teacher-effnet", "student-effnet", "baseline", "evaluate")
    for stage in (*stages, "export", "export/effnet"):
        assert is_complete(run_dir / stage), stage
    assert "published: smoke v1" in out
    assert (repo / "smoke" / "v1" / "bundle.json").is_file()
    # Issue 26: results.md has each bundle's score temperature; the publish gate's decision
    # is recorded, and a held version carries its marker (and the CLI says why).
    assert "## Score temperature" in (run_dir / "evaluate" / "results.md").read_text()
    gate = json.loads((run_dir / "published.json").read_text())["gate"]
    held = gate["action"] == "hold"
    assert held == (repo / "smoke" / "v1" / ".held").is_file(), gate
    assert held == ("publish gate: hold:" in out), out
    manifest = json.loads((repo / "smoke" / "v1" / "bundle.json").read_text())
    assert manifest["labels"] == ["complex", "simple"] and manifest["text_pair"] is True
    assert {"baseline", "teacher-effnet", "student", "student-effnet"} <= set(manifest["metrics"])
    assert manifest["provenance"]["student"] == "effnet"
    assert manifest["provenance"]["loss"]["kd_form"] == "paper"
    assert manifest["metrics"]["student"]["test"]["n"] == 20
    software = manifest["provenance"]["software"]
    assert "torch" in software["packages"] and "git" in software
    from mlflow.tracking import MlflowClient

    state = json.loads((run_dir / "mlflow.json").read_text())
    assert set(state["logged"]) == {*stages, "export"}
    tracked = MlflowClient(state["uri"]).get_run(state["run_id"]).data
    assert "evaluate.student.test.accuracy" in tracked.metrics or any(
        k.startswith("student-effnet.") for k in tracked.metrics
    )
    assert tracked.tags["git.commit"] == software["git"]["commit"]
    code, out = _invoke("models", "--repository", repo)
    assert code == 0 and "smoke" in out and "v1" in out
    # A rerun finds every stage complete and the bundle published: it redoes nothing.
    stamp = (run_dir / "student-effnet" / "stage.json").read_text()
    code, out = _invoke("run", "smoke", *opts, "--repository", repo)
    assert code == 0, out
    assert (run_dir / "student-effnet" / "stage.json").read_text() == stamp
    assert not (repo / "smoke" / "v2").exists()


def test_cancelled_run_stops_at_a_stage_boundary_and_publishes_nothing(
    shared_datasets: Path, tmp_path: Path
) -> None:
    from contracts.config import load_config
    from contracts.errors import Cancelled
    from contracts.jobs import Stage
    from training.pipeline import run_pipeline
    from training.tracking.progress import RunContext

    opts = _cwi_slice(shared_datasets, tmp_path)
    overrides = {o.split("=", 1)[0]: o.split("=", 1)[1] for o in opts if o != "--set"}
    cfg = load_config("smoke", {**overrides, "data.max_train_samples": 20})
    stages: list[Stage] = []
    ctx = RunContext(
        report=lambda stage, done, total, msg: stages.append(stage),
        cancel_requested=lambda: Stage.GENERATE in stages,  # the user cancels during generate
    )
    with pytest.raises(Cancelled, match="generate"):
        run_pipeline(cfg, tmp_path / "run", ctx, repository=tmp_path / "repo")
    assert is_complete(tmp_path / "run" / "data")
    assert not (tmp_path / "run" / "images").exists()
    assert not (tmp_path / "repo").exists()


@pytest.mark.slow
def test_one_student_per_teacher_and_the_best_on_dev_is_published_random_tiny_models(
    shared_datasets: Path, tmp_path: Path, tiny_text_model: Path, tiny_vit: Path
) -> None:
    """Two teachers (a ViT one and a text-only one) and distill.students=both: three
    students, each evaluated and exported; the one with the best dev accuracy is published
    and its bundle says which teacher(s) it learned from."""
    run_dir, repo = tmp_path / "run", tmp_path / "repo"
    opts = [*_cwi_slice(shared_datasets, tmp_path), "--run-dir", str(run_dir), "-q"]
    opts += ["--set", "data.max_train_samples=40", "--set", "data.max_eval_samples=20"]
    opts += ["--set", f"student.text_model={tiny_text_model}", "--set", "distill.students=both"]
    common = {"text_model": str(tiny_text_model), "epochs": 1, "batch_size": 16}
    teachers = [
        {"name": "vit", "image_model": str(tiny_vit), **common},
        {"name": "text", "modality": "text", **common},
    ]
    opts += ["--set", f"teachers={json.dumps(teachers)}"]
    code, out = _invoke("run", "smoke", *opts, "--repository", repo)
    assert code == 0, out
    keys = ("vit", "text", "amalgamated")
    for key in keys:
        assert is_complete(run_dir / f"student-{key}") and is_complete(run_dir / "export" / key)
    results = json.loads((run_dir / "evaluate" / "results.json").read_text())["models"]
    assert results["student:vit"]["teachers"] == ["vit"]
    assert results["student:amalgamated"]["teachers"] == ["vit", "text"]
    table = (run_dir / "evaluate" / "results.md").read_text()
    assert "| Student from teacher vit (LUGPI) |" in table
    assert "| Student from teacher text (LUGPI) |" in table
    assert "| Student from teachers vit, text (LUGPI, amalgamated) |" in table

    def dev(key: str) -> tuple[float, float, int]:
        m = results[f"student:{key}"]["dev"]
        return m["accuracy"], m["macro_f1"], -keys.index(key)

    best = max(keys, key=dev)
    export_record = json.loads((run_dir / "export" / "stage.json").read_text())
    assert export_record["summary"]["selected"] == best
    published = json.loads((repo / "smoke" / "v1" / "bundle.json").read_text())
    assert published["provenance"]["student"] == best
    assert published["provenance"]["students"][best]["teachers"] == list(
        {"vit": ["vit"], "text": ["text"], "amalgamated": ["vit", "text"]}[best]
    )
    assert len(published["provenance"]["teachers"]) == (2 if best == "amalgamated" else 1)
    m = published["metrics"]
    assert m["student-pytorch"]["dev"] == m[f"student-{best}"]["dev"]
    assert {f"student-{k}" for k in keys} <= set(m)
    assert not (repo / "smoke" / "v2").exists()


def test_paper_preset_has_the_papers_schedule_and_one_student_per_teacher() -> None:
    from contracts.config import load_config

    cfg = load_config("paper")
    assert cfg.student_plan() == {"clip": ["clip"], "vit": ["vit"]}
    assert cfg.student.epochs == 100 and all(t.epochs == 100 for t in cfg.teachers)
    assert (cfg.distill.alpha, cfg.distill.beta, cfg.distill.tau) == (3.0, 1.0, 8.0)
    assert cfg.distill.kd_form == "paper" and cfg.distill.embedding_loss == "mse"
    g = cfg.generator
    assert (g.model, g.image_size, g.share_identical_prompts) == (
        "stabilityai/stable-diffusion-2",
        768,
        False,
    )
