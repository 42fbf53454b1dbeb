"""The scripts the image builds run (docker/build/), tested here without docker.

- check-worker.py fails a worker build whose libraries are not the variant asked for: this
  machine's CPU torch + CPU onnxruntime pass as `cpu` and fail as `cuda`, with a message.
- requirements.py installs exactly the extras an image asks for (the API gets no torch).
- host_inputs.py turns this host's pip setup into build inputs: CA bundle, constraints, a
  pip.conf without host-local indexes, and the CPU torch wheel linked into docker/wheels/.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BUILD = Path(__file__).resolve().parents[2] / "docker" / "build"


def script(name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BUILD / name), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_worker_check_passes_a_cpu_build_and_fails_it_as_the_gpu_variant() -> None:
    cpu = script("check-worker.py", "cpu")
    assert cpu.returncode == 0, cpu.stderr
    assert "torch 2." in cpu.stdout
    cuda = script("check-worker.py", "cuda")
    assert cuda.returncode == 1
    assert "no CUDAExecutionProvider" in cuda.stderr and "VARIANT=cpu" in cuda.stderr
    assert "CPU build" in cuda.stderr
    bad = script("check-worker.py", "rocm")
    assert bad.returncode == 1 and "use cuda or cpu" in bad.stderr


def test_requirements_follow_the_extras_of_pyproject() -> None:
    pyproject = str(BUILD.parents[1] / "pyproject.toml")
    api = script("requirements.py", pyproject, "api").stdout.splitlines()
    names = {line.split(">")[0].split("[")[0].split("=")[0].strip() for line in api}
    assert {"fastapi", "onnxruntime", "pydantic"} <= names
    assert not names & {"torch", "transformers", "diffusers"}
    worker = script("requirements.py", pyproject, "worker").stdout
    # worker = ["lugpi[train]", ...]: the train extra comes along, the self-reference does not.
    assert "torch" in worker and "celery" in worker and "lugpi" not in worker
    missing = script("requirements.py", pyproject, "nope")
    assert missing.returncode != 0 and "no extra 'nope'" in missing.stderr


def test_host_pip_setup_becomes_build_inputs(tmp_path: Path) -> None:
    pem = tmp_path / "corp-ca.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("torch<=2.14.1\n")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"w")
    (wheels / "numpy-2.0.0-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"n")
    conf = tmp_path / "pip.conf"
    conf.write_text(
        "[global]\n"
        f"cert = {pem}\n"
        f"constraint = {constraints}\n"
        f"find-links = {wheels}\n"
        "extra-index-url = file:///opt/local/simple https://mirror.example/simple\n"
        "timeout = 42\n"
    )
    # Only this configuration: the host's own PIP_* variables would win over it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = str(conf)
    out_dir, context_wheels = tmp_path / "inputs", tmp_path / "context-wheels"
    p = script("host_inputs.py", str(out_dir), str(context_wheels), "2.13.0", env=env)
    assert p.returncode == 0, p.stderr
    assert (out_dir / "ca-certificates").read_text() == pem.read_text()
    assert "torch<=2.14.1" in (out_dir / "pip-constraints").read_text()
    pip_conf = (out_dir / "pip.conf").read_text()
    assert "extra-index-url = https://mirror.example/simple" in pip_conf
    assert "file://" not in pip_conf and "timeout = 42" in pip_conf
    assert "left out (local to this host)" in p.stdout
    linked = sorted(w.name for w in context_wheels.iterdir())
    assert linked == ["torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"]
    if os.stat(wheels).st_dev == os.stat(context_wheels).st_dev:
        assert (context_wheels / linked[0]).stat().st_ino == (wheels / linked[0]).stat().st_ino


@pytest.mark.parametrize("name", ["pip.sh", "requirements.py", "check-worker.py"])
def test_build_scripts_are_executable_or_run_by_python(name: str) -> None:
    path = BUILD / name
    if name.endswith(".sh"):
        assert os.access(path, os.X_OK), f"{name} must be executable (RUN calls it directly)"
    assert path.read_text().startswith(("#!/bin/sh", '"""')), name
