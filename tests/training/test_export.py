"""Export: a briefly trained tiny student (RANDOM-init BERT, hidden 32) -> checked ONNX bundle.

Real CWI 2018 News sentences (read from ../shared/datasets, never copied) give the export
checks real texts; the model is tiny and its accuracy means nothing beyond "not constant".
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
)

from contracts.artifacts import STUDENT_META, TextModelMeta
from contracts.bundle import (
    MODEL_FP32,
    MODEL_INT8,
    ONNX_INPUTS,
    TOKENIZER,
    materialize,
    sha256_file,
    verify_bundle,
)
from contracts.errors import ExportCheckError
from runtime.classifier import OnnxClassifier
from training.export import bundle as export_mod
from training.export.bundle import TRANSFORMERS_DIR, export_student
from training.export.quantize import QUANT_CANDIDATES

REPO_ROOT = Path(__file__).resolve().parents[2]
MAX_LENGTH = 64
Split = tuple[list[str], list[str], list[int]]


def read_cwi(path: Path, n: int) -> Split:
    """(sentences, targets, binary labels) of the first ``n`` rows of a CWI 2018 TSV."""
    with path.open(encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[:n]
    return [r[1] for r in rows], [r[4] for r in rows], [int(r[9]) for r in rows]


@pytest.fixture(scope="module")
def cwi(shared_datasets: Path) -> dict[str, Split]:
    d = shared_datasets / "cwi2018"
    return {
        "train": read_cwi(d / "News_Train.tsv", 480),
        "dev": read_cwi(d / "News_Dev.tsv", 160),
        "test": read_cwi(d / "News_Test.tsv", 300),
    }


def save_student(model: PreTrainedModel, tokenizer_dir: Path, out: Path, **meta: object) -> Path:
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out)
    fields = {
        "kind": "student",
        "labels": ["0", "1"],
        "max_length": MAX_LENGTH,
        "text_pair": True,
        "base_model": "tiny-random-bert",
    } | meta
    (out / STUDENT_META).write_text(TextModelMeta.model_validate(fields).model_dump_json())
    return out


@pytest.fixture(scope="module")
def student(
    tiny_text_model: Path, cwi: dict[str, Split], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The tiny random BERT as a pair classifier, trained 300 steps (~6 s) on CWI News.

    Fewer steps leave it predicting the majority class for every text; class weights
    keep it from settling there, so that both labels occur in its predictions.
    """
    # Seeded (and tiny_text_model is), so that the int8 check, which depends on how many
    # dev texts sit near a tie, gives the same result every run.
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        tiny_text_model, num_labels=2, id2label={0: "0", 1: "1"}, label2id={"0": 0, "1": 1}
    )
    tok = AutoTokenizer.from_pretrained(tiny_text_model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    texts, pairs, labels = cwi["train"]
    model.train()
    weight = torch.tensor([1.0, 1.6])  # CWI News: ~60% label 0
    for step in range(300):
        sl = slice((step * 16) % len(texts), (step * 16) % len(texts) + 16)
        enc = tok(
            texts[sl],
            pairs[sl],
            truncation=True,
            max_length=MAX_LENGTH,
            padding=True,
            return_tensors="pt",
        )
        loss = torch.nn.functional.cross_entropy(
            model(**enc).logits, torch.tensor(labels[sl]), weight=weight
        )
        loss.backward()
        opt.step()
        opt.zero_grad()
    return save_student(model.eval(), tiny_text_model, tmp_path_factory.mktemp("student-random"))


@pytest.fixture(scope="module")
def bundle(student: Path, cwi: dict[str, Split], tmp_path_factory: pytest.TempPathFactory) -> Path:
    dev, test = cwi["dev"], cwi["test"]
    return export_student(
        student,
        tmp_path_factory.mktemp("export") / "bundle",
        *dev,
        name="cwi-tiny",
        # A 32-wide RANDOM-init model has many near-tie dev texts: its int8 copy agrees on
        # 98.1-99.4 % of them depending on onnxruntime's version and the training steps, so
        # the 99 % bar of real students (tested below) would make this test a coin flip.
        min_int8_agreement=0.95,
        test_texts=test[0],
        test_pairs=test[1],
        test_labels=test[2],
        provenance={"dataset": "cwi2018-news-slice", "job_id": "test"},
        metrics={
            "baseline": {"test": {"accuracy": 0.5, "macro_f1": 0.4, "n": 300}},
            "student": {"test": {"accuracy": 0.25, "macro_f1": 0.2, "n": 300}},
            "teacher-x": {"test": {"accuracy": 0.5}},  # incomplete: not recorded
        },
    )


def test_export_random_tiny_student_writes_a_checked_bundle(bundle: Path) -> None:
    manifest = verify_bundle(bundle)
    assert (manifest.name, manifest.version, manifest.labels) == ("cwi-tiny", "v0", ["0", "1"])
    assert manifest.text_pair and manifest.max_length == MAX_LENGTH
    assert manifest.inputs == list(ONNX_INPUTS)  # BERT on pairs needs token_type_ids
    assert {MODEL_FP32, MODEL_INT8, TOKENIZER, f"{TRANSFORMERS_DIR}/model.safetensors"} <= set(
        manifest.files
    )
    checks = manifest.export_checks
    assert checks is not None and checks.n_texts == 160
    assert checks.fp32_max_abs_prob_diff <= 1e-4 and checks.fp32_argmax_agreement == 1.0
    assert checks.fp32_max_rel_logit_diff is not None and checks.fp32_max_rel_logit_diff <= 1e-4
    assert checks.int8_argmax_agreement is not None and checks.int8_argmax_agreement >= 0.95
    assert checks.int8_settings in [c.as_dict() for c in QUANT_CANDIDATES]
    assert checks.dev_accuracy_torch == checks.dev_accuracy_fp32
    test_acc = manifest.metrics["student"]["test"]
    assert test_acc.n == 300 and 0.0 < test_acc.accuracy < 1.0
    assert manifest.metrics["student-int8"]["test"].n == 300
    # The confusion matrix beside them (rows: true label), agreeing with the accuracy.
    cm = test_acc.model_dump()["confusion"]
    assert len(cm) == 2 and sum(map(sum, cm)) == 300
    assert (cm[0][0] + cm[1][1]) / 300 == pytest.approx(test_acc.accuracy)
    # Given metrics are kept; evaluate's PyTorch "student" under its own name.
    assert manifest.metrics["baseline"]["test"].accuracy == 0.5
    assert manifest.metrics["student-pytorch"]["test"].accuracy == 0.25
    assert "teacher-x" not in manifest.metrics
    assert manifest.provenance.dataset == "cwi2018-news-slice"
    assert manifest.provenance.student_base_model == "tiny-random-bert"

    tok = json.loads((bundle / TOKENIZER).read_text())
    assert tok["padding"]["strategy"] == "BatchLongest"  # not {"Fixed": 128}
    assert tok["truncation"]["max_length"] == MAX_LENGTH


def test_plain_onnxruntime_session_reproduces_recorded_test_accuracy_random(
    bundle: Path, cwi: dict[str, Split], tmp_path: Path
) -> None:
    texts, pairs, labels = cwi["test"]
    data = tmp_path / "test.json"  # the texts stay in the temporary dir
    data.write_text(json.dumps({"texts": texts, "pairs": pairs, "labels": labels}))
    code = """
import json, sys
import numpy as np, onnxruntime as ort
from tokenizers import Tokenizer
bundle, data = sys.argv[1], json.load(open(sys.argv[2]))
manifest = json.load(open(bundle + "/bundle.json"))
tok = Tokenizer.from_file(bundle + "/tokenizer.json")
out = {}
for variant, file in (("student", "model.onnx"), ("student-int8", "model.int8.onnx")):
    sess = ort.InferenceSession(bundle + "/" + file, providers=["CPUExecutionProvider"])
    preds = []
    for i in range(0, len(data["texts"]), 32):
        encs = tok.encode_batch(list(zip(data["texts"][i:i+32], data["pairs"][i:i+32])))
        arrays = {"input_ids": [e.ids for e in encs],
                  "attention_mask": [e.attention_mask for e in encs],
                  "token_type_ids": [e.type_ids for e in encs]}
        feed = {k: np.array(arrays[k], dtype=np.int64) for k in manifest["inputs"]}
        preds.append(sess.run([manifest["output"]], feed)[0].argmax(-1))
    pred = np.concatenate(preds)
    out[variant] = float(np.mean(pred == np.array(data["labels"])))
    out[variant + "-classes"] = sorted(set(pred.tolist()))
heavy = [m for m in ("torch", "transformers") if m in sys.modules]
print(json.dumps({"accuracy": out, "heavy": heavy}))
"""
    run = subprocess.run(
        [sys.executable, "-c", code, str(bundle), str(data)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    assert result["accuracy"]["student-classes"] == [0, 1]  # not a constant predictor
    recorded = json.loads((bundle / "bundle.json").read_text())["metrics"]
    for variant in ("student", "student-int8"):
        assert result["accuracy"][variant] == pytest.approx(
            recorded[variant]["test"]["accuracy"], abs=1e-3
        )


def served_fp32(bundle: Path) -> OnnxClassifier:
    """The bundle's fp32 graph as the API runs it."""
    return OnnxClassifier.from_files(
        bundle / MODEL_FP32,
        bundle / TOKENIZER,
        inputs=ONNX_INPUTS,
        output="probabilities",
        max_length=MAX_LENGTH,
        labels=["0", "1"],
    )


def test_transformers_copy_loads_in_a_pipeline_and_matches_onnx_random(
    bundle: Path, cwi: dict[str, Split]
) -> None:
    from transformers import pipeline

    hf_dir = bundle / TRANSFORMERS_DIR
    texts, pairs, _ = cwi["dev"]
    clf = pipeline("text-classification", model=str(hf_dir), top_k=None)
    got: Any = clf([{"text": t, "text_pair": p} for t, p in zip(texts[:8], pairs[:8], strict=True)])
    pipe_probs = np.array(
        [[{d["label"]: d["score"] for d in row}[k] for k in ("0", "1")] for row in got]
    )
    clf = served_fp32(bundle)
    onnx_probs = clf.predict_proba(texts[:8], pairs[:8])
    assert np.abs(pipe_probs - onnx_probs).max() < 1e-4


def test_transformers_dir_loads_as_onnx_model_dirs_are_read_random(
    bundle: Path, cwi: dict[str, Split], tmp_path: Path
) -> None:
    """transformers/ read the way text-embeddings-inference's ort backend reads a model
    directory: config.json (a *ForSequenceClassification architecture, id2label and
    label2id), tokenizer.json, onnx/model.onnx fed input_ids/attention_mask (and
    token_type_ids where the graph takes them) padded with 0, scores from "logits".
    optimum's ORTModelForSequenceClassification looks for the same file and output; it
    cannot be installed next to transformers 5, so it is not run here. The bundle stores
    onnx/model.onnx as a reference to model.onnx (issue 26: one copy of each file);
    ``materialize`` writes the directory those tools read."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    hf_dir = materialize(bundle, tmp_path / "hf", TRANSFORMERS_DIR)
    config = json.loads((hf_dir / "config.json").read_text())
    assert any(a.endswith("Classification") for a in config["architectures"])
    assert config["id2label"] == {"0": "0", "1": "1"} and config["label2id"] == {"0": 0, "1": 1}
    assert verify_bundle(bundle).schema_version == 2
    # Changed by issue 26: a reference in bundle.json, not a second copy of the file.
    assert verify_bundle(bundle).references == {f"{TRANSFORMERS_DIR}/onnx/{MODEL_FP32}": MODEL_FP32}

    tok = Tokenizer.from_file(str(hf_dir / "tokenizer.json"))
    tok.no_padding()
    texts, pairs, _ = cwi["dev"]
    encs = tok.encode_batch(list(zip(texts[:8], pairs[:8], strict=True)))
    width = max(len(e.ids) for e in encs)
    feed = {
        "input_ids": np.array([e.ids + [0] * (width - len(e.ids)) for e in encs], dtype=np.int64),
        "attention_mask": np.array(
            [[1] * len(e.ids) + [0] * (width - len(e.ids)) for e in encs], dtype=np.int64
        ),
        "token_type_ids": np.array(
            [e.type_ids + [0] * (width - len(e.ids)) for e in encs], dtype=np.int64
        ),
    }
    session = ort.InferenceSession(str(hf_dir / "onnx" / MODEL_FP32))
    names = {i.name for i in session.get_inputs()}
    (logits,) = session.run(["logits"], {k: v for k, v in feed.items() if k in names})
    softmax = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    served = served_fp32(bundle).predict_proba(texts[:8], pairs[:8])
    assert np.abs(softmax - served).max() < 1e-5


LARGE_FILE = 1 << 20  # graphs and weights; tokenizer files (~0.7 MB) may repeat


def test_a_bundle_holds_no_two_identical_large_files_random(bundle: Path) -> None:
    """Issue 26: model.onnx and transformers/onnx/model.onnx were the same bytes twice."""
    files = [p for p in bundle.rglob("*") if p.is_file()]
    large = [p for p in files if p.stat().st_size >= LARGE_FILE]
    assert {MODEL_FP32, f"{TRANSFORMERS_DIR}/model.safetensors"} <= {
        p.relative_to(bundle).as_posix() for p in large
    }
    digests = [sha256_file(p) for p in large]
    assert len(set(digests)) == len(digests), sorted(p.relative_to(bundle) for p in large)
    assert not any(p.is_symlink() for p in bundle.rglob("*"))


def test_a_failing_check_names_the_metric_and_writes_nothing_random(
    student: Path, cwi: dict[str, Split], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts, pairs, labels = cwi["dev"][0][:40], cwi["dev"][1][:40], cwi["dev"][2][:40]
    monkeypatch.setattr(export_mod, "FP32_TOLERANCE", -1.0)
    with pytest.raises(ExportCheckError, match=r"fp32_max_abs_prob_diff \d\.\d+e-\d+ > -1.0"):
        export_student(student, tmp_path / "b", texts, pairs, labels, name="x")
    monkeypatch.setattr(export_mod, "FP32_TOLERANCE", 1e-4)
    with pytest.raises(ExportCheckError, match=r"int8_argmax_agreement below 1.01 .* every"):
        export_student(
            student,
            tmp_path / "b",
            texts,
            pairs,
            labels,
            name="x",
            with_transformers=False,
            min_int8_agreement=1.01,
        )
    assert not (tmp_path / "b").exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no .tmp- leftovers either


def test_int8_check_failure_can_ship_fp32_only_when_int8_is_optional_random(
    student: Path, cwi: dict[str, Split], tmp_path: Path
) -> None:
    texts, pairs, labels = cwi["dev"][0][:40], cwi["dev"][1][:40], cwi["dev"][2][:40]
    out = export_student(
        student,
        tmp_path / "b",
        texts,
        pairs,
        labels,
        name="x",
        require_int8=False,
        min_int8_agreement=1.01,
        with_transformers=False,
    )
    manifest = verify_bundle(out)
    assert MODEL_INT8 not in manifest.files and not (out / MODEL_INT8).exists()
    assert "student-int8" not in manifest.metrics
    assert manifest.export_checks is not None and manifest.export_checks.int8_settings is None
    export_info = manifest.provenance.model_dump()["export"]
    assert "int8_argmax_agreement below 1.01" in export_info["int8_dropped"]


def test_run_export_exports_from_prepared_data_and_publishes_random(
    tiny_text_model: Path, shared_datasets: Path, tmp_path: Path
) -> None:
    """``lugpi export`` and the pipeline export through ``Run.export`` (the standalone
    export_command this test used to call was used by nothing else)."""
    from contracts.config import DataConfig, PipelineConfig, StudentConfig, TeacherConfig
    from contracts.repository import list_models
    from training.pipeline import Run
    from training.tracking.progress import RunContext

    d = shared_datasets / "cwi2018"
    data = DataConfig(
        train=str(d / "News_Train.tsv"),
        dev=str(d / "News_Dev.tsv"),
        test=str(d / "News_Test.tsv"),
        format="cwi2018",
        max_train_samples=50,
        max_eval_samples=60,
    )
    model = str(tiny_text_model)
    cfg = PipelineConfig.model_validate(
        {
            "name": "cwi",
            "device": "cpu",
            "data": data.model_dump(),
            "teachers": [TeacherConfig(modality="text", text_model=model, epochs=1).model_dump()],
            "student": StudentConfig(text_model=model, epochs=1, max_length=32).model_dump(),
            "export": {"name": "cwi"},
            # A 50-row model sits at the majority rate, which the default publish gate holds
            # back; this test is of export and publish (the gate's: test_publish_gate.py).
            "publish_gate": {"majority_margin": None},
        }
    )
    run = Run(cfg, tmp_path / "run", RunContext())
    run.pin_config()
    for command in ("prepare", "teacher", "distill", "baseline"):
        run.make(command)
    run.evaluate()
    bundle = run.export()
    published = run.publish(tmp_path / "repo")
    assert published == ("cwi", "v1")
    entry = list_models(tmp_path / "repo")[0]
    assert entry.default and entry.metrics["student"]["test"].n == 60
    assert verify_bundle(bundle).export_checks is not None


def test_logits_check_names_the_metric() -> None:
    ref = np.array([[2.0, -1.0], [0.5, 0.25]], dtype=np.float32)
    assert export_mod.check_logits(ref, ref.copy()) == 0.0
    # A per-row shift leaves the probabilities alone but not the raw scores.
    with pytest.raises(ExportCheckError, match="fp32_max_rel_logit_diff"):
        export_mod.check_logits(ref, ref + np.array([[1.0], [0.0]], dtype=np.float32))
    with pytest.raises(ExportCheckError, match="no 'logits' output"):
        export_mod.check_logits(ref, None)


def test_training_curves_come_from_the_students_history(tmp_path: Path) -> None:
    from training.export.bundle import CURVE_POINTS, training_curves

    assert training_curves(tmp_path) is None  # an imported model has no history
    steps = [{"step": i, "epoch": i / 100, "loss": 1.0 / i, "lr": 1e-4} for i in range(1, 1001)]
    epochs = [
        {"epoch": e, "step": 100 * e, "dev_accuracy": 0.1 * e, "dev_macro_f1": 0.05 * e}
        for e in range(1, 11)
    ]
    history = {"steps": steps, "epochs": epochs, "best_epoch": 9, "train_seconds": 3.0}
    (tmp_path / "history.json").write_text(json.dumps(history))
    curves = training_curves(tmp_path)
    assert curves is not None
    loss = curves["loss"]
    assert isinstance(loss, list) and len(loss) <= CURVE_POINTS + 1
    assert loss[0] == [1.0, 1.0] and loss[-1] == [1000.0, 0.001]  # the last step is kept
    assert curves["dev_accuracy"] == [[float(e), round(0.1 * e, 6)] for e in range(1, 11)]
    assert curves["best_epoch"] == 9
    (tmp_path / "history.json").write_text("{not json")
    assert training_curves(tmp_path) is None  # a broken history costs the curves only
