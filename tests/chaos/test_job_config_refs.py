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
