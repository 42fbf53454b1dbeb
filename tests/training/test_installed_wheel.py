"""The product outside its checkout: the wheel built from this tree, installed (not
editable, `--no-deps` over the test environment's dependencies) into a separate folder,
runs `lugpi --version`, lists its presets, explains a missing dataset, and runs the
`smoke` preset from a directory that is not the checkout, the data given by `--set`
(RANDOM-weight tiny models: the numbers mean nothing, the install is what is tested)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .test_pipeline_cli import _cwi_slice, tiny_vit  # noqa: F401  (tiny_vit: a fixture)

ROOT = Path(__file__).resolve().parents[2]


def _copy_tree(dest: Path) -> Path:
    """The project's files (tracked and new, not ignored) copied to ``dest``: building
    writes build/ and *.egg-info beside the sources, which must not land in the tree."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split("\0")  # fmt: skip
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file() and not src.is_symlink():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``site``: the installed wheel (import path); its ``bin/lugpi`` is the entry point."""
    work = tmp_path_factory.mktemp("wheel")
    src = _copy_tree(work / "src")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    # No build isolation: setuptools comes from the test environment, so nothing is fetched.
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(work / "dist"), str(src)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = (work / "dist").glob("lugpi-*.whl")
    site = work / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    return site


def _lugpi(site: Path, cwd: Path, *args: str | Path, **env: str) -> subprocess.CompletedProcess:
    # Only the installed copy on the path: not the checkout, not its editable install's root.
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "LUGPI_"))}
    environ |= {"PYTHONPATH": str(site), "OMP_NUM_THREADS": "1", **env}
    return subprocess.run(
        [str(site / "bin" / "lugpi"), *map(str, args)],
        cwd=cwd, env=environ, capture_output=True, text=True, timeout=900,
    )  # fmt: skip


def test_the_installed_package_is_the_wheel_not_the_checkout(
    installed: Path, tmp_path: Path
) -> None:
    code = "import contracts, training; print(contracts.__file__); print(training.__file__)"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True,
        env={**environ, "PYTHONPATH": str(installed)},
    ).stdout.split()  # fmt: skip
    assert all(Path(p).is_relative_to(installed) for p in out), out
    assert sorted(p.name for p in (installed / "contracts" / "presets").glob("*.yaml")) == [
        "demo.yaml", "offline.yaml", "paper.yaml", "smoke.yaml",
    ]  # fmt: skip


def test_version_presets_and_a_missing_dataset_outside_the_checkout(
    installed: Path, tmp_path: Path
) -> None:
    version = _lugpi(installed, tmp_path, "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == "lugpi 0.1.0"
    jobs = subprocess.run(
        [str(installed / "bin" / "lugpi-jobs"), "--help"], capture_output=True, text=True,
        env={"PYTHONPATH": str(installed), "PATH": os.environ["PATH"]}, cwd=tmp_path,
    )  # fmt: skip
    assert jobs.returncode == 0 and "delete-artifacts" in jobs.stdout, jobs.stderr
    listed = _lugpi(installed, tmp_path, "presets")
    assert listed.returncode == 0, listed.stderr
    for name in ("demo", "smoke", "offline", "paper"):
        assert f"\n{name} " in "\n" + listed.stdout, listed.stdout
    data_dir = tmp_path / "datasets"
    assert "LUGPI_DATA_DIR" in listed.stdout
    here = _lugpi(installed, tmp_path, "presets", LUGPI_DATA_DIR=str(data_dir))
    assert str(data_dir / "cwi2018" / "News_Train.tsv") in here.stdout  # where smoke reads
    missing = _lugpi(installed, tmp_path, "run", "smoke", "-q", LUGPI_DATA_DIR=str(data_dir))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr, missing.stderr
    error = missing.stderr.strip().splitlines()[-1]
    assert str(data_dir / "cwi2018" / "News_Train.tsv") in error
    assert "--set data.train=" in error and "LUGPI_DATA_DIR" in error


@pytest.mark.slow
def test_the_smoke_preset_runs_from_another_directory(
    installed: Path,
    tmp_path: Path,
    shared_datasets: Path,
    tiny_text_model: Path,
    tiny_vit: Path,  # noqa: F811
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    opts = [*_cwi_slice(shared_datasets, tmp_path), "-q"]
    opts += ["--set", "data.max_train_samples=40", "--set", "data.max_eval_samples=20"]
    for key in ("teachers.0.text_model", "student.text_model"):
        opts += ["--set", f"{key}={tiny_text_model}"]
    opts += ["--set", f"teachers.0.image_model={tiny_vit}", "--repository", "repo"]
    done = _lugpi(installed, elsewhere, "run", "smoke", *opts)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "published: smoke v1" in done.stdout
    assert (elsewhere / "runs" / "smoke" / "evaluate" / "results.md").is_file()
    assert (elsewhere / "repo" / "smoke" / "v1" / "bundle.json").is_file()
    assert not (ROOT / "repo").exists()
