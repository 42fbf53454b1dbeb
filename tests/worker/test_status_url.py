"""``status_url`` of an accepted job does not reflect the request's Host header (issue 27
item 11): it is relative (``/jobs/<id>``), resolved by the client against the URL it
called, so a forged Host cannot point a client elsewhere."""

from __future__ import annotations

from tests.worker.test_job_routes import CWI, MakeClient, body, make_client  # noqa: F401


def test_status_url_is_relative_whatever_the_host(make_client: MakeClient, redis_url: str) -> None:  # noqa: F811
    client = make_client(redis_url=redis_url)
    r = client.post("/jobs/train", json=body(CWI), headers={"Host": "evil.example:1234"})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    assert r.json()["status_url"] == f"/jobs/{job_id}"
    assert client.get(r.json()["status_url"]).json()["job_id"] == job_id
