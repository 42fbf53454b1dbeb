"""Every kind of bad input gets a JSON 4xx whose detail says what to fix; the server stays up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import MakeClient


@pytest.fixture
def small(make_client: MakeClient) -> Iterator[TestClient]:
    """Small limits, so that 'too many' and 'too big' are cheap to send."""
    client = make_client(max_texts_per_request=4, max_text_chars=50, max_body_bytes=2048)
    yield client
    # Whatever was sent, the server still answers.
    assert (
        client.post("/classify", json={"texts": ["fine"], "model": "sentiment"}).status_code == 200
    )


def detail_text(r: object) -> str:
    body = r.json()  # type: ignore[attr-defined]
    assert "detail" in body, body
    return str(body["detail"])


@pytest.mark.parametrize(
    ("body", "where", "words"),
    [
        ({"texts": []}, "texts", "at least 1"),
        ({"texts": [""]}, "texts", "at least 1 character"),
        ({"texts": ["ok", 3]}, "texts", "valid string"),
        ({"texts": ["ok", None]}, "texts", "valid string"),
        ({"texts": None}, "texts", "valid list"),
        ({}, "texts", "Field required"),
        ({"texts": "not a list"}, "texts", "valid list"),
        ({"texts": ["a"], "colour": "red"}, "colour", "Extra inputs"),
        ({"texts": ["a"], "version": "latest"}, "version", "pattern"),
        ({"texts": ["a", "b"], "text_pairs": ["x"]}, "body", "one text_pair per text"),
    ],
)
def test_random_schema_violations_are_422_with_location(
    small: TestClient, body: object, where: str, words: str
) -> None:
    r = small.post("/classify", json=body)
    assert r.status_code == 422, r.text
    detail = detail_text(r)
    assert where in detail and words in detail


def test_random_null_body_is_422(small: TestClient) -> None:
    r = small.post("/classify", content=b"null", headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert "Field required" in detail_text(r) or "valid dictionary" in detail_text(r)


def test_random_malformed_json_is_422(small: TestClient) -> None:
    r = small.post(
        "/classify", content=b'{"texts": [', headers={"content-type": "application/json"}
    )
    assert r.status_code == 422
    assert "JSON decode error" in detail_text(r)


def test_random_invalid_utf8_is_400(small: TestClient) -> None:
    r = small.post(
        "/classify",
        content=b'{"texts": ["\xff\xfe bad"]}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400
    assert "UTF-8" in detail_text(r)


def test_random_unpaired_surrogate_is_422(small: TestClient) -> None:
    # Valid JSON, but not valid Unicode: the tokenizer cannot take it.
    body = b'{"texts": ["fine", "bad \\ud800 text"], "model": "sentiment"}'
    r = small.post("/classify", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert "unicode" in detail_text(r) and "['body', 'texts', 1]" in detail_text(r)
    assert "\\ud800" not in r.text  # the offending input is not echoed


def test_random_too_many_texts_is_422(small: TestClient) -> None:
    r = small.post("/classify", json={"texts": ["a"] * 5, "model": "sentiment"})
    assert r.status_code == 422
    assert "at most 4" in detail_text(r) and "LUGPI_MAX_TEXTS_PER_REQUEST" in detail_text(r)


def test_random_huge_text_is_422_without_echoing_it(small: TestClient) -> None:
    huge = "y" * 51
    r = small.post("/classify", json={"texts": ["ok", huge], "model": "sentiment"})
    assert r.status_code == 422
    assert "at most 50" in detail_text(r) and huge not in r.text
    assert r.json()["detail"][0]["loc"] == ["body", "texts", 1]


def test_random_oversize_body_is_413(small: TestClient) -> None:
    body = b'{"texts": ["' + b"z" * 4000 + b'"]}'
    r = small.post("/classify", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert "2048 bytes" in detail_text(r)


def test_random_oversize_streamed_body_without_length_is_413(small: TestClient) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the server must count bytes
        yield b'{"texts": ["'
        for _ in range(10):
            yield b"z" * 500
        yield b'"]}'

    r = small.post("/classify", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert "LUGPI_MAX_BODY_BYTES" in detail_text(r)


def test_random_pairs_for_single_text_model_are_refused(small: TestClient) -> None:
    r = small.post("/classify", json={"texts": ["a"], "text_pairs": ["b"], "model": "sentiment"})
    assert r.status_code == 422
    assert "single texts" in detail_text(r) and "leave text_pairs out" in detail_text(r)


def test_random_pair_model_without_pairs_is_refused(small: TestClient) -> None:
    r = small.post("/classify", json={"texts": ["a"], "model": "cwi"})
    assert r.status_code == 422
    assert "text pairs" in detail_text(r) and "give text_pairs" in detail_text(r)


def test_random_unknown_model_is_404_listing_models(small: TestClient) -> None:
    r = small.post("/classify", json={"texts": ["a"], "model": "nope"})
    assert r.status_code == 404
    assert "'nope'" in detail_text(r) and "cwi" in detail_text(r) and "sentiment" in detail_text(r)
    assert small.get("/models/nope").status_code == 404


def test_random_unknown_version_is_404_listing_versions(small: TestClient) -> None:
    r = small.post("/classify", json={"texts": ["a"], "model": "sentiment", "version": "v9"})
    assert r.status_code == 404
    assert "v9" in detail_text(r) and "['v1']" in detail_text(r)


def test_random_no_model_loaded_is_503_and_not_ready(
    tmp_path: Path, make_client: MakeClient
) -> None:
    empty = tmp_path / "empty-repo"
    client = make_client(model_repository=empty)
    r = client.post("/classify", json={"texts": ["a"]})
    assert r.status_code == 503
    assert "no model is loaded" in detail_text(r)
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["status"] == "not ready"
    assert client.get("/healthz").status_code == 200


def test_random_wrong_method_and_path_are_json(small: TestClient) -> None:
    assert small.get("/classify").status_code == 405
    r = small.get("/nowhere")
    assert r.status_code == 404 and "detail" in r.json()


def test_random_many_bad_items_report_a_bounded_number_of_errors(small: TestClient) -> None:
    # Each item fails on its own; the body lists MAX_REPORTED_ERRORS of them and counts the rest.
    from api.error_shapes import MAX_REPORTED_ERRORS

    r = small.post("/classify", json={"texts": [1] * 100, "model": "sentiment"})
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert len(detail) == MAX_REPORTED_ERRORS + 1
    assert detail[-1]["msg"] == f"{100 - MAX_REPORTED_ERRORS} more errors not shown"


def test_random_a_list_past_the_schema_bound_is_one_error(make_client: MakeClient) -> None:
    # Past api.schemas.MAX_LIST_ITEMS, pydantic stops counting: one error, not one per item.
    from api.schemas import MAX_LIST_ITEMS

    r = make_client().post(
        "/classify", json={"texts": [1] * (MAX_LIST_ITEMS + 1), "model": "sentiment"}
    )
    assert r.status_code == 422
    assert [e["type"] for e in r.json()["detail"]] == ["too_long"]
