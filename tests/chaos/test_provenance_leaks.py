"""Weakness guarded (issue 27 item 6): with no key, ``GET /models`` showed
``"t1: /srv/lugpi/artifacts/runs/<job_id>/student-effnet"`` for amalgamated bundles: the
teachers were stored as ``name: <absolute path>``, and the public view shortened only
values that were themselves paths. Every provenance field, as each kind of bundle writes
it (the LUGPI pipeline, TGT, StrataNet amalgamation, a plain export), with local paths
and job ids in every value: the public view names no path and no job id; admins see all."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from contracts.bundle import MANIFEST, Provenance, public_reference
from contracts.repository import publish
from tests.api.conftest import MakeClient

JOB = "0123456789abcdef0123456789abcdef"
ROOT = "/srv/lugpi/artifacts"


def _kinds(tmp: str) -> dict[str, dict[str, object]]:
    """The provenance of each kind of bundle, as training/pipeline.py and
    training/strata/mode.py write it, with local paths wherever a value may hold one."""
    config = {"data": {"train": f"{tmp}/data/train.csv"}, "name": "x"}
    lugpi = {
        "job_id": JOB,
        "dataset": f"{tmp}/data/train.csv",
        "config": config,
        "generator": f"{tmp}/models/sd-turbo",
        "teachers": [f"t: {tmp}/models/minilm + {tmp}/models/effnet", "u: bert-base + vit"],
        "student_base_model": f"{tmp}/models/minilm",
        "student": "per-teacher",
        "selected_student": "student",
    }
    return {
        "lugpi": lugpi,
        "tgt": {**lugpi, "text_generator": f"{tmp}/models/gpt", "tgt": {"k": 4}},
        "strata": {
            "job_id": JOB,
            "dataset": None,
            "config": config,
            "mode": "strata",
            "text_generator": "tiny-bbc-masked",
            "teachers": [f"t1: {ROOT}/runs/{JOB}/student-effnet", f"t2: {ROOT}/runs/{JOB}"],
            "student_base_model": "all-minilm-l6-v2",
        },
        "export": {"dataset": f"{tmp}/data"},
    }


def _leaks(text: str, tmp: str) -> list[str]:
    found = [p for p in (tmp, ROOT, "/srv/", "/models/", "/runs/") if p in text]
    return found + re.findall(r"[0-9a-f]{32}", text)


def test_public_reference_keeps_names_and_drops_paths_and_job_ids() -> None:
    assert public_reference("bert-base-uncased") == "bert-base-uncased"
    assert public_reference("openai/clip-vit-base-patch32") == "openai/clip-vit-base-patch32"
    assert public_reference(f"{ROOT}/runs/{JOB}/student-effnet") == "student-effnet"
    assert public_reference(f"t1: {ROOT}/runs/{JOB}/student-effnet") == "t1: student-effnet"
    assert public_reference(f"t2: {ROOT}/runs/{JOB}") == "t2: (a local run)"
    assert public_reference("t: /m/minilm + /m/effnet") == "t: minilm + effnet"


@pytest.mark.parametrize("kind", ["lugpi", "tgt", "strata", "export"])
def test_every_provenance_field_of_every_kind_of_bundle_is_public_safe(
    make_client: MakeClient, tmp_path: Path, random_bundles: dict[str, Path], kind: str
) -> None:
    repo = tmp_path / "prov-repo"
    _, version_dir = publish(random_bundles["single"], repo, "m")
    provenance = _kinds(str(tmp_path))[kind]
    data = json.loads((version_dir / MANIFEST).read_text())
    data["provenance"] = Provenance.model_validate(provenance).model_dump(mode="json")
    (version_dir / MANIFEST).write_text(json.dumps(data))
    client = make_client(model_repository=repo, admin_keys=["admin-key"])
    for path in ("/models", "/models/m", "/v1/models", "/v2/models/m", "/info?model=m"):
        r = client.get(path)
        assert r.status_code == 200, (path, r.text)
        assert _leaks(r.text, str(tmp_path)) == [], (path, r.text[:800])
    public = client.get("/models/m").json()["versions"][0]["provenance"]
    for field in ("dataset", "generator", "teachers", "student_base_model"):
        if provenance.get(field):
            assert public.get(field), field  # shown, shortened: not dropped
    admin = client.get("/models/m", headers={"X-API-Key": "admin-key"}).json()
    assert admin["versions"][0]["provenance"].get("job_id") == provenance.get("job_id")
