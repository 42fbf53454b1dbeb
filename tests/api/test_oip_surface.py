"""Open Inference Protocol v2, called by tritonclient[http] (JSON and binary tensors)
against a real uvicorn server serving bundles exported from RANDOM-weight tiny models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from contracts.repository import publish
from tests.api.conftest import PAIR_LABELS, SINGLE_LABELS
from tests.live_server import serve

KEY = "oip-test-key"


def auth() -> dict[str, str]:
    # A fresh dict per call: tritonclient adds its own headers to the dict it is given.
    return {"X-API-Key": KEY}


@pytest.fixture(scope="module")
def url(random_bundles: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    repo = tmp_path_factory.mktemp("oip-repo")
    publish(random_bundles["single"], repo, "sentiment")
    publish(random_bundles["single"], repo, "sentiment")  # v2, so that versions can be named
    publish(random_bundles["pair"], repo, "cwi")
    settings = {
        "LUGPI_MODEL_REPOSITORY": str(repo),
        "LUGPI_API_KEYS": KEY,
        "LUGPI_MODEL_VARIANT": "fp32",
    }
    with serve(settings, tmp_path_factory.mktemp("oip-log") / "uvicorn.log") as base:
        yield base


@pytest.fixture
def client(url: str) -> Iterator[triton.InferenceServerClient]:
    c = triton.InferenceServerClient(url.removeprefix("http://"))
    yield c
    c.close()


def _text_input(name: str, texts: list[str], binary: bool) -> triton.InferInput:
    tensor = triton.InferInput(name, [len(texts)], "BYTES")
    tensor.set_data_from_numpy(
        np.array([t.encode() for t in texts], dtype=np.object_), binary_data=binary
    )
    return tensor


def _native_probs(
    url: str, texts: list[str], model: str, pairs: list[str] | None = None
) -> np.ndarray:
    body: dict[str, object] = {"texts": texts, "model": model}
    if pairs:
        body["text_pairs"] = pairs
    r = httpx.post(url + "/classify", json=body, headers=auth())
    assert r.status_code == 200, r.text
    labels = SINGLE_LABELS if model == "sentiment" else PAIR_LABELS
    return np.array([[p["scores"][label] for label in labels] for p in r.json()["predictions"]])


def test_random_tritonclient_health_and_metadata(client: triton.InferenceServerClient) -> None:
    # Health is public: no key sent.
    assert client.is_server_live() and client.is_server_ready()
    server = client.get_server_metadata(headers=auth())
    assert server["name"] == "lugpi" and "classification" in server["extensions"]
    meta = client.get_model_metadata("sentiment", headers=auth())
    assert meta["versions"] == ["v2", "v1"]
    assert [i["name"] for i in meta["inputs"]] == ["text"]
    assert {o["name"]: o["shape"] for o in meta["outputs"]} == {
        "probabilities": [-1, 3],
        "logits": [-1, 3],
    }
    pair_meta = client.get_model_metadata("cwi", headers=auth())
    assert [i["name"] for i in pair_meta["inputs"]] == ["text", "text_pair"]
    assert client.is_model_ready("sentiment", headers=auth())
    # v1 is servable but not loaded (only defaults load at start-up): not ready until an
    # inference request naming it has loaded it.
    assert not client.is_model_ready("sentiment", "1", headers=auth())
    client.infer("sentiment", [_text_input("text", ["x"], False)], "1", headers=auth())
    assert client.is_model_ready("sentiment", "1", headers=auth())  # a bare number = v1
    assert not client.is_model_ready("sentiment", "v9", headers=auth())
    assert not client.is_model_ready("nope", headers=auth())


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary-tensors"])
def test_random_tritonclient_infer_matches_classify(
    client: triton.InferenceServerClient, url: str, binary: bool
) -> None:
    texts = ["a gripping film", "dull", "the plot never quite comes together"]
    outputs = [
        triton.InferRequestedOutput("probabilities", binary_data=binary),
        triton.InferRequestedOutput("logits", binary_data=binary),
    ]
    result = client.infer(
        "sentiment", [_text_input("text", texts, binary)], outputs=outputs, headers=auth(),
        request_id="req-1",
    )  # fmt: skip
    probs = result.as_numpy("probabilities")
    assert probs.shape == (3, 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs, _native_probs(url, texts, "sentiment"), atol=1e-6)
    logits = result.as_numpy("logits")
    softmax = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(softmax, probs, atol=1e-5)
    response = result.get_response()
    assert response["model_name"] == "sentiment" and response["model_version"] == "v2"
    assert response["id"] == "req-1"


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary-tensors"])
def test_random_tritonclient_classification_extension_on_a_pair_model(
    client: triton.InferenceServerClient, url: str, binary: bool
) -> None:
    texts, pairs = ["the teenage girl", "a word"], ["teenage", "word"]
    inputs = [_text_input("text", texts, binary), _text_input("text_pair", pairs, binary)]
    out = triton.InferRequestedOutput("probabilities", binary_data=binary, class_count=2)
    result = client.infer("cwi", inputs, outputs=[out], model_version="1", headers=auth())
    labels = result.as_numpy("probabilities")
    assert labels.shape == (2, 2)
    native = _native_probs(url, texts, "cwi", pairs)
    for row, expected in zip(labels, native, strict=True):
        decoded = [v.decode() if isinstance(v, bytes) else str(v) for v in row]
        scores, indices, names = zip(*(d.split(":", 2) for d in decoded), strict=True)
        assert [float(s) for s in scores] == sorted((float(s) for s in scores), reverse=True)
        assert [PAIR_LABELS[int(i)] for i in indices] == list(names)
        assert float(scores[0]) == pytest.approx(expected.max(), abs=1e-5)


def test_random_tritonclient_sees_errors_and_keys(client: triton.InferenceServerClient) -> None:
    inputs = [_text_input("text", ["x"], False)]
    with pytest.raises(InferenceServerException) as no_key:
        client.infer("sentiment", inputs)
    assert no_key.value.status() == "401"
    with pytest.raises(InferenceServerException) as pairless:
        client.infer("cwi", inputs, headers=auth())
    assert pairless.value.status() == "400" and "text pairs" in pairless.value.message()
    with pytest.raises(InferenceServerException) as unknown:
        client.infer("nope", inputs, headers=auth())
    assert unknown.value.status() == "404"


def test_oip_json_body_by_hand(url: str) -> None:
    """The protocol's own JSON example shape, without any client library."""
    body = {
        "inputs": [{"name": "text", "shape": [2, 1], "datatype": "BYTES", "data": [["a"], ["b"]]}],
        "outputs": [{"name": "probabilities", "parameters": {"classification": 1}}],
    }
    r = httpx.post(url + "/v2/models/sentiment/versions/v1/infer", json=body, headers=auth())
    assert r.status_code == 200, r.text
    out = r.json()["outputs"][0]
    assert out["datatype"] == "BYTES" and out["shape"] == [2, 1]
    assert all(s.split(":")[2] in SINGLE_LABELS for s in out["data"])
    bad = httpx.post(
        url + "/v2/models/sentiment/infer",
        json={"inputs": [{"name": "text", "shape": [3], "datatype": "BYTES", "data": ["a"]}]},
        headers=auth(),
    )
    assert bad.status_code == 400 and "shape" in bad.json()["error"]
