"""A request field documented as a boolean or an integer takes only that JSON type: 0.0 is
not false, "1" is not 1. pydantic's lax mode would coerce them, and a client that sent a
number where the schema says boolean gets an answer to a question it did not ask (CI's
schemathesis run found ``{"input": ["0"], "raw_scores": 0.0}`` answered 200).

Every boolean and integer property of every documented JSON request body is covered: the
table below is checked against the OpenAPI document, so a new field cannot slip past."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import MakeClient

ADMIN_KEY = "strict-admin"
# A body that validates, per path.
VALID: dict[str, dict[str, Any]] = {
    "/predict": {"inputs": "I like you."},
    "/": {"inputs": "I like you.", "parameters": {}},
    "/v1/classify": {"input": ["I like you."]},
    "/classify/teacher": {"texts": ["I like you."]},
    "/models/import": {"source": "/nowhere", "name": "imported"},
    **{
        path: {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}
        for path in ["/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"]
    },
}
# Wrong JSON types that lax pydantic would accept for each scalar type.
# An integer's wrong values are 1 in disguise: a valid value everywhere once coerced.
WRONG = {"boolean": [0.0, 1, "true"], "integer": ["1", 1.0, True]}
# The job config (POST /jobs/train) is the training config, read from YAML and --set too;
# its own tests cover it.
NOT_HERE = {"/jobs/train"}


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    return schema["components"]["schemas"][ref.rsplit("/", 1)[-1]] if ref else node


def _scalar_fields(schema: dict[str, Any]) -> set[tuple[str, tuple[str | int, ...], str]]:
    """(path, field location, JSON type) of every boolean/integer request-body property,
    inside nested objects and the first item of arrays too (OIP's inputs[0].shape[0])."""
    found: set[tuple[str, tuple[str | int, ...], str]] = set()

    def visit(path: str, node: dict[str, Any], loc: tuple[str | int, ...]) -> None:
        for option in node.get("anyOf", [node]):
            option = _resolve(schema, option)
            kind = option.get("type")
            if kind in WRONG and loc:
                found.add((path, loc, kind))
            elif kind == "array" and "items" in option:
                visit(path, option["items"], (*loc, 0))
            for name, prop in option.get("properties", {}).items():
                visit(path, prop, (*loc, name))

    for path, ops in schema["paths"].items():
        body = ops.get("post", {}).get("requestBody", {}).get("content", {})
        if "application/json" in body and path not in NOT_HERE:
            visit(path, body["application/json"]["schema"], ())
    return found


def _with(body: Any, loc: tuple[str | int, ...], value: object) -> Any:
    """A copy of ``body`` with ``value`` at ``loc`` (objects on the way made if absent)."""
    if not loc:
        return value
    head, rest = loc[0], loc[1:]
    if isinstance(head, int):
        items = list(body)
        items[head] = _with(items[head], rest, value)
        return items
    copy = dict(body or {})
    copy[head] = _with(copy.get(head), rest, value)
    return copy


def test_every_scalar_request_field_has_a_valid_body_here(make_client: MakeClient) -> None:
    schema = make_client().get("/openapi.json").json()
    paths = {path for path, _, _ in _scalar_fields(schema)}
    assert paths and paths <= set(VALID), paths - set(VALID)


def test_booleans_and_integers_refuse_other_json_types(make_client: MakeClient) -> None:
    client = make_client(default_model="sentiment", admin_keys=[ADMIN_KEY])
    fields = _scalar_fields(client.get("/openapi.json").json())
    assert ("/v1/classify", ("raw_scores",), "boolean") in fields
    accepted = []
    for path, loc, kind in sorted(fields):
        for wrong in WRONG[kind]:
            url = path.replace("{name}", "sentiment").replace("{version}", "v1")
            body = _with(VALID[path], loc, wrong)
            r = client.post(url, json=body, headers={"X-API-Key": ADMIN_KEY})
            # The Open Inference Protocol answers its errors 400, the rest of the API 422.
            named = [part for part in loc if isinstance(part, str)][-1]
            if r.status_code not in (400, 422) or named not in r.text:
                accepted.append((path, loc, wrong, r.status_code, r.text[:120]))
    assert not accepted, accepted


@pytest.mark.parametrize("value", [True, False])
def test_a_real_boolean_still_works(make_client: MakeClient, value: bool) -> None:
    client = make_client(default_model="sentiment")
    r = client.post("/v1/classify", json={"input": ["I like you."], "raw_scores": value})
    assert r.status_code == 200
    scores = [s["score"] for s in r.json()["data"][0]]
    assert (abs(sum(scores) - 1) < 1e-4) is not value  # probabilities unless raw
