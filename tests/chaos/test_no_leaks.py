"""Weakness guarded: public responses carried internals (absolute paths, onnxruntime
text, dataset paths and job ids from a bundle's provenance). Every public route is walked,
without a key, with broken bundles present; no body may name a path of this machine."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from contracts.bundle import MANIFEST, sha256_file
from contracts.repository import publish
from tests.api.conftest import MakeClient

ADMIN = {"X-API-Key": "admin-key"}


def _rewrite_manifest(version_dir: Path, **changes: object) -> None:
    path = version_dir / MANIFEST
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


@pytest.fixture
def broken_repository(repository: Path, random_bundles: dict[str, Path], tmp_path: Path) -> Path:
    """sentiment/v1 (good, provenance with a dataset path and a job id); corrupt/v1 (a
    sha256 mismatch); garbage/v1 (model.onnx not ONNX, checksums right: onnxruntime's error);
    escape/v1 (lists a file outside the bundle)."""
    good = repository / "sentiment" / "v1"
    provenance = {
        "job_id": "0123456789abcdef0123456789abcdef",
        "dataset": str(tmp_path / "secret-data" / "train.csv"),
        "config": {"data": {"train": str(tmp_path / "secret-data" / "train.csv")}},
    }
    _rewrite_manifest(good, provenance=provenance)
    data = json.loads((good / MANIFEST).read_text())
    # keep sentiment/v1 valid: the manifest is not hashed, only the files it lists
    assert data["provenance"]["job_id"]

    _, corrupt = publish(random_bundles["single"], repository, "corrupt")
    (corrupt / "model.onnx").write_bytes(b"not the model")

    _, garbage = publish(random_bundles["single"], repository, "garbage")
    for name in ("model.onnx", "model.int8.onnx"):
        (garbage / name).write_bytes(b"\x08\x07garbage")
    files = {
        n: sha256_file(garbage / n) for n in json.loads((garbage / MANIFEST).read_text())["files"]
    }
    _rewrite_manifest(garbage, files=files)

    _, escape = publish(random_bundles["single"], repository, "escape")
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    files = json.loads((escape / MANIFEST).read_text())["files"]
    files["../../../outside.txt"] = sha256_file(outside)
    _rewrite_manifest(escape, files=files)
    shutil.rmtree(tmp_path / "secret-data", ignore_errors=True)
    return repository


def _leaks(text: str, tmp_path: Path) -> list[str]:
    roots = {str(tmp_path), str(Path(__file__).resolve().parents[2]), "/tmp/", "site-packages"}
    found = [r for r in roots if r in text]
    found += re.findall(r"ONNXRuntimeError|INVALID_PROTOBUF|Protobuf parsing", text)
    found += re.findall(r"0123456789abcdef0123456789abcdef", text)
    return found


def _public_requests(client: TestClient) -> list[tuple[str, str, object | None]]:
    reqs: list[tuple[str, str, object | None]] = [
        ("GET", "/healthz", None),
        ("GET", "/readyz", None),
        ("GET", "/metrics", None),
        ("GET", "/models", None),
        ("GET", "/", None),
    ]
    for name in ("sentiment", "corrupt", "garbage", "escape", "cwi", "nope"):
        reqs.append(("GET", f"/models/{name}", None))
        reqs.append(("POST", "/classify", {"texts": ["a"], "model": name}))
    reqs += [
        ("POST", "/classify", {"texts": ["a"], "model": "sentiment", "version": "v9"}),
        ("POST", "/classify", {"texts": ["a"], "model": "cwi"}),
        ("POST", "/classify", {"texts": [""]}),
        ("POST", "/classify", b"\xff\xfe not json"),
        ("POST", "/models/corrupt/reload", None),
        ("GET", "/jobs", None),
        ("POST", "/classify/teacher", {"texts": ["a"], "model": "sentiment"}),
    ]
    return reqs


def test_random_public_routes_name_no_paths(
    make_client: MakeClient, broken_repository: Path, tmp_path: Path
) -> None:
    client = make_client(admin_keys=["admin-key"], default_model="sentiment")
    for method, path, body in _public_requests(client):
        if isinstance(body, bytes):
            r = client.request(method, path, content=body)
        else:
            r = client.request(method, path, json=body)
        assert r.status_code < 500, (method, path, r.status_code, r.text[:300])
        assert _leaks(r.text, tmp_path) == [], (method, path, r.text[:600])


def test_random_failed_versions_say_why_in_short_and_admins_see_details(
    make_client: MakeClient, broken_repository: Path, tmp_path: Path
) -> None:
    client = make_client(admin_keys=["admin-key"], default_model="sentiment")
    public = {m["name"]: m for m in client.get("/models").json()["models"]}
    for name in ("corrupt", "garbage", "escape"):
        (version,) = public[name]["versions"]
        assert version["status"] == "failed"
        assert version["error_code"] in ("bundle_invalid", "load_failed")
        assert version["error"] and version.get("error_detail") is None
    admin = {m["name"]: m for m in client.get("/models", headers=ADMIN).json()["models"]}
    assert "model.onnx" in admin["corrupt"]["versions"][0]["error_detail"]
    assert admin["sentiment"]["versions"][0]["provenance"]["job_id"]
    provenance = public["sentiment"]["versions"][0]["provenance"]
    assert "job_id" not in provenance and "config" not in provenance
    assert provenance["dataset"] == "train.csv"
