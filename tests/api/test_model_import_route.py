"""POST /models/import: an admin publishes a classifier trained elsewhere over HTTP.

The route runs ``lugpi models import`` in a child process (the API imports no torch); the
checkpoint is a tiny BERT trained here for seconds (tests/support/classifier_checkpoints.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from support import classifier_checkpoints as ck

from api.main import create_app
from api.settings import ApiSettings
from contracts.repository import list_models

ADMIN = {"X-API-Key": "import-admin"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("import-route")
    return ck.bert(root / "bert", ck.LABELS, ck.examples(6))


def _client(tmp_path: Path, checkpoint: Path) -> TestClient:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    ck.write_csv(data / "sample.csv", ck.examples(4), pair=False)
    settings = ApiSettings(  # type: ignore[call-arg]
        model_repository=tmp_path / "repo",
        poll_interval_s=0,
        intra_op_threads=1,
        api_keys=["reader"],
        admin_keys=["import-admin"],
        allowed_models=[str(checkpoint)],
        data_roots=[data],
    )
    return TestClient(create_app(settings))


def test_admin_imports_a_checkpoint_and_it_is_served(tmp_path: Path, checkpoint: Path) -> None:
    with _client(tmp_path, checkpoint) as client:
        body = {"source": str(checkpoint), "name": "topics", "sample": "sample.csv"}
        body["label_column"] = "label"
        assert client.post("/models/import", json=body).status_code == 401
        reply = client.post("/models/import", json=body, headers={"X-API-Key": "reader"})
        assert reply.status_code == 403
        reply = client.post("/models/import", json=body, headers=ADMIN)
        assert reply.status_code == 200, reply.text
        info = reply.json()
        assert info["default_version"] == "v1"
        assert info["versions"][0]["variant"] == "int8"  # the sample allowed int8
        assert info["versions"][0]["provenance"]["imported_from"] == str(checkpoint)
        # Served at once, without waiting for a rescan.
        scored = client.post(
            "/classify",
            json={"texts": ["the goal was big again"], "model": "topics"},
            headers=ADMIN,
        )
        assert scored.status_code == 200, scored.text
        assert scored.json()["predictions"][0]["label"] == "sport"
    assert [e.version for e in list_models(tmp_path / "repo", "topics")] == ["v1"]


def test_import_refuses_what_it_may_not_load(tmp_path: Path, checkpoint: Path) -> None:
    with _client(tmp_path, checkpoint) as client:
        # A model directory nobody allowed: loading a checkpoint can run code.
        other = tmp_path / "other"
        other.mkdir()
        reply = client.post(
            "/models/import", json={"source": str(other), "name": "x"}, headers=ADMIN
        )
        assert reply.status_code == 422
        assert "LUGPI_ALLOWED_MODELS" in reply.text
        # Nor a built-in name (encoders and generators, allowed for jobs, not classifiers).
        reply = client.post(
            "/models/import", json={"source": "tiny-random", "name": "x"}, headers=ADMIN
        )
        assert reply.status_code == 422 and "LUGPI_ALLOWED_MODELS" in reply.text
        # A sample outside the data roots.
        reply = client.post(
            "/models/import",
            json={"source": str(checkpoint), "name": "x", "sample": "/etc/passwd"},
            headers=ADMIN,
        )
        assert reply.status_code == 422 and "sample" in reply.text
        # The CLI's own refusal comes back as a 422 with its message.
        wrong = tmp_path / "data" / "wrong.csv"
        ck.write_csv(wrong, [("a text", None, "cooking")], pair=False)
        reply = client.post(
            "/models/import",
            json={
                "source": str(checkpoint),
                "name": "x",
                "sample": "wrong.csv",
                "label_column": "label",
            },
            headers=ADMIN,
        )
        assert reply.status_code == 422, reply.text
        assert "not the model's labels" in reply.text
    assert list_models(tmp_path / "repo") == []


def test_admin_imports_an_onnx_classifier_with_its_labels(tmp_path: Path, checkpoint: Path) -> None:
    """An exported ONNX graph with no config.json: the labels and the length come with
    the request (``labels``, ``max_length``) and reach the CLI."""
    graph = ck.export_onnx(checkpoint, tmp_path / "onnx", output="scores")
    (graph / "config.json").unlink()
    with _client(tmp_path, graph) as client:
        body: dict[str, object] = {"source": str(graph), "name": "topics-onnx", "max_length": 64}
        reply = client.post("/models/import", json=body, headers=ADMIN)
        assert reply.status_code == 422 and "--labels" in reply.text
        body["labels"] = ck.LABELS
        reply = client.post("/models/import", json=body, headers=ADMIN)
        assert reply.status_code == 200, reply.text
        assert reply.json()["versions"][0]["labels"] == ck.LABELS
        scored = client.post(
            "/classify",
            json={"texts": ["the goal was big again"], "model": "topics-onnx"},
            headers=ADMIN,
        )
        assert scored.status_code == 200, scored.text
        assert scored.json()["predictions"][0]["label"] == "sport"
