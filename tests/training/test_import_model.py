"""``lugpi models import``: classifiers trained elsewhere become served bundles.

The checkpoints are built here from config (a tiny BERT and a DistilBERT-shaped model,
the real MiniLM WordPiece tokenizer), trained for a few seconds on a keyword task so that
their predictions have real margins, and saved with ``save_pretrained`` as any
transformers user would. Nothing is downloaded: the hub-id path is not exercised here.
The imported bundles are served by the real API (a TestClient on the real app) and their
scores are compared with the PyTorch model's.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from support import classifier_checkpoints as ck
from typer.testing import CliRunner

from api.main import create_app
from api.settings import ApiSettings
from contracts.bundle import MODEL_INT8, verify_bundle
from contracts.errors import DataError, ModelLoadError
from contracts.repository import list_models
from training.import_model import LabelledFile, import_classifier

LABELS = ck.LABELS
_examples, _bert, _distilbert, _write_csv = ck.examples, ck.bert, ck.distilbert, ck.write_csv


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("import-checkpoints")
    single, pair = _examples(6), _examples(6, pair=True)
    out = {
        "bert": _bert(root / "bert", LABELS, single),
        "distilbert": _distilbert(root / "distilbert", LABELS, single),
        # The pair task needs the two texts compared: it takes longer to learn.
        "pair": _bert(root / "pair", ["absent", "present"], pair, steps=200),
    }
    # A config that names its labels with id2label alone (no label2id, no num_labels), as
    # hand-written or older configs do.
    only = root / "id2label-only"
    only.mkdir()
    for f in out["bert"].iterdir():
        (only / f.name).write_bytes(f.read_bytes())
    config = json.loads((only / "config.json").read_text())
    config.pop("label2id", None)
    config.pop("num_labels", None)
    (only / "config.json").write_text(json.dumps(config))
    out["id2label-only"] = only
    out["single-csv"] = _write_csv(root / "sample.csv", _examples(8), pair=False)
    out["pair-csv"] = _write_csv(root / "pair-sample.csv", _examples(8, pair=True), pair=True)
    return out


def _torch_probs(
    model_dir: Path, texts: list[str], pairs: list[str] | None, bundle: Path
) -> np.ndarray:
    """The PyTorch model's probabilities as a server of ``bundle`` must return them: at the
    bundle's score temperature where export fitted one (on a labelled sample), else 1."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    enc = tok(texts, pairs, padding=True, truncation=True, max_length=128, return_tensors="pt")
    if "token_type_ids" not in inspect.signature(model.forward).parameters:
        enc.pop("token_type_ids", None)
    fitted = json.loads((bundle / "bundle.json").read_text()).get("score_temperature")
    temperature = fitted["temperature"] if fitted else 1.0
    with torch.no_grad():
        return torch.softmax(model(**enc).logits / temperature, -1).numpy()


def _served(repo: Path, name: str, texts: list[str], pairs: list[str] | None, variant: str):  # type: ignore[no-untyped-def]
    settings = ApiSettings(
        model_repository=repo, poll_interval_s=0, intra_op_threads=1, model_variant=variant
    )  # type: ignore[call-arg]
    with TestClient(create_app(settings)) as client:
        body: dict[str, object] = {"texts": texts, "model": name}
        if pairs is not None:
            body["text_pairs"] = pairs
        r = client.post("/classify", json=body)
        assert r.status_code == 200, r.text
        info = client.get(f"/models/{name}").json()
        return r.json(), info


QUERIES = ["the goal was big again", "minister said the vote", "rain in the city", "ok"]


@pytest.mark.parametrize("kind", ["bert", "distilbert", "id2label-only"])
def test_single_text_import_is_served_with_the_torch_models_scores(
    checkpoints: dict[str, Path], tmp_path: Path, kind: str
) -> None:
    repo = tmp_path / "repo"
    sample = LabelledFile(checkpoints["single-csv"], label_column="label")
    result = import_classifier(
        str(checkpoints[kind]), "news", repository=repo, sample=sample, test=sample
    )
    assert result.version == "v1"
    assert result.path is not None
    manifest = verify_bundle(result.path)
    assert manifest.labels == LABELS
    assert not manifest.text_pair
    assert manifest.provenance.model_dump()["imported_from"] == str(checkpoints[kind])
    # Export measured the test metrics with onnxruntime on the labelled file.
    assert manifest.metrics["student"]["test"].n == 24
    assert manifest.metrics["student"]["test"].accuracy > 0.9
    # The sample made int8 possible, and it passed its agreement check.
    assert result.int8 and MODEL_INT8 in manifest.files
    assert manifest.export_checks is not None
    assert manifest.export_checks.int8_argmax_agreement is not None
    assert manifest.export_checks.int8_argmax_agreement >= 0.99

    reference = _torch_probs(checkpoints[kind], QUERIES, None, result.path)
    body, info = _served(repo, "news", QUERIES, None, "fp32")
    served = np.array([[p["scores"][lab] for lab in LABELS] for p in body["predictions"]])
    np.testing.assert_allclose(served, reference, atol=1e-4)
    assert [p["label"] for p in body["predictions"]] == [LABELS[i] for i in reference.argmax(-1)]
    assert info["versions"][0]["labels"] == LABELS
    # GET /models/{name} carries the test confusion matrix export measured (rows: true).
    confusion = info["versions"][0]["metrics"]["student"]["test"]["confusion"]
    assert len(confusion) == len(LABELS) and sum(map(sum, confusion)) == 24
    body, _ = _served(repo, "news", QUERIES, None, "int8")
    assert [p["label"] for p in body["predictions"]] == [LABELS[i] for i in reference.argmax(-1)]


