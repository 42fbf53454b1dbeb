"""A job's log keeps the libraries' routine floods out unless LUGPI_VERBOSE_JOB_LOG: the
missing-classifier load report, the token-length warning, weight-loading bars, exporter
and deprecation warnings. Each case runs the real libraries in a fresh process (as a job's
stage process is) on a RANDOM-weight tiny BERT; the verbose run shows the same floods, so
the quiet run's silence is the setting's doing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import sys, tempfile, logging
from pathlib import Path
from worker.library_noise import quiet_libraries
quiet_libraries(verbose=sys.argv[2] == "1")
logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
import torch
from transformers import AutoTokenizer, BertForSequenceClassification
model_dir = sys.argv[1]
tok = AutoTokenizer.from_pretrained(model_dir)
tok("word " * 2000)  # longer than the model's maximum: the token-length warning
model = BertForSequenceClassification.from_pretrained(model_dir, num_labels=2)  # head MISSING
out = Path(tempfile.mkdtemp())
model.save_pretrained(out / "saved")
enc = tok(["a short text"], return_tensors="pt")
torch.onnx.export(model, (enc["input_ids"], enc["attention_mask"]), str(out / "m.onnx"),
                  input_names=["input_ids", "attention_mask"], dynamo=False, opset_version=17,
                  dynamic_axes={"input_ids": {0: "b", 1: "s"}, "attention_mask": {0: "b", 1: "s"}})
from onnxruntime.quantization import QuantType, quantize_dynamic
quantize_dynamic(str(out / "m.onnx"), str(out / "m.int8.onnx"), weight_type=QuantType.QInt8)
logging.getLogger("training.x").warning("our own warning stays")
print("done")
"""
FLOODS = ("LOAD REPORT", "Token indices sequence length", "Loading weights", "Warning:")


def _run(model: Path, verbose: bool, tmp: Path) -> str:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "TRANSFORMERS_", "HF_"))
    }
    env |= {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HOME": str(tmp)}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(model), "1" if verbose else "0"],
        env=env, cwd=tmp, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout + out.stderr


@pytest.mark.slow
def test_library_floods_stay_out_of_the_job_log_unless_verbose(
    tiny_text_model: Path, tmp_path: Path
) -> None:
    loud = _run(tiny_text_model, True, tmp_path)
    assert "LOAD REPORT" in loud and "Token indices sequence length" in loud, loud[-3000:]
    quiet = _run(tiny_text_model, False, tmp_path)
    found = [f for f in FLOODS if f in quiet]
    assert not found, f"{found} in the quiet log:\n{quiet[-3000:]}"
    assert "our own warning stays" in quiet and "done" in quiet
    assert len(quiet.splitlines()) <= 3, quiet
