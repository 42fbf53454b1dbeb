"""The TEI surface, called by huggingface_hub.InferenceClient and by TEI's documented
requests, against a real uvicorn server serving bundles exported from RANDOM-weight
tiny models (tests/api/conftest.py): the scores are meaningless, the shapes are real."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from huggingface_hub import InferenceClient
from huggingface_hub.errors import HfHubHTTPError

from contracts.repository import publish
from tests.api.conftest import PAIR_LABELS, SINGLE_LABELS
from tests.live_server import serve

KEY = "tei-test-key"
MAX_TEXTS = 4


@pytest.fixture(scope="module")
def tei_repository(
    random_bundles: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    repo = tmp_path_factory.mktemp("tei-repo")
    publish(random_bundles["single"], repo, "sentiment")
    publish(random_bundles["pair"], repo, "cwi")
    return repo


@pytest.fixture(scope="module")
def url(tei_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = {
        "LUGPI_MODEL_REPOSITORY": str(tei_repository),
        "LUGPI_DEFAULT_MODEL": "sentiment",
        "LUGPI_API_KEYS": KEY,
        "LUGPI_MAX_TEXTS_PER_REQUEST": str(MAX_TEXTS),
        "LUGPI_MODEL_VARIANT": "fp32",  # int8 rows shift with their batch companions
    }
    with serve(settings, tmp_path_factory.mktemp("tei-log") / "uvicorn.log") as base:
        yield base


@pytest.fixture(autouse=True)
def loopback_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """huggingface_hub refuses every request under HF_HUB_OFFLINE (tests/conftest.py sets
    it), loopback included; these tests only ever call the local server."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def http(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=30) as client:
        yield client


def _native_scores(http: httpx.Client, text: str, model: str = "sentiment") -> dict[str, float]:
    r = http.post("/classify", json={"texts": [text], "model": model})
    assert r.status_code == 200, r.text
    scores: dict[str, float] = r.json()["predictions"][0]["scores"]
    return scores


def test_random_inference_client_text_classification_gets_every_label_sorted(
    url: str, http: httpx.Client
) -> None:
    client = InferenceClient(model=url, headers={"X-API-Key": KEY})
    out = client.text_classification("I like you.")
    assert sorted(e.label for e in out) == sorted(SINGLE_LABELS)
    scores = [e.score for e in out]
    assert scores == sorted(scores, reverse=True)
    assert math.isclose(sum(scores), 1.0, abs_tol=1e-4)
    # The same batcher as /classify: the same probabilities.
    native = _native_scores(http, "I like you.")
    for e in out:
        assert e.score == pytest.approx(native[e.label], abs=1e-6)


def test_random_inference_client_top_k_and_function_to_apply(url: str) -> None:
    client = InferenceClient(model=url, headers={"X-API-Key": KEY})
    top = client.text_classification("I like you.", top_k=2)
    assert len(top) == 2
    probs = {e.label: e.score for e in client.text_classification("I like you.")}
    logits = {
        e.label: e.score
        for e in client.text_classification("I like you.", function_to_apply="none")
    }
    sigmoid = {
        e.label: e.score
        for e in client.text_classification("I like you.", function_to_apply="sigmoid")
    }
    z = np.array([logits[label] for label in SINGLE_LABELS])
    softmax = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    assert softmax == pytest.approx([probs[label] for label in SINGLE_LABELS], abs=1e-5)
    assert [sigmoid[label] for label in SINGLE_LABELS] == pytest.approx(
        1 / (1 + np.exp(-z)), abs=1e-5
    )


def test_random_inference_client_sends_bearer_token_and_sees_tei_errors(url: str) -> None:
    assert len(InferenceClient(model=url, token=KEY).text_classification("I like you.")) == 3
    with pytest.raises(HfHubHTTPError) as caught:
        InferenceClient(model=url, token="not-a-key").text_classification("I like you.")
    assert caught.value.response.status_code == 403
    assert set(caught.value.response.json()) == {"error", "error_type"}


