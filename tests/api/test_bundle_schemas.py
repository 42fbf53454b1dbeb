"""Bundles of schema 1 (graphs with probabilities only, published before logits were
exported) keep loading and serving next to schema 2 ones; raw scores from them are a
clear 4xx naming the field. Both made from RANDOM-weight tiny models."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import onnx
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import ApiSettings
from contracts.bundle import MANIFEST, ONNX_LOGITS, read_manifest, sha256_file, verify_bundle
from contracts.repository import publish


def as_schema_1(bundle: Path, out: Path, drop_version_field: bool) -> Path:
    """The bundle as an older export wrote it: no logits output, schema 1 (or no
    schema_version at all, as the first bundles had)."""
    shutil.copytree(bundle, out)
    manifest = json.loads((out / MANIFEST).read_text())
    for name in list(manifest["files"]):
        if name.endswith(".onnx"):
            model = onnx.load(str(out / name))
            keep = [o for o in model.graph.output if o.name != ONNX_LOGITS]
            del model.graph.output[:]
            model.graph.output.extend(keep)
            onnx.save(model, str(out / name))
            manifest["files"][name] = sha256_file(out / name)
    manifest.pop("logits_output")
    if drop_version_field:
        manifest.pop("schema_version")
    else:
        manifest["schema_version"] = 1
    (out / MANIFEST).write_text(json.dumps(manifest))
    verify_bundle(out)
    return out


@pytest.fixture
def mixed_client(random_bundles: dict[str, Path], tmp_path: Path) -> Iterator[TestClient]:
    repo = tmp_path / "repo"
    single = random_bundles["single"]
    publish(as_schema_1(single, tmp_path / "old", drop_version_field=False), repo, "old")
    publish(as_schema_1(single, tmp_path / "oldest", drop_version_field=True), repo, "oldest")
    publish(single, repo, "new")
    settings = ApiSettings(model_repository=repo, poll_interval_s=0, intra_op_threads=1)
    with TestClient(create_app(settings)) as client:
        yield client


def test_random_schema_1_and_2_bundles_are_read(random_bundles: dict[str, Path]) -> None:
    manifest = read_manifest(random_bundles["single"])
    assert (manifest.schema_version, manifest.logits_output) == (2, ONNX_LOGITS)


@pytest.mark.parametrize("name", ["old", "oldest"])
def test_random_schema_1_bundles_serve_probabilities_and_refuse_raw_scores(
    mixed_client: TestClient, name: str
) -> None:
    r = mixed_client.post("/classify", json={"texts": ["a film"], "model": name})
    assert r.status_code == 200, r.text
    assert (
        mixed_client.post("/predict", params={"model": name}, json={"inputs": "a film"}).status_code
        == 200
    )
    raw = mixed_client.post(
        "/predict", params={"model": name}, json={"inputs": "a film", "raw_scores": True}
    )
    assert raw.status_code == 422 and raw.json()["error"].startswith("raw_scores:")
    hf = mixed_client.post(
        "/", params={"model": name},
        json={"inputs": "a film", "parameters": {"function_to_apply": "none"}},
    )  # fmt: skip
    assert hf.status_code == 422 and "parameters.function_to_apply" in hf.json()["error"]
    meta = mixed_client.get(f"/v2/models/{name}").json()
    assert [o["name"] for o in meta["outputs"]] == ["probabilities"]
    new_meta = mixed_client.get("/v2/models/new").json()
    assert [o["name"] for o in new_meta["outputs"]] == ["probabilities", "logits"]


def test_random_manifest_with_logits_but_schema_1_is_refused(
    random_bundles: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "bad"
    shutil.copytree(random_bundles["single"], out)
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["schema_version"] = 1
    (out / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(Exception, match="logits_output is a schema 2 field"):
        read_manifest(out)
