"""One rule for which routes need a key (README, "Keys"), checked over every route the
app has, so that a new route follows it without being listed (issue 27 item 11):

- reading what is served is public: health and readiness, metrics, model lists and
  model metadata on every protocol (``/models``, ``/info``, ``/v1/models``,
  ``/v2/models/{name}...``), the docs and the web page; public answers name models,
  never paths or job ids;
- running a model (every inference route) needs a classify key once any key is set;
- changing state, and the job routes, need an admin key (the teacher: a teacher key)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.conftest import MakeClient

# Routes a classify key may not use: jobs (admin) and the teacher (a GPU worker per call:
# teacher or admin keys).
ADMIN_PREFIXES = ("/jobs", "/classify/teacher")


def expected(method: str, path: str) -> str:
    if path.startswith(ADMIN_PREFIXES) or (method != "GET" and path.startswith("/models")):
        return "admin"
    if method != "GET":
        return "key"  # inference: /classify, /predict, POST /, /v1/classify, .../infer
    return "public"


def test_random_every_route_follows_the_key_rule(make_client: MakeClient) -> None:
    client: TestClient = make_client(
        api_keys=["user"], admin_keys=["admin"], default_model="sentiment"
    )
    paths = client.get("/openapi.json").json()["paths"]  # every route the app documents
    checked = 0
    for route_path, operations in paths.items():
        for method in (m.upper() for m in operations):
            path = (
                route_path.replace("{name}", "sentiment")
                .replace("{version}", "v1")
                .replace("{job_id}", "0" * 32)
            )
            without = client.request(method, path).status_code
            user = client.request(method, path, headers={"X-API-Key": "user"}).status_code
            rule = expected(method, route_path)
            if rule == "public":
                assert without not in (401, 403), (method, route_path, without)
            elif rule == "key":
                assert without == 401 and user not in (401, 403), (method, route_path, user)
            else:
                assert without == 401 and user == 403, (method, route_path, without, user)
            checked += 1
    assert checked > 20
