"""Several processes under torchrun (gloo on CPU here; NCCL between GPUs is the same code).

Real ``torch.distributed.run`` launches of 2 processes on this machine's CPU: the training
loop must give the weights one process gives, and the pipeline must write every artifact
once. The models are tiny, with RANDOM weights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from contracts.artifacts import is_complete, read_stage
from training.distributed import World, world

REPO = Path(__file__).resolve().parents[2]
FIT_SCRIPT = Path(__file__).with_name("ddp_fit.py")
EXIT_SCRIPT = Path(__file__).with_name("ddp_exit.py")


def _torchrun(
    *args: str | Path, nproc: int = 2, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc_per_node={nproc}", *map(str, args)]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def test_outside_torchrun_there_is_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert world() == World(1, 0, 0) and not world().distributed
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert world() == World(4, 3, 1) and not world().is_main


def test_two_processes_train_the_weights_one_process_trains(tmp_path: Path) -> None:
    """DDP all-reduces the model AND the loss's projection layer; each rank takes half of
    every global batch, so steps and learning rate are those of one process."""
    one = subprocess.run(
        [sys.executable, FIT_SCRIPT, tmp_path / "one"], cwd=REPO, capture_output=True, text=True
    )
    assert one.returncode == 0, one.stderr
    two = _torchrun(FIT_SCRIPT, tmp_path / "two")
    assert two.returncode == 0, two.stderr[-3000:]
    single = torch.load(tmp_path / "one.rank0.pt")
    ranks = [torch.load(tmp_path / f"two.rank{r}.pt") for r in (0, 1)]
    assert single["world"] == 1 and [r["world"] for r in ranks] == [2, 2]
    for name, expected in single["state"].items():
        assert torch.equal(ranks[0]["state"][name], ranks[1]["state"][name]), name
        torch.testing.assert_close(ranks[0]["state"][name], expected, atol=1e-5, rtol=0)
    # The check has teeth: training moved the weights far more than the tolerance.
    torch.manual_seed(0)
    init = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    moved = (init[0].weight.detach() - single["state"]["model.0.weight"]).abs().max()
    assert moved > 1e-2


def test_every_process_leaves_the_group_before_the_interpreter_exits(tmp_path: Path) -> None:
    """A group alive at interpreter shutdown lets gloo's threads outlive Python: rank 0
    aborted (SIGABRT, "terminate called without an active exception") after a run whose
    work was done, once in CI. Deterministic here: each rank records at exit whether the
    group was still up."""
    result = _torchrun(EXIT_SCRIPT, tmp_path / "exit")
    assert result.returncode == 0, result.stderr[-3000:]
    left = [(tmp_path / f"exit.rank{r}.txt").read_text() for r in (0, 1)]
    assert left == ["False", "False"]


@pytest.mark.slow
def test_pipeline_under_torchrun_trains_on_both_and_writes_each_artifact_once(
    shared_datasets: Path, tmp_path: Path, tiny_text_model: Path
) -> None:
    from models.tiny import make_tiny_image_model

    tiny_vit = make_tiny_image_model(tmp_path / "tiny-vit-random")
    run_dir, repo = tmp_path / "run", tmp_path / "repo"
    sets = {
        "data.max_train_samples": 40,
        "data.max_eval_samples": 20,
        "teachers.0.text_model": tiny_text_model,
        "teachers.0.image_model": tiny_vit,
        "student.text_model": tiny_text_model,
    }
    opts = [f"--set={k}={v}" for k, v in sets.items()]
    for split in ("train", "dev", "test"):
        opts.append(f"--set=data.{split}={shared_datasets}/cwi2018/News_{split.title()}.tsv")
    result = _torchrun(
        "-m", "training.cli", "run", "smoke", *opts, "--run-dir", run_dir, "--repository", repo
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("published: smoke v1") == 1  # rank 0 reports, once
    for stage in ("teacher-effnet", "student-effnet", "baseline"):
        assert read_stage(run_dir / stage).summary["processes"] == 2, stage
    for stage in ("data", "images", "evaluate", "export"):
        assert is_complete(run_dir / stage), stage
    assert sorted(p.name for p in (repo / "smoke").iterdir() if not p.name.startswith(".")) == [
        "v1"
    ]
    manifest = json.loads((repo / "smoke" / "v1" / "bundle.json").read_text())
    assert manifest["metrics"]["student"]["test"]["n"] == 20
    assert not list(run_dir.glob(".tmp*")) and not list(run_dir.glob("*/.tmp*"))
