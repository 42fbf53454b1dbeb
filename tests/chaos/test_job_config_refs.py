"""Weakness guarded: ``generator.revision`` (a free-form hub reference) bypassed the model
allow-list: an allowed model id with any branch, tag or PR ref of the hub (whatever
someone pushed there) was accepted. A revision must now be a pinned commit hash, or be
allowed together with its model (``model@revision`` in LUGPI_ALLOWED_MODELS)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.exceptions import RequestValidationError

from api.job_checks import check_job_config
from api.settings import ApiSettings
from contracts.config import PipelineConfig

COMMIT = "1e128c8891e52218b74cde8f26dbfc701cb99d79"


def _config(data: Path, **generator: Any) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "name": "refs",
            "data": {"train": str(data)},
            "generator": {"model": "stabilityai/stable-diffusion-2", **generator},
            "teachers": [
                {"name": "t", "text_model": "all-minilm-l6-v2", "image_model": "efficientnet-lite0"}
            ],
            "student": {"text_model": "all-minilm-l6-v2"},
        }
    )


@pytest.fixture
def data(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    f = tmp_path / "data" / "train.csv"
    f.write_text("text,label\na,b\n")
    return f


def _settings(tmp_path: Path, *allowed: str) -> ApiSettings:
    models = ["stabilityai/stable-diffusion-2", *allowed]
    return ApiSettings(data_roots=[tmp_path / "data"], allowed_models=models)


@pytest.mark.parametrize("revision", ["main", "refs/pr/1", "v1.0", "../../etc", "1e128c8"])
def test_unpinned_revisions_are_refused(data: Path, tmp_path: Path, revision: str) -> None:
    with pytest.raises(RequestValidationError) as e:
        check_job_config(_config(data, revision=revision), _settings(tmp_path))
    (err,) = e.value.errors()
    assert err["loc"] == ("body", "generator", "revision")
    assert "LUGPI_ALLOWED_MODELS" in err["msg"] and "commit" in err["msg"]


def test_pinned_or_allowed_revisions_pass(data: Path, tmp_path: Path) -> None:
    check_job_config(_config(data, revision=COMMIT), _settings(tmp_path))
    check_job_config(_config(data), _settings(tmp_path))
    allowed = _settings(tmp_path, "stabilityai/stable-diffusion-2@fp16")
    check_job_config(_config(data, revision="fp16"), allowed)
    other = _settings(tmp_path, "someone/else@fp16")
    with pytest.raises(RequestValidationError):
        check_job_config(_config(data, revision="fp16"), other)


# --- every hub reference through one check (issue 27 item 7) ------------------------------
# ``text_generator.revision = "refs/pr/1"`` with tgt.enabled was accepted and reached
# from_pretrained(revision=...): only generator.revision was checked.

# Config fields that mention the hub but are not models the job loads from it: data paths
# are local files only (resolve_data_path refuses hub dataset ids), split names are words.
NOT_HUB_MODELS = {"data.train", "data.hf_splits"}


def _config_fields(model: type[Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Every leaf field of the config schema as a dotted path (``[]`` for list items)."""
    from pydantic import BaseModel

    out: list[tuple[str, Any]] = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        ann = info.annotation
        inner = (
            getattr(ann, "__args__", (None,))[0]
            if getattr(ann, "__origin__", None) is list
            else None
        )
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += _config_fields(ann, path + ".")
        elif isinstance(inner, type) and issubclass(inner, BaseModel):
            out += _config_fields(inner, path + "[].")
        else:
            out.append((path, info))
    return out


def test_the_hub_reference_table_names_every_field_that_holds_one() -> None:
    """A new field naming a model or revision (or mentioning the hub) fails this test until
    it is added to ``api.job_checks.HUB_FIELDS``, and so goes through the one check."""
    from api.job_checks import ARTIFACT_OR_MODEL_FIELDS, HUB_FIELDS

    found = {
        path
        for path, info in _config_fields(PipelineConfig)
        if path.rsplit(".", 1)[-1].endswith(("model", "revision"))
        or "hub" in (info.description or "").lower()
    }
    assert found - NOT_HUB_MODELS == set(HUB_FIELDS) | ARTIFACT_OR_MODEL_FIELDS


def _enable_section(raw: dict[str, Any], path: str) -> None:
    if path.startswith("text_generator."):
        # The text generator loads in TGT's masked-LM baseline (and StrataNet).
        raw["tgt"] = {"enabled": True, "modes": ["augment"]}
    if path.startswith("tgt."):
        raw["tgt"] = {"enabled": True, "modes": ["sampling"]}  # the latent generator loads


