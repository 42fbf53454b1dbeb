"""The fast /classify route (api/fast_classify.py) answers exactly what the FastAPI route
answers, and answers only the requests that pass every check itself.

Two apps on the same repository and settings, one with LUGPI_CLASSIFY_FAST_PATH off (the
FastAPI route alone, as before the fast route existed), get the same requests: valid ones,
and each way a request can fail (body, content type, schema, limits, key, model, pairs).
Status, body (less the request id) and the headers a client acts on must be equal; the
fast route's counters must show that it answered the requests that pass its checks and
handed every other one to the FastAPI route, so the test fails if it never runs, and if it
answers a request the route would refuse. Bundles from RANDOM-weight tiny models: the
probabilities mean nothing, and both apps must give the same ones.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.fast_classify import FastClassify
from tests.api.conftest import MakeClient

# A key with a space in front: FastAPI trims a Bearer credential, so "Bearer  spaced" is the
# key "spaced" to the route, which refuses it; taken untrimmed, it would match " spaced".
KEYS = {"api_keys": ["user-key", " spaced"], "admin_keys": ["admin-key"]}
LIMITS = {"max_texts_per_request": 4, "max_text_chars": 50, "max_body_bytes": 30_000}
JSON = {"Content-Type": "application/json"}

# name -> (body bytes, headers, who answers: the fast route itself, the FastAPI route it
# hands the request to, or neither: the body limit refuses a declared length first)
Case = tuple[bytes, dict[str, str], str]


def _j(body: Any) -> bytes:
    return json.dumps(body).encode()


OPEN_CASES: dict[str, Case] = {
    "one text": (_j({"texts": ["a gripping film"]}), JSON, "fast"),
    "several texts": (_j({"texts": ["a", "bb", "the plot never comes together"]}), JSON, "fast"),
    "model and version": (
        _j({"texts": ["a"], "model": "sentiment", "version": "v1"}),
        JSON,
        "fast",
    ),
    "a pair model": (
        _j({"texts": ["the girl was 18"], "text_pairs": ["girl"], "model": "cwi"}),
        JSON,
        "fast",
    ),
    "charset and +json": (
        _j({"texts": ["a"]}),
        {"Content-Type": "application/vnd.api+json; charset=utf-8"},
        "fast",
    ),
    # Past the checks: raised by the route's own work, for the app's exception handlers.
    "unknown model": (_j({"texts": ["a"], "model": "nope"}), JSON, "fast"),
    "unknown version": (_j({"texts": ["a"], "version": "v9"}), JSON, "fast"),
    "pairs for a single-text model": (_j({"texts": ["a"], "text_pairs": ["b"]}), JSON, "fast"),
    "no pairs for a pair model": (_j({"texts": ["a"], "model": "cwi"}), JSON, "fast"),
    # Failing a check: handed to the FastAPI route.
    "not JSON": (b"{texts: [", JSON, "route"),
    "nested 10,000 deep": (b"[" * 10_000 + b"]" * 10_000, JSON, "route"),
    "an integer of 5,000 digits": (b'{"texts": [' + b"9" * 5000 + b"]}", JSON, "route"),
    "a lone surrogate": (b'{"texts": ["\\ud800"]}', JSON, "route"),
    "not UTF-8": (b'{"texts": ["\xff\xfe"]}', JSON, "route"),
    "text/plain": (_j({"texts": ["a"]}), {"Content-Type": "text/plain"}, "route"),
    "no content type": (_j({"texts": ["a"]}), {}, "route"),
    "no texts": (_j({"texts": []}), JSON, "route"),
    "an empty text": (_j({"texts": [""]}), JSON, "route"),
    "a number for a text": (_j({"texts": [1]}), JSON, "route"),
    "a string for texts": (_j({"texts": "a"}), JSON, "route"),
    "an unknown field": (_j({"texts": ["a"], "top_k": 1}), JSON, "route"),
    "pairs misaligned": (
        _j({"texts": ["a", "b"], "text_pairs": ["c"], "model": "cwi"}),
        JSON,
        "route",
    ),
    "a bad model name": (_j({"texts": ["a"], "model": "../etc"}), JSON, "route"),
    "over the text count": (_j({"texts": ["a"] * 5}), JSON, "route"),
    "over the characters": (_j({"texts": ["x" * 51]}), JSON, "route"),
    "over the body limit": (_j({"texts": ["a"] * 7000}), JSON, "neither"),
}
KEYED_CASES: dict[str, Case] = {
    "no key": (_j({"texts": ["a"]}), JSON, "route"),
    "X-API-Key": (_j({"texts": ["a"]}), {**JSON, "X-API-Key": "user-key"}, "fast"),
    "admin key": (_j({"texts": ["a"]}), {**JSON, "X-API-Key": "admin-key"}, "fast"),
    "Bearer": (_j({"texts": ["a"]}), {**JSON, "Authorization": "Bearer user-key"}, "fast"),
    "bearer, lower case": (
        _j({"texts": ["a"]}),
        {**JSON, "Authorization": "bearer user-key"},
        "fast",
    ),
    # FastAPI trims the credential: the route accepts it; the fast route leaves it to it.
    "Bearer, two spaces": (
        _j({"texts": ["a"]}),
        {**JSON, "Authorization": "Bearer  user-key"},
        "route",
    ),
    "Bearer, two spaces, the spaced key": (
        _j({"texts": ["a"]}),
        {**JSON, "Authorization": "Bearer  spaced"},
        "route",
    ),
    "a wrong key": (_j({"texts": ["a"]}), {**JSON, "X-API-Key": "guess"}, "route"),
    "a wrong Bearer": (_j({"texts": ["a"]}), {**JSON, "Authorization": "Bearer guess"}, "route"),
    "Basic": (_j({"texts": ["a"]}), {**JSON, "Authorization": "Basic dXNlci1rZXk="}, "route"),
    "wrong X-API-Key beside a good Bearer": (
        _j({"texts": ["a"]}),
        {**JSON, "X-API-Key": "guess", "Authorization": "Bearer user-key"},
        "route",
    ),
    "an empty X-API-Key beside a good Bearer": (
        _j({"texts": ["a"]}),
        {**JSON, "X-API-Key": "", "Authorization": "Bearer user-key"},
        "fast",
    ),
}
# What a client acts on besides status and body.
HEADERS = ("content-type", "www-authenticate", "retry-after")


def _answer(client: TestClient, body: bytes, headers: dict[str, str]) -> tuple[Any, ...]:
    r = client.post("/classify", content=body, headers=headers)
    try:
        data = r.json()
    except ValueError:
        data = r.text
    if isinstance(data, dict):
        data.pop("request_id", None)
    return r.status_code, data, tuple(r.headers.get(h) for h in HEADERS)


def _fast(client: TestClient) -> FastClassify:
    fast = client.app.state.fast_classify  # type: ignore[attr-defined]
    assert isinstance(fast, FastClassify)
    return fast


@pytest.mark.parametrize(("settings", "cases"), [({}, OPEN_CASES), (KEYS, KEYED_CASES)])
def test_random_the_fast_route_answers_as_the_fastapi_route_does(
    make_client: MakeClient, settings: dict[str, Any], cases: dict[str, Case]
) -> None:
    fast_client = make_client(default_model="sentiment", **LIMITS, **settings)
    route_client = make_client(
        default_model="sentiment", classify_fast_path=False, **LIMITS, **settings
    )
    assert getattr(route_client.app.state, "fast_classify", None) is None  # type: ignore[attr-defined]
    fast = _fast(fast_client)
    for name, (body, headers, who) in cases.items():
        before = (fast.answered, fast.handed_on)
        ours = _answer(fast_client, body, headers)
        theirs = _answer(route_client, body, headers)
        assert ours == theirs, name
        took = (fast.answered - before[0], fast.handed_on - before[1])
        expected = {"fast": (1, 0), "route": (0, 1), "neither": (0, 0)}[who]
        assert took == expected, (name, took, ours[0])
    statuses = {_answer(route_client, b, h)[0] for b, h, _ in cases.values()}
    assert 200 in statuses and len(statuses) > 2  # the cases do cover answers and errors


def test_random_a_chunked_body_over_the_limit_is_refused_as_before(
    make_client: MakeClient,
) -> None:
    """No Content-Length: the body limit counts the chunks as they come, and raises while
    the fast route reads them; the route answers it from there."""

    def chunks() -> Any:
        yield b'{"texts": ['
        for _ in range(4000):
            yield b'"aaaa", '
        yield b'"a"]}'

    answers = []
    for on in (True, False):
        client = make_client(default_model="sentiment", classify_fast_path=on, **LIMITS)
        r = client.post("/classify", content=chunks(), headers=JSON)
        answers.append((r.status_code, {k: v for k, v in r.json().items() if k != "request_id"}))
    assert answers[0] == answers[1] and answers[0][0] == 413


def test_random_fast_answers_are_counted_under_the_route_in_metrics(
    make_client: MakeClient,
) -> None:
    client = make_client(default_model="sentiment")
    for _ in range(3):
        assert client.post("/classify", json={"texts": ["a"]}).status_code == 200
    assert client.post("/classify", json={"texts": ["a"], "model": "nope"}).status_code == 404
    assert _fast(client).answered == 4
    text = client.get("/metrics").text
    counted = '{method="POST",route="/classify",status="200"} 3.0'
    assert f"lugpi_http_request_duration_seconds_count{counted}" in text
    assert 'lugpi_http_errors_total{route="/classify",status="404"} 1.0' in text
    assert "lugpi_classify_requests_total" in text
