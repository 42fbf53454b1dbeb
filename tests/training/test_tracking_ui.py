"""The README's command for browsing a run's MLflow store, `mlflow ui --backend-store-uri
<run-dir>/mlruns`, starts and shows the logged run (mlflow-skinny alone has no server and
no UI: the `tracking` extra installs the full `mlflow`)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


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


def test_the_documented_mlflow_ui_command_starts_and_lists_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A run in a local file store, as tracking.mlflow writes one (<run-dir>/mlruns; the
    # tracker allows MLflow's file store in its own process only).
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")

    store = tmp_path / "run" / "mlruns"
    client = MlflowClient(store.resolve().as_uri())
    experiment = client.create_experiment("lugpi")
    run_id = client.create_run(experiment).info.run_id
    for step, loss in enumerate((0.9, 0.7, 0.6)):
        client.log_metric(run_id, "student-effnet.train.loss", loss, step=step)
    client.set_terminated(run_id)

    # The README's line, as written, with this run directory and a free port.
    readme = (ROOT / "README.md").read_text()
    documented = re.search(r"^(.*mlflow ui --backend-store-uri <run-dir>/mlruns)$", readme, re.M)
    assert documented, "the README no longer documents the mlflow ui command"
    port = _free_port()
    line = documented.group(1).replace("<run-dir>", shlex.quote(str(store.parent)))
    bindir = str(Path(sys.executable).parent)  # the environment's own mlflow command
    log = (tmp_path / "ui.log").open("w")
    proc = subprocess.Popen(
        ["bash", "-c", f"{line} --port {port}"],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        # The user's shell: none of the tracker's settings.
        env={k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        | {"PATH": f"{bindir}:{os.environ.get('PATH', '')}"},
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
        with contextlib.suppress(ProcessLookupError):  # the group is gone if it exited
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
