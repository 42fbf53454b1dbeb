"""Trust boundary of ``POST /jobs/train``: what a job may read, load and write.

A job body names files and models that a worker will open, so before a job is queued:

- every data path must resolve (symlinks followed) to a file under one of
  ``settings.data_roots``; a path with ``..`` is refused outright. A relative path is
  taken relative to the data roots (the first under which it exists). The stored config
  gets the resolved absolute path, so the worker opens exactly what was checked.
- every model (generator, encoders) must be in ``settings.allowed_models``, or be one of
  the built-in names that load nothing a user controls: the offline aliases that ship on
  PyPI and ``tiny-random`` (built from code). Decision: these are always allowed; an
  allow-list entry that is a directory allows that directory (compared resolved).
- a hub revision (``generator.revision``) is a reference the hub's owners can move: it
  must be a pinned commit (40 hex digits), or be allowed with its model, as
  ``<model>@<revision>`` in ``settings.allowed_models``.
- ``generator.cache_dir`` (where the worker *writes*) must lie under ``artifacts_dir``.
- the StrataNet mode (``strata.enabled``) loads its teachers, not the LUGPI ones:
  each ``strata.teachers[].model`` must be a directory under ``artifacts_dir`` (a run
  directory of an earlier job, or a student directory in one), resolved like the data
  paths, or an allowed model; ``strata.seed_texts`` is a data path. The image
  generator and ``teachers[]`` are not loaded then, so they are not checked.

Each failure is one FastAPI-shaped 422 item whose ``loc`` names the field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fastapi.exceptions import RequestValidationError

from api.settings import ApiSettings
from contracts.config import PipelineConfig, is_saved_dataset
from contracts.model_names import BUILTIN_MODELS as BUILTIN_MODEL_NAMES

# Names that load only what ships with the code (contracts/model_names.py).
BUILTIN_MODELS = BUILTIN_MODEL_NAMES
DATA_FIELDS = ("train", "dev", "test", "unlabelled")
PINNED_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def _error(loc: tuple[str | int, ...], msg: str) -> dict[str, Any]:
    return {"type": "value_error", "loc": ("body", *loc), "msg": msg}


def _under(path: Path, roots: list[Path]) -> bool:
    return any(path.is_relative_to(root) for root in roots)


def resolve_data_path(value: str, roots: list[Path]) -> Path:
    """The real file (or save_to_disk directory) ``value`` names under ``roots``;
    ``ValueError`` saying why not. Never a hub id: a job reads local data only."""
    given = Path(value).expanduser()
    if ".." in given.parts:
        raise ValueError("must not contain '..'; give a path under the data roots")
    real_roots = [r.resolve() for r in roots]
    candidates = [given] if given.is_absolute() else [r / given for r in real_roots]
    for candidate in candidates:
        real = candidate.resolve()  # follows every symlink
        if not _under(real, real_roots):
            if _under(candidate.absolute(), real_roots):
                raise ValueError("is a symlink that leads outside the data roots")
            continue
        if real.is_file() or is_saved_dataset(real):
            return real
    if given.is_absolute() and not _under(given.resolve(), real_roots):
        raise ValueError(f"is outside the data roots {[str(r) for r in roots]} (LUGPI_DATA_ROOTS)")
    raise ValueError(
        f"no such file (or 🤗 datasets save_to_disk directory) under the data roots "
        f"{[str(r) for r in roots]}; hub dataset ids are for the command line only"
    )


def resolve_artifact_dir(value: str, artifacts_dir: Path) -> Path:
    """The real directory ``value`` names under the artifacts root (relative: to it);
    ``ValueError`` saying why not."""
    given = Path(value).expanduser()
    if ".." in given.parts:
        raise ValueError("must not contain '..'")
    root = Path(artifacts_dir).resolve()
    real = (given if given.is_absolute() else root / given).resolve()
    if not real.is_relative_to(root):
        raise ValueError(f"is not under the artifacts dir {root}")
    if not real.is_dir():
        raise ValueError(f"is no directory under the artifacts dir {root}")
    return real


def _model_allowed(value: str, settings: ApiSettings) -> bool:
    if value in BUILTIN_MODELS or value in settings.allowed_models:
        return True
    path = Path(value).expanduser()
    if not path.exists():
        return False
    real = path.resolve()
    return any(
        Path(entry).expanduser().exists() and Path(entry).expanduser().resolve() == real
        for entry in settings.allowed_models
    )


def check_job_config(cfg: PipelineConfig, settings: ApiSettings) -> PipelineConfig:
    """Return the config with data paths resolved; ``RequestValidationError`` (422) naming
    every field that breaks the rules above."""
    errors: list[dict[str, Any]] = []
    data_updates: dict[str, str] = {}
    for field in DATA_FIELDS:
        value = getattr(cfg.data, field)
        if value is None:
            continue
        try:
            data_updates[field] = str(resolve_data_path(value, list(settings.data_roots)))
        except ValueError as e:
            errors.append(_error(("data", field), f"data.{field} {value!r} {e}"))

    amalgamate = cfg.strata.enabled
    models: list[tuple[tuple[str | int, ...], str]] = [
        (("student", "text_model"), cfg.student.text_model),
    ]
    if not amalgamate:
        models += [(("generator", "model"), cfg.generator.model)]
    if cfg.tgt.enabled or amalgamate:  # the text generator loads only in these modes
        models += [(("text_generator", "model"), cfg.text_generator.model)]
    for i, t in enumerate(cfg.teachers if not amalgamate else []):
        models += [(("teachers", i, "text_model"), t.text_model)]
        models += [(("teachers", i, "image_model"), t.image_model)]
    teacher_updates: dict[int, str] = {}
    seed_texts: str | None = None
    if amalgamate:
        a = cfg.strata
        for i, at in enumerate(a.teachers):
            if _model_allowed(at.model, settings):
                continue
            try:
                teacher_updates[i] = str(resolve_artifact_dir(at.model, settings.artifacts_dir))
            except ValueError as e:
                errors.append(
                    _error(
                        ("strata", "teachers", i, "model"),
                        f"strata.teachers[{i}] ({at.name}).model {at.model!r} {e}; or name "
                        "an allowed model (LUGPI_ALLOWED_MODELS)",
                    )
                )
        if a.seed_texts is not None:
            try:
                seed_texts = str(resolve_data_path(a.seed_texts, list(settings.data_roots)))
            except ValueError as e:
                errors.append(_error(("strata", "seed_texts"), f"strata.seed_texts {e}"))
    for loc, value in models:
        if not _model_allowed(value, settings):
            name = ".".join(str(x) for x in loc)
            errors.append(
                _error(
                    loc,
                    f"{name} {value!r} is not an allowed model; allowed: "
                    f"{sorted(BUILTIN_MODELS | set(settings.allowed_models))} "
                    "(LUGPI_ALLOWED_MODELS)",
                )
            )

    revision = None if amalgamate else cfg.generator.revision
    pinned = revision is None or PINNED_COMMIT.match(revision)
    if not pinned and f"{cfg.generator.model}@{revision}" not in settings.allowed_models:
        errors.append(
            _error(
                ("generator", "revision"),
                f"generator.revision {revision!r} is not a pinned commit (40 hex digits) "
                f"and {cfg.generator.model}@{revision} is not in LUGPI_ALLOWED_MODELS; "
                "pin a commit hash or allow the pair",
            )
        )

    caches = (
        ("generator", cfg.generator.cache_dir),
        ("text_generator", cfg.text_generator.cache_dir),
    )
    for section, value in caches:
        if value is None:
            continue
        cache = Path(value).expanduser()
        artifacts = Path(settings.artifacts_dir).resolve()
        if ".." in cache.parts or not cache.resolve().is_relative_to(artifacts):
            errors.append(
                _error(
                    (section, "cache_dir"),
                    f"{section}.cache_dir must lie under the artifacts dir {artifacts}; "
                    "or leave it out (default: inside the job's run dir)",
                )
            )
    if cfg.tracking.uri is not None:
        # A job must not make the worker send its config and metrics to a server of the
        # caller's choosing; the default store lives inside the job's own run dir.
        errors.append(
            _error(
                ("tracking", "uri"),
                "tracking.uri cannot be set by a job; leave it out (MLflow logs into the "
                "job's run dir) or run `lugpi run --set tracking.uri=...` on a worker",
            )
        )
    if errors:
        raise RequestValidationError(errors)
    data = cfg.data.model_copy(update=data_updates)
    update: dict[str, object] = {"data": data}
    if amalgamate:
        a = cfg.strata
        teachers = [
            t.model_copy(update={"model": teacher_updates[i]}) if i in teacher_updates else t
            for i, t in enumerate(a.teachers)
        ]
        update["strata"] = a.model_copy(
            update={"teachers": teachers, "seed_texts": seed_texts or a.seed_texts}
        )
    return cfg.model_copy(update=update)