def test_pair_model_import_reads_text_pairs(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    sample = LabelledFile(checkpoints["pair-csv"], pair_column="target", label_column="label")
    result = import_classifier(str(checkpoints["pair"]), "cwi-like", repository=repo, sample=sample)
    assert result.path is not None
    manifest = verify_bundle(result.path)
    assert manifest.text_pair
    assert manifest.labels == ["absent", "present"]
    assert "token_type_ids" in manifest.inputs  # BERT tells the two texts apart by them
    # Training examples: the model learned these (train accuracy 1.0 at 200 steps).
    examples = _examples(2, pair=True)
    texts, pairs = [t for t, _, _ in examples], [p or "" for _, p, _ in examples]
    reference = _torch_probs(checkpoints["pair"], texts, pairs, result.path)
    body, _ = _served(repo, "cwi-like", texts, pairs, "fp32")
    served = np.array(
        [[p["scores"][lab] for lab in ("absent", "present")] for p in body["predictions"]]
    )
    np.testing.assert_allclose(served, reference, atol=1e-4)
    # The second text decides: the server passed the pairs through as pairs.
    assert [p["label"] for p in body["predictions"]] == [label for _, _, label in examples]


def test_without_a_sample_the_bundle_ships_fp32_only(
    checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "bundle"
    result = import_classifier(
        str(checkpoints["distilbert"]), "plain", repository=None, out_dir=out
    )
    manifest = verify_bundle(out)
    assert not result.int8 and MODEL_INT8 not in manifest.files
    assert manifest.export_checks is not None
    assert manifest.export_checks.fp32_argmax_agreement == 1.0
    assert manifest.metrics == {}  # nothing labelled, nothing measured
    assert list_models(tmp_path / "no-repo") == []


def test_what_cannot_be_imported_says_why(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no such directory"):
        import_classifier(str(tmp_path / "missing"), "x", repository=tmp_path / "r")
    # A hub id: the tests run offline (HF_HUB_OFFLINE, tests/conftest.py), so the hub
    # cannot give it, and the error says what to do instead.
    with pytest.raises(ModelLoadError, match="import the directory"):
        import_classifier("lugpi-test/no-such-model", "x", repository=tmp_path / "r")
    bare = tmp_path / "bare"
    from transformers import AutoModel

    AutoModel.from_pretrained(checkpoints["bert"]).save_pretrained(bare)
    with pytest.raises(ModelLoadError, match="not a sequence classifier"):
        import_classifier(str(bare), "x", repository=tmp_path / "r")
    wrong = _write_csv(tmp_path / "wrong.csv", [("a text", None, "cooking")], pair=False)
    with pytest.raises(DataError, match="not the model's labels"):
        import_classifier(
            str(checkpoints["bert"]),
            "x",
            repository=tmp_path / "r",
            sample=LabelledFile(wrong, label_column="label"),
        )
    assert not (tmp_path / "r").exists()  # nothing half-published


def test_cli_import_publishes_and_lists(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    from training.cli import app

    repo = tmp_path / "repo"
    args = ["models", "import", str(checkpoints["bert"]), "--name", "news"]
    args += ["--repository", str(repo), "--sample", str(checkpoints["single-csv"])]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "news/v1 (fp32 + int8)" in result.output
    assert [e.version for e in list_models(repo, "news")] == ["v1"]
    # The group's --repository (before the subcommand) reaches the import too.
    args = ["models", "--repository", str(repo), "import", str(checkpoints["bert"])]
    result = CliRunner().invoke(app, [*args, "--name", "news"])
    assert result.exit_code == 0, result.output
    assert "news/v2 (fp32 only)" in result.output  # no sample: no int8
    assert [e.version for e in list_models(repo, "news")] == ["v1", "v2"]
    bad = CliRunner().invoke(app, ["models", "import", str(tmp_path / "nope"), "--name", "n"])
    assert bad.exit_code == 2
    assert "no such directory" in bad.output
