"""Fake exported runs for the publish tests: a bundle whose files are random bytes with
the right hashes. The repository verifies hashes, never loads the ONNX file, so these
publish like real bundles without training anything."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from pathlib import Path

from contracts.artifacts import STAGE_FILE, StageRecord
from contracts.bundle import MANIFEST, MODEL_FP32, TOKENIZER, BundleManifest, sha256_file

STUDENT_KEY = "s"


def make_bundle(out: Path, name: str) -> Path:
    out.mkdir(parents=True)
    (out / MODEL_FP32).write_bytes(secrets.token_bytes(256))
    (out / TOKENIZER).write_text(json.dumps({"random": secrets.token_hex(8)}))
    manifest = BundleManifest(
        name=name,
        version="v0",
        labels=["a", "b"],
        max_length=8,
        files={f: sha256_file(out / f) for f in (MODEL_FP32, TOKENIZER)},
        created_at=datetime.now(UTC),
    )
    (out / MANIFEST).write_text(manifest.model_dump_json(indent=2))
    return out


def make_exported_run(run_dir: Path, name: str) -> Path:
    """``run_dir/export/`` as the export stage leaves it: one bundle, selected."""
    export = run_dir / "export"
    make_bundle(export / STUDENT_KEY, name)
    record = StageRecord(
        stage="export", finished_at=datetime.now(UTC), summary={"selected": STUDENT_KEY}
    )
    (export / STAGE_FILE).write_text(record.model_dump_json())
    return run_dir