@pytest.mark.parametrize("path", ["student.text_model", "generator.model", "text_generator.model",
                                  "teachers[].text_model", "teachers[].image_model",
                                  "tgt.latent_model"])  # fmt: skip
def test_every_hub_model_field_is_checked(data: Path, tmp_path: Path, path: str) -> None:
    raw = _config(data).model_dump()
    _enable_section(raw, path)
    section, field = path.split(".")
    target = raw["teachers"][0] if section == "teachers[]" else raw[section]
    target[field] = "someone/not-allowed"
    with pytest.raises(RequestValidationError) as e:
        check_job_config(PipelineConfig.model_validate(raw), _settings(tmp_path))
    locs = [err["loc"] for err in e.value.errors()]
    want = ("body", *(("teachers", 0, field) if section == "teachers[]" else (section, field)))
    assert want in locs


@pytest.mark.parametrize("section", ["generator", "text_generator"])
@pytest.mark.parametrize("revision", ["main", "refs/pr/1"])
def test_every_hub_revision_field_is_checked(
    data: Path, tmp_path: Path, section: str, revision: str
) -> None:
    raw = _config(data).model_dump()
    raw["text_generator"]["model"] = "distilbert-base-uncased"
    _enable_section(raw, f"{section}.revision")
    raw[section]["revision"] = revision
    allowed = _settings(tmp_path, "distilbert-base-uncased")
    with pytest.raises(RequestValidationError) as e:
        check_job_config(PipelineConfig.model_validate(raw), allowed)
    (err,) = e.value.errors()
    assert err["loc"] == ("body", section, "revision")
    assert "commit" in err["msg"] and "LUGPI_ALLOWED_MODELS" in err["msg"]
    raw[section]["revision"] = COMMIT
    check_job_config(PipelineConfig.model_validate(raw), allowed)


# --- paths that made the admin route answer 500 (issue 27 item 8) -------------------------
# ``~nosuchuser/...`` raised RuntimeError in expanduser; a 300-character component raised
# OSError (ENAMETOOLONG) in resolve/exists. Each is now a 422 naming the field.
HOSTILE_PATHS = ["~nosuchuser/train.csv", "x" * 300 + "/train.csv", "a/" + "y" * 300]


@pytest.mark.parametrize("value", HOSTILE_PATHS)
@pytest.mark.parametrize(
    "where",
    ["data.train", "student.text_model", "generator.cache_dir", "strata.teachers",
     "strata.seed_texts"],
)  # fmt: skip
def test_hostile_paths_are_a_422_naming_the_field(
    data: Path, tmp_path: Path, where: str, value: str
) -> None:
    raw = _config(data).model_dump()
    section, field = where.split(".")
    if section == "strata":
        raw["strata"] = {"enabled": True, "teachers": [{"name": "t", "model": "runs/x"}]}
        raw["text_generator"]["model"] = "tiny-bbc-masked"
        if field == "teachers":
            raw["strata"]["teachers"][0]["model"] = value
        else:
            raw["strata"][field] = value
    else:
        raw[section][field] = value
    settings = ApiSettings(
        data_roots=[tmp_path / "data"],
        artifacts_dir=tmp_path / "artifacts",
        allowed_models=["stabilityai/stable-diffusion-2"],
    )
    with pytest.raises(RequestValidationError) as e:
        check_job_config(PipelineConfig.model_validate(raw), settings)
    locs = [err["loc"][1:3] for err in e.value.errors()]
    assert (section, field) in locs, e.value.errors()


@pytest.mark.parametrize("value", [".", "", "runs/..", "./"])
def test_the_artifacts_root_itself_is_no_amalgamation_teacher(tmp_path: Path, value: str) -> None:
    artifacts = tmp_path / "artifacts"
    (artifacts / "runs").mkdir(parents=True)
    settings = ApiSettings(data_roots=[tmp_path], artifacts_dir=artifacts, allowed_models=[])
    body = {
        "student": {"text_model": "all-minilm-l6-v2"},
        "text_generator": {"model": "tiny-bbc-masked"},
        "strata": {"enabled": True, "teachers": [{"name": "t", "model": value}]},
    }
    for teacher in (value, str(artifacts), str(artifacts) + "/"):
        body["strata"]["teachers"][0]["model"] = teacher  # type: ignore[index]
        with pytest.raises(RequestValidationError) as e:
            check_job_config(PipelineConfig.model_validate(body), settings)
        assert e.value.errors()[0]["loc"] == ("body", "strata", "teachers", 0, "model")
