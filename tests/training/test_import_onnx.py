"""``lugpi models import`` of an exported ONNX classifier with its tokenizer (issue 26, item 3).

A tiny BERT classifier is built and trained here for seconds (tests/support), exported to
ONNX with ``torch.onnx.export`` the way a user of another tool would (a ``logits`` output,
dynamic axes), and saved beside its tokenizer and config.json. The import goes through the
same bundle writer as every export; the bundle is served by the real API and its scores
must be onnxruntime's on the ORIGINAL graph (softmax of its logits at the bundle's score
temperature). Nothing is downloaded.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient
from support import classifier_checkpoints as ck
from typer.testing import CliRunner

from api.main import create_app
from api.settings import ApiSettings
from contracts.bundle import MODEL_INT8, verify_bundle
from contracts.errors import ModelLoadError
from training.export.import_model import LabelledFile, import_classifier

LABELS = ck.LABELS
QUERIES = ["the goal was big again", "minister said the vote", "rain in the city", "ok"]


def _original_probs(graph: Path, texts: list[str], temperature: float) -> np.ndarray:
    """onnxruntime on the user's graph, fed by the user's tokenizer: what serving must match."""
    from transformers import AutoTokenizer

    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    tok = AutoTokenizer.from_pretrained(graph.parent)
    enc = tok(texts, padding=True, truncation=True, max_length=128, return_tensors="np")
    names = [i.name for i in session.get_inputs()]
    logits = session.run(None, {n: enc[n].astype(np.int64) for n in names})[0]
    z = logits / temperature
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _served(repo: Path, name: str, texts: list[str], variant: str = "fp32") -> np.ndarray:
    settings = ApiSettings(
        model_repository=repo, poll_interval_s=0, intra_op_threads=1, model_variant=variant
    )  # type: ignore[call-arg]
    with TestClient(create_app(settings)) as client:
        r = client.post("/classify", json={"texts": texts, "model": name})
        assert r.status_code == 200, r.text
        labels = client.get(f"/models/{name}").json()["versions"][0]["labels"]
    return np.array([[p["scores"][lab] for lab in labels] for p in r.json()["predictions"]])


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("onnx-import")
    bert = ck.bert(root / "bert", LABELS, ck.examples(6))
    out = {"bert": bert, "onnx": ck.export_onnx(bert, root / "onnx")}
    # Another exporter's naming, and no config.json: the labels must be given.
    plain = ck.export_onnx(
        bert, root / "plain", output="output_0", inputs=("input_ids", "attention_mask")
    )
    (plain / "config.json").unlink()
    out["plain"] = plain
    out["probs"] = ck.export_onnx(bert, root / "probs", softmax=True)
    out["fixed"] = ck.export_onnx(bert, root / "fixed", dynamic=False)
    out["no-mask"] = ck.export_onnx(bert, root / "no-mask", inputs=("input_ids",))
    out["csv"] = ck.write_csv(root / "sample.csv", ck.examples(8), pair=False)
    return out


def test_onnx_import_is_served_with_the_original_graphs_scores(
    exported: dict[str, Path], tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    sample = LabelledFile(exported["csv"], label_column="label")
    result = import_classifier(
        str(exported["onnx"]), "news-onnx", repository=repo, sample=sample, test=sample
    )
    assert result.version == "v1" and result.path is not None
    manifest = verify_bundle(result.path)
    assert manifest.labels == LABELS
    assert manifest.inputs == ["input_ids", "attention_mask", "token_type_ids"]
    assert manifest.logits_output == "logits"
    assert manifest.export_checks is not None
    assert manifest.export_checks.fp32_argmax_agreement == 1.0
    assert manifest.export_checks.fp32_max_rel_logit_diff is not None
    assert manifest.export_checks.fp32_max_rel_logit_diff < 1e-4
    # The labelled sample: int8 passed its agreement check against the original graph,
    # test metrics were measured, and a score temperature was fitted.
    assert result.int8 and MODEL_INT8 in manifest.files
    assert manifest.export_checks.int8_argmax_agreement is not None
    assert manifest.export_checks.int8_argmax_agreement >= 0.99
    assert manifest.metrics["student"]["test"].n == 24
    assert manifest.metrics["student"]["test"].accuracy > 0.9
    assert manifest.score_temperature is not None
    assert "imported ONNX graph" in str(manifest.provenance.model_dump()["export"])

    reference = _original_probs(exported["onnx"] / "model.onnx", QUERIES, manifest.temperature)
    served = _served(repo, "news-onnx", QUERIES)
    np.testing.assert_allclose(served, reference, atol=1e-4)
    int8 = _served(repo, "news-onnx", QUERIES, "int8")
    assert (int8.argmax(-1) == reference.argmax(-1)).all()


def test_onnx_import_with_another_output_name_and_given_labels(
    exported: dict[str, Path], tmp_path: Path
) -> None:
    from training.cli import app

    repo = tmp_path / "repo"
    with pytest.raises(ModelLoadError, match="--labels"):
        import_classifier(str(exported["plain"]), "plain", repository=repo)
    # Without config.json nothing tells the position table (128): the default 512 tokens
    # fail the server's own load check, before anything is published.
    with pytest.raises(ModelLoadError, match="--max-length"):
        import_classifier(str(exported["plain"]), "plain", repository=repo, labels=LABELS)
    assert not repo.exists()
    # The CLI, with the graph file itself as the source and the group's --repository.
    args = ["models", "--repository", str(repo), "import", str(exported["plain"] / "model.onnx")]
    args += ["--name", "plain", "--labels", ",".join(LABELS), "--max-length", "128"]
    run = CliRunner().invoke(app, args)
    assert run.exit_code == 0, run.output
    assert "plain/v1 (fp32 only)" in run.output
    manifest = verify_bundle(repo / "plain" / "v1")
    assert manifest.inputs == ["input_ids", "attention_mask"]  # none it does not take
    assert manifest.score_temperature is None  # nothing labelled: T = 1
    reference = _original_probs(exported["plain"] / "model.onnx", QUERIES, 1.0)
    np.testing.assert_allclose(_served(repo, "plain", QUERIES), reference, atol=1e-4)


def test_what_cannot_be_served_is_refused_with_the_reason(
    exported: dict[str, Path], tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    cases = [
        ("probs", "already probabilities"),
        ("fixed", "both axes dynamic"),
        ("no-mask", "no 'attention_mask'"),
    ]
    for kind, message in cases:
        with pytest.raises(ModelLoadError, match=message):
            import_classifier(str(exported[kind]), kind, repository=repo)
    with pytest.raises(ModelLoadError, match="4 labels were named"):
        import_classifier(str(exported["onnx"]), "x", repository=repo, labels=[*LABELS, "other"])
    two = tmp_path / "two"
    shutil.copytree(exported["onnx"], two)
    shutil.copy(two / "model.onnx", two / "other.onnx")
    (two / "model.onnx").unlink()
    shutil.copy(two / "other.onnx", two / "third.onnx")
    with pytest.raises(ModelLoadError, match=r"none named model\.onnx"):
        import_classifier(str(two), "x", repository=repo)
    assert not repo.exists()  # nothing half-published
    assert json.loads((exported["onnx"] / "config.json").read_text())["id2label"]
