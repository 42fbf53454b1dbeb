"""Experiment tracking: every finished stage's metrics, curves and records, the config and
the software provenance, logged to MLflow when ``tracking.mlflow`` is set.

One MLflow run per run directory. Its id is kept in ``<run-dir>/mlflow.json`` with the
stages already logged, so a resumed run continues the same MLflow run and logs each stage
once. By default the store is a local file store in ``<run-dir>/mlruns`` (view it with
``MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri <run-dir>/mlruns``);
``tracking.uri`` points elsewhere (a tracking server, a database). MLflow 3 keeps its file
store in maintenance mode behind ``MLFLOW_ALLOW_FILE_STORE``; this module sets that flag for
file stores only.

``software_provenance`` (package versions and the project's git commit) also goes into
every bundle's ``bundle.json``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from contracts.artifacts import STAGE_FILE, write_json_atomic
from contracts.config import PipelineConfig
from contracts.errors import ConfigError
from contracts.layout import RunLayout

STATE_FILE = RunLayout(Path(".")).tracking_state.name
HISTORY_FILE = "history.json"
PACKAGES = (
    "lugpi", "torch", "transformers", "diffusers", "huggingface-hub", "tokenizers",
    "onnx", "onnxruntime", "numpy", "datasets",
)  # fmt: skip
# Small files of a stage directory worth keeping beside its metrics.
ARTIFACTS = (STAGE_FILE, HISTORY_FILE, "results.md", "results.json", "curves.png")
_SOURCE_ROOT = Path(__file__).resolve().parents[1]


def git_commit(root: Path = _SOURCE_ROOT) -> dict[str, object] | None:
    """The checkout's commit and whether it had uncommitted changes; None outside git."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(dirty)}


def software_provenance() -> dict[str, object]:
    """Python, the packages a result depends on (those installed), the git commit."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {"python": platform.python_version(), "packages": versions, "git": git_commit()}


def _flat_numbers(tree: object, prefix: str) -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(tree, dict):
        for k, v in tree.items():
            out |= _flat_numbers(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(tree, bool):
        pass
    elif isinstance(tree, int | float):
        out[prefix] = float(tree)
    return out


def _flat_params(tree: object, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(tree, dict):
        for k, v in tree.items():
            out |= _flat_params(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        out[prefix] = json.dumps(tree)[:500]  # MLflow's limit for a parameter value
    return out


class Tracker:
    """Logs a run directory's stages to one MLflow run; a no-op when tracking is off."""

    def __init__(self, cfg: PipelineConfig, run_dir: Path) -> None:
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.enabled = cfg.tracking.mlflow
        self.uri = cfg.tracking.uri or RunLayout(self.run_dir).mlruns.resolve().as_uri()
        self._client: Any = None
        self._run_id: str | None = None

    def _state(self) -> dict[str, Any]:
        path = self.run_dir / STATE_FILE
        state: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
        return state

    def _start(self) -> None:
        if self._client is not None:
            return
        if self.uri.startswith("file:") or "://" not in self.uri:
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as e:
            raise ConfigError(
                "tracking.mlflow is true but MLflow is not installed: pip install 'lugpi[tracking]'"
            ) from e
        self._client = MlflowClient(self.uri)
        state = self._state()
        if state.get("uri") == self.uri and state.get("run_id"):
            self._run_id = str(state["run_id"])
            return
        name = self.cfg.tracking.experiment
        experiment = self._client.get_experiment_by_name(name)
        exp_id = experiment.experiment_id if experiment else self._client.create_experiment(name)
        run = self._client.create_run(exp_id, run_name=self.run_dir.name)
        self._run_id = run.info.run_id
        prov = software_provenance()
        tags = {f"package.{k}": v for k, v in prov["packages"].items()}  # type: ignore[attr-defined]
        git = prov["git"]
        if isinstance(git, dict):
            tags["git.commit"] = str(git["commit"])
            tags["git.dirty"] = str(git["dirty"])
        tags["python"] = str(prov["python"])
        for key, value in tags.items():
            self._client.set_tag(self._run_id, key, value)
        for key, value in _flat_params(self.cfg.model_dump(mode="json")).items():
            self._client.log_param(self._run_id, key, value)
        self._client.log_dict(self._run_id, self.cfg.model_dump(mode="json"), "config.json")
        self._client.log_dict(self._run_id, prov, "provenance.json")
        write_json_atomic(self.run_dir / STATE_FILE, {"uri": self.uri, "run_id": self._run_id})

    def stage_done(self, key: str, stage_dir: Path) -> None:
        """Log a finished stage directory (once per run): its summary's numbers, its
        training curves (history.json: per-step losses as <key>.train.*, per-epoch dev
        metrics as <key>.epoch.*), its small files."""
        if not self.enabled or not (stage_dir / STAGE_FILE).is_file():
            return
        self._start()
        state = self._state()
        if key in state.get("logged", []):
            return
        c, run_id = self._client, self._run_id
        record = json.loads((stage_dir / STAGE_FILE).read_text())
        numbers = _flat_numbers(record.get("summary", {}), key)
        numbers[f"{key}.seconds"] = float(record.get("seconds", 0.0))
        for name, value in numbers.items():
            c.log_metric(run_id, name, value)
        history = stage_dir / HISTORY_FILE
        if history.is_file():
            raw = json.loads(history.read_text())
            for step, row in enumerate(raw.get("steps", [])):
                for name, value in _flat_numbers(row, f"{key}.train").items():
                    c.log_metric(run_id, name, value, step=step)
            for epoch, row in enumerate(raw.get("epochs", []), start=1):
                for name, value in _flat_numbers(row, f"{key}.epoch").items():
                    c.log_metric(run_id, name, value, step=epoch)
        for file in ARTIFACTS:
            if (stage_dir / file).is_file():
                c.log_artifact(run_id, str(stage_dir / file), artifact_path=key)
        state["logged"] = [*state.get("logged", []), key]
        write_json_atomic(self.run_dir / STATE_FILE, state)
