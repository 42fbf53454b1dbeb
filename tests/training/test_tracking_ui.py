"""The README's command for browsing a run's MLflow store, `mlflow ui --backend-store-uri
<run-dir>/mlruns`, starts and shows the logged run (mlflow-skinny alone has no server and
no UI: the `tracking` extra installs the full `mlflow`)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from contracts.config import PipelineConfig
from training.tracking import STATE_FILE, Tracker

from .test_tracking import _teacher_dir


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def test_the_documented_mlflow_ui_command_starts_and_lists_the_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    cfg = PipelineConfig.model_validate({"data": {"train": "t.csv"}, "tracking": {"mlflow": True}})
    stage = _teacher_dir(run_dir)
    Tracker(cfg, run_dir).stage_done(stage.name, stage)
    run_id = json.loads((run_dir / STATE_FILE).read_text())["run_id"]

    mlflow = Path(sys.executable).with_name("mlflow")
    command = str(mlflow) if mlflow.exists() else shutil.which("mlflow")
    assert command, "the mlflow command is not installed (pip install -e '.[tracking]')"
    port = _free_port()
    log = (tmp_path / "ui.log").open("w")
    proc = subprocess.Popen(
        [command, "ui", "--backend-store-uri", str(run_dir / "mlruns"), "--port", str(port)],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # a loaded 2-core machine imports slowly
        status = 0
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status, _ = _get(f"{base}/health")
            except OSError:
                status = 0
            if status == 200:
                break
            time.sleep(0.5)
        out = (tmp_path / "ui.log").read_text()
        assert proc.poll() is None, f"`mlflow ui` exited {proc.returncode}:\n{out[-3000:]}"
        assert status == 200, f"`mlflow ui` did not answer /health in time:\n{out[-3000:]}"
        code, page = _get(f"{base}/")
        assert code == 200 and "<html" in page.lower()  # the web UI itself, not only an API
        code, body = _get(f"{base}/api/2.0/mlflow/runs/get?run_id={run_id}")
        assert code == 200, body
        assert json.loads(body)["run"]["info"]["run_id"] == run_id
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