def test_tei_documented_predict_examples(http: httpx.Client) -> None:
    """The requests of TEI's README and OpenAPI: a string, a batch, raw scores."""
    single = http.post("/predict", json={"inputs": "I like you."})
    assert single.status_code == 200, single.text
    body = single.json()
    assert [set(p) for p in body] == [{"label", "score"}] * 3  # one input -> one flat list
    assert [p["score"] for p in body] == sorted((p["score"] for p in body), reverse=True)
    for header in ("x-compute-time", "x-queue-time", "x-inference-time", "x-tokenization-time"):
        assert int(single.headers[header]) >= 0
    assert int(single.headers["x-compute-tokens"]) > 0

    batch = http.post("/predict", json={"inputs": [["I like you."], ["I hate pineapples"]]})
    assert batch.status_code == 200, batch.text
    assert len(batch.json()) == 2 and all(len(row) == 3 for row in batch.json())
    first = {p["label"]: p["score"] for p in batch.json()[0]}
    assert first == pytest.approx({p["label"]: p["score"] for p in body})  # same row, batched

    raw = http.post("/predict", json={"inputs": "I like you.", "raw_scores": True}).json()
    z = {p["label"]: p["score"] for p in raw}
    assert not math.isclose(sum(z.values()), 1.0, abs_tol=1e-3)  # logits, not probabilities


def test_tei_pair_inputs_on_a_pair_model(http: httpx.Client) -> None:
    pair = ["The girl shot dead in Bellaghy was 18.", "Bellaghy"]
    r = http.post("/predict", params={"model": "cwi"}, json={"inputs": pair})
    assert r.status_code == 200, r.text
    assert sorted(p["label"] for p in r.json()) == sorted(PAIR_LABELS)
    r = http.post("/predict", params={"model": "cwi"}, json={"inputs": [pair, pair]})
    assert r.status_code == 200 and len(r.json()) == 2
    # A single text to a pair model: 422, TEI's shape, naming the field.
    r = http.post("/predict", params={"model": "cwi"}, json={"inputs": "no pair"})
    assert r.status_code == 422
    assert r.json()["error_type"] == "Validation" and "inputs" in r.json()["error"]


def test_tei_truncation_is_reported_or_refused(http: httpx.Client) -> None:
    long_text = " ".join(["word"] * 100)  # > max_length (24) tokens
    assert http.post("/predict", json={"inputs": long_text}).status_code == 200  # auto_truncate
    refused = http.post("/predict", json={"inputs": long_text, "truncate": False})
    assert refused.status_code == 413
    assert refused.json()["error_type"] == "Validation"
    right = http.post("/predict", json={"inputs": "good " + long_text}).json()
    left = http.post(
        "/predict", json={"inputs": "good " + long_text, "truncation_direction": "Left"}
    ).json()
    assert right != left  # the cut end differs, so the tokens scored differ


def test_tei_limits_and_errors_have_tei_statuses(url: str, http: httpx.Client) -> None:
    too_many = http.post("/predict", json={"inputs": [["a"]] * (MAX_TEXTS + 1)})
    assert too_many.status_code == 413, too_many.text
    assert (
        too_many.json()
        == {
            "error": too_many.json()["error"],
            "error_type": "Validation",
        }
        and "batch size" in too_many.json()["error"]
    )
    unreadable = http.post("/predict", json={"inputs": 5})
    assert unreadable.status_code == 422 and unreadable.json()["error_type"] == "Validation"
    three = http.post("/predict", json={"inputs": ["a", "b", "c"]})
    assert three.status_code == 422 and "inputs" in three.json()["error"]
    no_key = httpx.post(url + "/predict", json={"inputs": "x"})
    assert no_key.status_code == 401 and set(no_key.json()) == {"error", "error_type"}


def test_tei_info_names_the_model_not_its_path(http: httpx.Client, tei_repository: Path) -> None:
    r = http.get("/info")
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["model_id"] == "sentiment" and info["model_sha"] == "v1"
    assert info["model_type"]["classifier"]["id2label"] == {
        str(i): label for i, label in enumerate(SINGLE_LABELS)
    }
    assert info["model_type"]["classifier"]["label2id"] == {
        label: i for i, label in enumerate(SINGLE_LABELS)
    }
    assert info["max_input_length"] == 24 and info["max_client_batch_size"] == MAX_TEXTS
    assert str(tei_repository) not in r.text
    cwi = http.get("/info", params={"model": "cwi"}).json()
    assert cwi["model_id"] == "cwi"
