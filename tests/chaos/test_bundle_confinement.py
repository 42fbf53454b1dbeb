"""Weakness guarded: bundle.json could name files outside its bundle directory
(``../../../etc/hostname``) and ``verify_bundle`` hashed them, and /models showed the hash
prefix. Every listed file must resolve inside the bundle; a symlink out is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from contracts.bundle import MANIFEST, sha256_file, verify_bundle
from contracts.errors import ArtifactError
from tests.api.conftest import MakeClient


def _copy(bundle: Path, dest: Path) -> Path:
    shutil.copytree(bundle, dest)
    return dest


def _list(bundle: Path, name: str, target: Path) -> None:
    data = json.loads((bundle / MANIFEST).read_text())
    data["files"][name] = sha256_file(target)
    (bundle / MANIFEST).write_text(json.dumps(data))


@pytest.mark.parametrize("listed", ["../outside.txt", "../../outside.txt", "/etc/hostname"])
def test_random_listed_file_outside_the_bundle_is_refused(
    random_bundles: dict[str, Path], tmp_path: Path, listed: str
) -> None:
    bundle = _copy(random_bundles["single"], tmp_path / "a" / "bundle")
    outside = tmp_path / "a" / "outside.txt"
    outside.write_text("not part of the bundle")
    target = Path(listed) if listed.startswith("/") else bundle / listed
    if not target.exists():
        target = outside
    _list(bundle, listed, target)
    with pytest.raises(ArtifactError, match="outside the bundle"):
        verify_bundle(bundle)


def test_random_symlink_out_of_the_bundle_is_refused(
    random_bundles: dict[str, Path], tmp_path: Path
) -> None:
    bundle = _copy(random_bundles["single"], tmp_path / "bundle")
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    (bundle / "extra.txt").symlink_to(secret)
    _list(bundle, "extra.txt", secret)
    with pytest.raises(ArtifactError, match="outside the bundle"):
        verify_bundle(bundle)
    # the tokenizer replaced by a link to a copy elsewhere: same refusal
    real = tmp_path / "tokenizer.json"
    shutil.move(bundle / "tokenizer.json", real)
    (bundle / "tokenizer.json").symlink_to(real)
    (bundle / "extra.txt").unlink()
    data = json.loads((bundle / MANIFEST).read_text())
    del data["files"]["extra.txt"]
    (bundle / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="outside the bundle"):
        verify_bundle(bundle)


def test_random_api_refuses_a_crafted_bundle_and_shows_no_hash(
    make_client: MakeClient, repository: Path, tmp_path: Path
) -> None:
    crafted = _copy(repository / "sentiment" / "v1", repository / "crafted" / "v1")
    data = json.loads((crafted / MANIFEST).read_text())
    data["name"] = "crafted"
    (crafted / MANIFEST).write_text(json.dumps(data))
    hostname = Path("/etc/hostname")
    target = hostname if hostname.is_file() else tmp_path / "x"
    if not target.exists():
        target.write_text("x")
    _list(crafted, "../../../../../../../../.." + str(target), target)
    client = make_client(admin_keys=["admin-key"])
    (version,) = client.get("/models/crafted").json()["versions"]
    assert version["status"] == "failed" and version["error_code"] == "bundle_invalid"
    digest = sha256_file(target)
    assert digest[:12] not in client.get("/models/crafted").text
    admin = client.get("/models/crafted", headers={"X-API-Key": "admin-key"}).json()
    assert "outside the bundle" in admin["versions"][0]["error_detail"]
    assert digest[:12] not in str(admin)
