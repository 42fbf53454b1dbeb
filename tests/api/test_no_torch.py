"""The serving process never imports torch, transformers, diffusers or worker code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

FORBIDDEN = ("torch", "transformers", "diffusers", "worker", "models", "celery.worker")

PROGRAM = """
import json, sys
from fastapi.testclient import TestClient
import api.main
from api.settings import ApiSettings
app = api.main.create_app(ApiSettings(model_repository=sys.argv[1], poll_interval_s=0))
with TestClient(app) as client:  # runs start-up: loads and warms the bundle
    assert client.get("/readyz").status_code == 200, client.get("/readyz").text
    assert client.post("/classify", json={"texts": ["hi"], "model": "sentiment"}).status_code == 200
print(json.dumps(sorted(sys.modules)))
"""


def test_random_api_process_imports_no_torch(repository: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(repository)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    modules = json.loads(out.stdout.strip().splitlines()[-1])
    bad = [m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert bad == [], f"the API imported {bad[:10]}"
