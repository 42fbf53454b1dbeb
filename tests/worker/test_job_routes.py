"""The /jobs routes without running a job: validation, trust boundary, queueing, cancel,
auth, and Redis being down. Real Redis, real HTTP (TestClient); no worker needed."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import ApiSettings

CWI = "cwi2018/News_Train.tsv"
MakeClient = Callable[..., TestClient]


def body(train: str, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "name": "route-test",
        "data": {"train": train, "format": "cwi2018", "prompt_style": "cwi"},
        "generator": {"model": "tiny-random"},
        "teachers": [
            {"name": "t", "text_model": "all-minilm-l6-v2", "image_model": "efficientnet-lite0"}
        ],
        "student": {"text_model": "all-minilm-l6-v2"},
    }
    cfg.update(extra)
    return cfg


@pytest.fixture
def make_client(tmp_path: Path, shared_datasets: Path) -> Iterator[MakeClient]:
    clients: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        fields: dict[str, Any] = {
            "model_repository": tmp_path / "repo",
            "artifacts_dir": tmp_path / "artifacts",
            "data_roots": [shared_datasets, tmp_path / "data"],
            "poll_interval_s": 0,
            "stale_after_s": 2,
            "allow_unauthenticated_admin": True,  # tests of the job routes, not of keys
        }
        fields.update(overrides)
        client = TestClient(create_app(ApiSettings(**fields)))
        client.__enter__()
        clients.append(client)
        return client

    (tmp_path / "data").mkdir()
    yield make
    for c in clients:
        c.__exit__(None, None, None)


def test_invalid_config_names_every_bad_field(make_client: MakeClient) -> None:
    client = make_client()
    bad = body(CWI, student={"text_model": "all-minilm-l6-v2", "epochs": -1}, colour="blue")
    r = client.post("/jobs/train", json=bad)
    assert r.status_code == 422
    locs = {tuple(e["loc"]) for e in r.json()["detail"]}
    assert ("body", "student", "epochs") in locs and ("body", "colour") in locs


def test_data_paths_must_stay_under_the_data_roots(
    make_client: MakeClient, tmp_path: Path, shared_datasets: Path
) -> None:
    client = make_client()
    (tmp_path / "data" / "escape.tsv").symlink_to("/etc/hostname")
    cases = {
        "/etc/passwd": "outside the data roots",
        "cwi2018/../cwi2018/News_Train.tsv": "'..'",
        "escape.tsv": "symlink",
        "cwi2018/nope.tsv": "no such file",
    }
    for path, why in cases.items():
        r = client.post("/jobs/train", json=body(path))
        assert r.status_code == 422, (path, r.text)
        (err,) = r.json()["detail"]
        assert err["loc"] == ["body", "data", "train"] and why in err["msg"], err


def test_models_must_be_allowed(make_client: MakeClient, tmp_path: Path) -> None:
    client = make_client(allowed_models=[str(tmp_path / "data")])
    cfg = body(CWI, student={"text_model": "bert-base-uncased"})
    cfg["teachers"][0]["image_model"] = "/etc"
    r = client.post("/jobs/train", json=cfg)
    assert r.status_code == 422
    locs = [tuple(e["loc"]) for e in r.json()["detail"]]
    assert locs == [("body", "student", "text_model"), ("body", "teachers", 0, "image_model")]
    assert "LUGPI_ALLOWED_MODELS" in r.json()["detail"][0]["msg"]


def test_submit_list_and_cancel_queued_jobs(make_client: MakeClient, redis_url: str) -> None:
    """With Redis and no worker running, jobs wait queued; a cancelled one never starts."""
    client = make_client(redis_url=redis_url)
    ids = []
    for _ in range(3):
        r = client.post("/jobs/train", json=body(CWI))
        assert r.status_code == 202, r.text
        ids.append(r.json()["job_id"])
        assert r.json()["status_url"].endswith(f"/jobs/{ids[-1]}")
    job = client.get(f"/jobs/{ids[0]}").json()
    assert job["state"] == "queued" and job["config"]["data"]["train"].startswith("/")
    page = client.get("/jobs", params={"limit": 2}).json()
    assert page["total"] == 3 and [j["job_id"] for j in page["jobs"]] == ids[::-1][:2]
    r = client.post(f"/jobs/{ids[1]}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    assert client.get(f"/jobs/{ids[1]}").json()["state"] == "cancelled"
    assert client.get(f"/jobs/{'f' * 32}").status_code == 404
    assert client.get("/jobs/not-an-id").status_code == 422


def test_admin_key_required_when_keys_are_configured(make_client: MakeClient) -> None:
    client = make_client(api_keys=["user-key"], admin_keys=["admin-key"])
    assert client.get("/jobs").status_code == 401
    assert client.get("/jobs", headers={"X-API-Key": "user-key"}).status_code == 403
    r = client.get("/jobs", headers={"X-API-Key": "admin-key"})
    assert r.status_code == 200 and r.json()["total"] == 0  # embedded store, empty


def test_redis_down_answers_503_quickly(make_client: MakeClient) -> None:
    client = make_client(redis_url="redis://127.0.0.1:1/0")
    started = time.monotonic()
    for method, url, payload in [
        ("GET", "/jobs", None),
        ("GET", f"/jobs/{'a' * 32}", None),
        ("POST", "/jobs/train", body(CWI)),
        ("POST", f"/jobs/{'a' * 32}/cancel", None),
    ]:
        r = client.request(method, url, json=payload)
        assert r.status_code == 503, (url, r.text)
        assert "Redis" in r.json()["detail"] and "unreachable" in r.json()["detail"]
    assert time.monotonic() - started < 20
    assert client.get("/healthz").status_code == 200


def test_tgt_settings_are_checked_like_the_rest_of_the_job(
    make_client: MakeClient, redis_url: str
) -> None:
    """Teacher Guided Training through POST /jobs/train: the tgt and text_generator sections
    are part of the body; ranges, the text generator and its cache pass the same checks."""
    client = make_client(redis_url=redis_url)
    r = client.post("/jobs/train", json=body(CWI, tgt={"enabled": True, "k": 0, "weight": 500}))
    assert r.status_code == 422
    locs = {tuple(e["loc"]) for e in r.json()["detail"]}
    assert {("body", "tgt", "k"), ("body", "tgt", "weight")} <= locs
    cfg = body(
        CWI,
        tgt={"enabled": True, "modes": ["augment"]},
        text_generator={"model": "/etc", "cache_dir": "/tmp"},
    )
    r = client.post("/jobs/train", json=cfg)
    assert r.status_code == 422
    locs = {tuple(e["loc"]) for e in r.json()["detail"]}
    assert locs == {("body", "text_generator", "model"), ("body", "text_generator", "cache_dir")}
    good = body(
        CWI,
        tgt={"enabled": True, "k": 2, "modes": ["augment"]},
        text_generator={"model": "tiny-bbc-masked"},
    )
    r = client.post("/jobs/train", json=good)
    assert r.status_code == 202, r.text
    job = client.get(r.json()["status_url"]).json()
    assert job["config"]["tgt"]["enabled"] is True and job["config"]["tgt"]["k"] == 2


def test_amalgamate_jobs_take_teachers_from_the_artifacts_root_only(
    make_client: MakeClient, redis_url: str, tmp_path: Path
) -> None:
    """The data-free StrataNet mode through POST /jobs/train: no data.train, teachers that
    are run directories under the artifacts root (or allowed models); anything else is a
    422 naming the teacher's field."""
    client = make_client(redis_url=redis_url)
    earlier = tmp_path / "artifacts" / "runs" / "earlier-job"
    earlier.mkdir(parents=True)
    cfg: dict[str, Any] = {
        "name": "strata-job",
        "student": {"text_model": "all-minilm-l6-v2"},
        "text_generator": {"model": "tiny-bbc-masked"},
        "strata": {
            "enabled": True,
            "teachers": [
                {"name": "a", "model": "runs/earlier-job"},
                {"name": "b", "model": "/etc"},
            ],
        },
    }
    r = client.post("/jobs/train", json=cfg)
    assert r.status_code == 422
    assert [tuple(e["loc"]) for e in r.json()["detail"]] == [
        ("body", "strata", "teachers", 1, "model")
    ]
    cfg["strata"]["teachers"] = cfg["strata"]["teachers"][:1]
    r = client.post("/jobs/train", json=cfg)
    assert r.status_code == 202, r.text
    job = client.get(r.json()["status_url"]).json()
    assert job["config"]["strata"]["teachers"][0]["model"] == str(earlier.resolve())
