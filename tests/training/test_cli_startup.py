"""`lugpi --help` and `lugpi presets` start without torch: the pipeline imports the methods
and the torch-side stages only when a run needs them (training/pipeline.py says where)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_the_cli_and_the_pipeline_import_without_torch() -> None:
    code = (
        "import json, sys\n"
        "import training.cli, training.pipeline, training.methods\n"
        "heavy = ('torch', 'transformers', 'diffusers', 'onnx')\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(run.stdout.strip().splitlines()[-1]) == []
