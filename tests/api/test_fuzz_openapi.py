"""Property-based: schemathesis generates requests from the OpenAPI schema (valid and
invalid ones) and sends them to the ASGI app serving real RANDOM-weight bundles, with the
production limits (64 texts of 10,000 characters, pairs); no response may be a 5xx, and
every response must match what the schema documents. The limits themselves are sent
exactly once more at the end, on the single-text and the pair model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks
from schemathesis.python import asgi
from schemathesis.specs.openapi.schemas import OpenApiSchema

from api.main import create_app
from api.settings import ApiSettings
from contracts.repository import publish
from tests.api.conftest import MakeClient

ADMIN_KEY = "fuzz-admin"
# Schema-valid bodies may still be refused: JSON Schema cannot say "text_pairs as long as
# texts", nor which model takes pairs, nor which names exist. Every other check runs.
UNCHECKABLE = [checks.positive_data_acceptance]
# A body over LUGPI_MAX_BODY_BYTES is rejected with 413 before it is validated.
CONFIG = schemathesis.Config.from_dict(
    {
        "checks": {
            "negative_data_rejection": {
                "expected-statuses": [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]
            }
        }
    }
)
# The inference routes (this part of the API). The job and teacher routes have their own
# tests; fuzzing POST /jobs/train here would start training jobs.
INFERENCE_PATHS = {
    "/classify",
    "/models",
    "/models/{name}",
    "/models/{name}/reload",
    "/healthz",
    "/readyz",
    "/metrics",
    # The drop-in surfaces (TEI, Open Inference Protocol v2, infinity / OpenAI).
    "/predict",
    "/",
    "/info",
    "/v1/classify",
    "/v1/models",
    "/v2",
    "/v2/health/live",
    "/v2/health/ready",
    "/v2/models/{name}",
    "/v2/models/{name}/versions/{version}",
    "/v2/models/{name}/ready",
    "/v2/models/{name}/versions/{version}/ready",
    "/v2/models/{name}/infer",
}


@pytest.fixture(scope="module")
def api_schema(
    random_bundles: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OpenApiSchema]:
    repo = tmp_path_factory.mktemp("fuzz-repo")
    publish(random_bundles["single"], repo, "sentiment")
    publish(random_bundles["pair"], repo, "cwi")
    app = create_app(
        ApiSettings(
            model_repository=repo,
            default_model="sentiment",
            poll_interval_s=0,
            intra_op_threads=1,
            # The production limits (64 texts, 10,000 characters, 2 MiB bodies): the
            # defaults, not shrunken ones, so that what is fuzzed is what is deployed.
            api_keys=["fuzz-user"],
            admin_keys=[ADMIN_KEY],
        )
    )
    yield schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)
    asgi.shutdown_lifespans()  # stops the batcher threads of the app schemathesis started


# schemathesis.pytest.from_fixture does not work with pytest 9 (it reads a removed
# private attribute), so each operation's strategy is driven by hypothesis directly.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_random_generated_requests_never_get_5xx(
    api_schema: OpenApiSchema, mode: GenerationMode
) -> None:
    every = [result.ok() for result in api_schema.get_all_operations()]
    operations = [op for op in every if op.path in INFERENCE_PATHS]
    assert {op.path for op in operations} == INFERENCE_PATHS
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=30,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def check(case: schemathesis.Case) -> None:
            # A valid key reaches the routes; schemathesis still checks invalid ones get 4xx.
            case.call_and_validate(headers={"X-API-Key": ADMIN_KEY}, excluded_checks=UNCHECKABLE)

        try:
            check()
        except Unsatisfiable:
            # Negative mode where every input is a free string (a path name) or there are
            # none: nothing can be made invalid. /classify's body always can.
            assert mode == GenerationMode.NEGATIVE and operation.path != "/classify"


@pytest.mark.parametrize("model", ["sentiment", "cwi"])
def test_random_requests_at_the_production_limits(make_client: MakeClient, model: str) -> None:
    """64 texts (and pairs) of 10,000 characters: answered; one more text or character:
    422 naming the field. Never a 5xx. Default settings: the production limits."""
    client = make_client()
    text = ("a fine film, " * 800)[:10_000]

    def body(texts: list[str]) -> dict[str, object]:
        return {"model": model, "texts": texts, **({"text_pairs": texts} if model == "cwi" else {})}

    ok = client.post("/classify", json=body([text] * 64))
    assert ok.status_code == 200 and ok.json()["truncated"] == list(range(64))
    more = client.post("/classify", json=body(["a"] * 65))
    assert more.status_code == 422 and "LUGPI_MAX_TEXTS_PER_REQUEST" in more.text
    longer = client.post("/classify", json=body([text + "x"]))
    assert longer.status_code == 422 and "LUGPI_MAX_TEXT_CHARS" in longer.text


# Bodies no generator makes but an attacker sends (issue 27 item 5): JSON nested 100,000
# deep, an integer past Python's 4,300-digit limit, a lone surrogate in a text. Sent to
# every JSON operation the schema documents, so that a new surface is covered by default.
HOSTILE_BODIES = {
    "deep": b"[" * 100_000 + b"]" * 100_000,
    "huge_int": b'{"texts": [' + b"7" * 5000 + b"]}",
    "surrogate": b'{"texts": ["\\ud800"], "inputs": [{"name": "text", "shape": [1], '
    b'"datatype": "BYTES", "data": ["\\ud800"]}], "input": ["\\ud800"]}',
}


@pytest.mark.parametrize("hostile", list(HOSTILE_BODIES))
def test_random_hostile_bodies_on_every_documented_json_operation(
    make_client: MakeClient, hostile: str
) -> None:
    client = make_client(default_model="sentiment", admin_keys=[ADMIN_KEY])
    paths = client.get("/openapi.json").json()["paths"]
    posts = [p for p in INFERENCE_PATHS if "requestBody" in paths.get(p, {}).get("post", {})]
    assert "/v2/models/{name}/infer" in posts and "/classify" in posts
    for path in posts:
        url = path.replace("{name}", "sentiment").replace("{version}", "v1")
        r = client.post(
            url,
            content=HOSTILE_BODIES[hostile],
            headers={"content-type": "application/json", "X-API-Key": ADMIN_KEY},
        )
        assert 400 <= r.status_code < 500, (path, r.status_code, r.text[:300])
