"""Every request codec under hostile and random input: a 4xx in the surface's own error
shape, never a 5xx or a dropped connection.

The hostile bodies are the ones that once took the Open Inference Protocol route to a
500: JSON nested 100,000 deep (``RecursionError``), an integer of more than 4,300 digits
(``ValueError``), a lone surrogate inside a text. The fuzz tests drive the OIP codec
(JSON and the binary-tensor extension) directly, and every JSON surface through the app.
Bundles exported from RANDOM-weight tiny models (tests/api/conftest.py)."""

from __future__ import annotations

import contextlib
import json
import struct

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.oip_codec import HEADER_LENGTH, parse_request
from contracts.errors import UserError
from tests.api.conftest import MakeClient

DEEP = b"[" * 100_000 + b"]" * 100_000
HUGE_INT = b"1" * 5000
SURROGATE = b'"bad \\ud800 text"'


def _oip(data: bytes) -> bytes:
    return (
        b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ['
        + data
        + b"]}]}"
    )


# (path, body with {} where the hostile value goes, the keys of the surface's error body)
SURFACES = {
    "/classify": (b'{"model": "sentiment", "texts": [%s]}', {"detail", "request_id"}),
    "/predict": (b'{"inputs": [%s]}', {"error", "error_type"}),
    "/": (b'{"inputs": [%s]}', {"error", "error_type"}),
    "/v1/classify": (b'{"model": "sentiment", "input": [%s]}', {"error"}),
    "/v2/models/sentiment/infer": (_oip(b"%s"), {"error"}),
}
HOSTILE = {"deep": DEEP, "huge_int": HUGE_INT, "surrogate": SURROGATE}


@pytest.fixture
def client(make_client: MakeClient) -> TestClient:
    return make_client(default_model="sentiment")


@pytest.mark.parametrize("hostile", list(HOSTILE))
@pytest.mark.parametrize("path", list(SURFACES))
def test_random_hostile_json_is_a_4xx_in_the_surface_shape(
    client: TestClient, path: str, hostile: str
) -> None:
    template, shape = SURFACES[path]
    body = template.replace(b"%s", HOSTILE[hostile])
    r = client.post(path, content=body, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert set(r.json()) == shape
    assert "\\ud800" not in r.text  # the offending input is not echoed


def test_random_oip_lone_surrogate_names_the_input(client: TestClient) -> None:
    r = client.post(
        "/v2/models/sentiment/infer",
        content=_oip(SURROGATE),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400 and "inputs.text.data" in r.json()["error"]
    assert "surrogate" in r.json()["error"]


# --- the OIP codec on its own ------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
TENSOR = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["text", "text_pair", "x"]) | st.integers(),
        "shape": st.lists(st.integers(-3, 5), max_size=3) | JSON_VALUES,
        "datatype": st.sampled_from(["BYTES", "FP32"]) | JSON_VALUES,
    },
    optional={
        "data": st.lists(
            st.text(max_size=5) | st.lists(st.text(max_size=5), max_size=2) | JSON_VALUES,
            max_size=4,
        ),
        "parameters": st.fixed_dictionaries(
            {}, optional={"binary_data_size": st.integers(-2, 64) | JSON_VALUES}
        ),
    },
)
REQUEST = st.fixed_dictionaries(
    {"inputs": st.lists(TENSOR, max_size=3) | JSON_VALUES},
    optional={"id": JSON_VALUES, "outputs": JSON_VALUES, "parameters": JSON_VALUES},
)


def _parse(body: bytes, header: str | None) -> None:
    # Refused with a reason is a 4xx; anything else escaping is the bug.
    with contextlib.suppress(UserError):
        parse_request(body, header)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(body=st.binary(max_size=200), header=st.none() | st.text(max_size=6))
def test_random_bytes_never_escape_the_oip_codec(body: bytes, header: str | None) -> None:
    _parse(body, header)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(request=REQUEST)
def test_random_json_requests_never_escape_the_oip_codec(request: object) -> None:
    _parse(json.dumps(request).encode(), None)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(
    elements=st.lists(st.binary(max_size=6), max_size=4),
    cut=st.integers(0, 40),
    claimed=st.integers(-1, 64),
    shape=st.lists(st.integers(-1, 5), max_size=3),
)
def test_random_binary_tensors_never_escape_the_oip_codec(
    elements: list[bytes], cut: int, claimed: int, shape: list[int]
) -> None:
    raw = b"".join(struct.pack("<I", len(e)) + e for e in elements)[: cut or None]
    size = claimed if claimed >= 0 else len(raw)
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "text",
                    "shape": shape,
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": size},
                }
            ]
        }
    ).encode()
    _parse(head + raw, str(len(head)))


# --- every JSON surface through the app --------------------------------------------------


@pytest.mark.parametrize("path", list(SURFACES))
def test_random_json_bodies_never_get_a_5xx(make_client: MakeClient, path: str) -> None:
    client = make_client(default_model="sentiment")

    @settings(
        max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(
        content=(JSON_VALUES | REQUEST).map(lambda v: json.dumps(v).encode())
        | st.binary(max_size=40)
    )
    def check(content: bytes) -> None:
        r = client.post(path, content=content, headers={"content-type": "application/json"})
        assert r.status_code < 500, (r.status_code, r.text[:300])

    check()


def test_random_binary_header_length_that_is_not_a_number(client: TestClient) -> None:
    r = client.post(
        "/v2/models/sentiment/infer",
        content=b"{}",
        headers={HEADER_LENGTH: "9" * 5000, "content-type": "application/octet-stream"},
    )
    assert 400 <= r.status_code < 500
