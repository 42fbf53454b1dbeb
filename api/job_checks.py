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
- a hub revision (``generator.revision``, ``text_generator.revision``) is a reference
  the hub's owners can move: it must be a pinned commit (40 hex digits), or be allowed
  with its model, as ``<model>@<revision>`` in ``settings.allowed_models``.
- every field that holds a hub reference is listed once, in ``HUB_FIELDS``, and
  ``hub_references`` turns a config into the references its job will load; the model
  and revision rules above run over that list only. A test walks the config schema so
  that a new such field cannot be added without joining the list.
- ``generator.cache_dir`` (where the worker *writes*) must lie under ``artifacts_dir``.
- the StrataNet mode (``strata.enabled``) loads its teachers, not the LUGPI ones:
  each ``strata.teachers[].model`` must be a directory under ``artifacts_dir`` (a run
  directory of an earlier job, or a student directory in one), resolved like the data
  paths, or an allowed model; ``strata.seed_texts`` is a data path. The image
  generator and ``teachers[]`` are not loaded then, so they are not checked.
- ``tgt.teacher`` (the TGT students' teacher, when TGT runs) is ``pipeline`` (the job's
  own teachers) or follows the rule of ``strata.teachers[].model``: a directory under
  ``artifacts_dir`` (a run directory, a teacher or classifier directory in one) or an
  allowed model.

Each failure is one FastAPI-shaped 422 item whose ``loc`` names the field.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from fastapi.exceptions import RequestValidationError

from api.settings import ApiSettings
from contracts.config import LATENT_MODES, TGT_PIPELINE_TEACHER, PipelineConfig, is_saved_dataset
from contracts.model_names import BUILTIN_MODELS as BUILTIN_MODEL_NAMES

# Names that load only what ships with the code (contracts/model_names.py).
BUILTIN_MODELS = BUILTIN_MODEL_NAMES
DATA_FIELDS = ("train", "dev", "test", "unlabelled")
PINNED_COMMIT = re.compile(r"^[0-9a-f]{40}$")


Loc = tuple[str | int, ...]
_R = TypeVar("_R")

# Every config field that holds a hub model id, as a dotted path with ``[]`` for list
# items, with the field holding its hub revision (or None); HUB_FIELDS: all of them.
HUB_MODELS: dict[str, str | None] = {
    "student.text_model": None,
    "generator.model": "generator.revision",
    "text_generator.model": "text_generator.revision",
    "teachers[].text_model": None,
    "teachers[].image_model": None,
    "tgt.latent_model": None,  # the built-in name, a local directory or a hub seq2seq model
}
HUB_FIELDS = frozenset(HUB_MODELS) | {rev for rev in HUB_MODELS.values() if rev is not None}
# A run directory under the artifacts root, or an allowed model: a rule of its own.
STRATA_TEACHER_FIELD = "strata.teachers[].model"
TGT_TEACHER_FIELD = "tgt.teacher"  # the same rule; its value 'pipeline' loads nothing new
ARTIFACT_OR_MODEL_FIELDS = frozenset({STRATA_TEACHER_FIELD, TGT_TEACHER_FIELD})


@dataclass(frozen=True)
class HubReference:
    loc: Loc
    model: str
    revision: str | None


def _loaded(cfg: PipelineConfig, path: str) -> bool:
    """Whether the job loads what ``path`` names: the StrataNet mode loads neither the
    image generator nor the LUGPI teachers; the text generator loads there and in TGT's
    masked-LM baselines ('augment*'), the latent generator (``tgt.latent_model``) in TGT's
    latent modes and in StrataNet's learned steering (``strata.steering.method: learned``,
    or ``compare``)."""
    section = path.split(".", 1)[0]
    strata = cfg.strata.enabled
    tgt = cfg.tgt.enabled and not strata
    if section in ("generator", "teachers[]"):
        return not strata
    if section == "text_generator":
        return strata or (tgt and any(m.startswith("augment") for m in cfg.tgt.modes))
    if section == "tgt":
        s = cfg.strata.steering
        learned = strata and s.enabled and (s.method == "learned" or s.compare)
        return learned or (tgt and any(m in LATENT_MODES for m in cfg.tgt.modes))
    return True


def hub_references(cfg: PipelineConfig) -> list[HubReference]:
    """Every hub reference of ``HUB_MODELS`` the job will load, with where it is."""
    refs: list[HubReference] = []
    for path, revision_path in HUB_MODELS.items():
        if not _loaded(cfg, path):
            continue
        section, field = path.split(".")
        owners: list[tuple[Loc, Any]]
        if section.endswith("[]"):
            items = getattr(cfg, section[:-2])
            owners = [((section[:-2], i, field), item) for i, item in enumerate(items)]
        else:
            owners = [((section, field), getattr(cfg, section))]
        for loc, owner in owners:
            revision = getattr(owner, revision_path.split(".")[-1]) if revision_path else None
            refs.append(HubReference(loc, getattr(owner, field), revision))
    return refs


def _error(loc: tuple[str | int, ...], msg: str) -> dict[str, Any]:
    return {"type": "value_error", "loc": ("body", *loc), "msg": msg}


# Linux's limits: a path component (NAME_MAX) and a whole path (PATH_MAX), in bytes.
NAME_MAX, PATH_MAX = 255, 4096


def local_path(value: str) -> Path:
    """``value`` as a path, ``~`` expanded; ``ValueError`` for what the OS cannot look up
    (an unknown user's home, a component or path over the OS limits) instead of the
    ``RuntimeError`` or ``OSError`` that would answer 500."""
    if len(value.encode()) > PATH_MAX or any(
        len(part.encode()) > NAME_MAX for part in Path(value).parts
    ):
        raise ValueError(
            f"is longer than the OS allows ({NAME_MAX} bytes a component, {PATH_MAX} a path)"
        )
    try:
        return Path(value).expanduser()
    except RuntimeError as e:  # ~user of a user that does not exist
        raise ValueError(f"names a home directory that does not exist ({e})") from e


def _under(path: Path, roots: list[Path]) -> bool:
    return any(path.is_relative_to(root) for root in roots)


def _os_errors_as_value_errors(lookup: Callable[[str, _R], Path]) -> Callable[[str, _R], Path]:
    """An OS refusal of a lookup (a path too long once joined to its root...) is the
    client's path at fault: a ``ValueError`` saying so, not a 500."""

    @functools.wraps(lookup)
    def checked(value: str, root: _R) -> Path:
        try:
            return lookup(value, root)
        except OSError as e:
            raise ValueError(f"cannot be looked up: {e.strerror}") from e

    return checked


@_os_errors_as_value_errors
def resolve_data_path(value: str, roots: list[Path]) -> Path:
    """The real file (or save_to_disk directory) ``value`` names under ``roots``;
    ``ValueError`` saying why not. Never a hub id: a job reads local data only."""
    given = local_path(value)
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


@_os_errors_as_value_errors
def resolve_artifact_dir(value: str, artifacts_dir: Path) -> Path:
    """The real directory ``value`` names under the artifacts root (relative: to it);
    ``ValueError`` saying why not."""
    given = local_path(value)
    if ".." in given.parts:
        raise ValueError("must not contain '..'")
    root = Path(artifacts_dir).resolve()
    real = (given if given.is_absolute() else root / given).resolve()
    if not real.is_relative_to(root):
        raise ValueError(f"is not under the artifacts dir {root}")
    if real == root:
        raise ValueError("is the artifacts dir itself; name a run directory under it")
    if not real.is_dir():
        raise ValueError(f"is no directory under the artifacts dir {root}")
    return real


def model_allowed(value: str, settings: ApiSettings) -> bool:
    if value in BUILTIN_MODELS or value in settings.allowed_models:
        return True
    try:
        path = local_path(value)
        if not path.exists():
            return False
        real = path.resolve()
    except (ValueError, OSError):
        return False
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

    strata = cfg.strata.enabled
    teacher_updates: dict[int, str] = {}
    seed_texts: str | None = None
    if strata:
        a = cfg.strata
        for i, at in enumerate(a.teachers):
            if model_allowed(at.model, settings):
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
    tgt_teacher: str | None = None
    source = cfg.tgt.teacher
    elsewhere = cfg.tgt.enabled and not strata and source != TGT_PIPELINE_TEACHER
    if elsewhere and not model_allowed(source, settings):
        try:
            tgt_teacher = str(resolve_artifact_dir(source, settings.artifacts_dir))
        except ValueError as e:
            errors.append(
                _error(
                    ("tgt", "teacher"),
                    f"tgt.teacher {source!r} {e}; or name 'pipeline' or an allowed model "
                    "(LUGPI_ALLOWED_MODELS)",
                )
            )
    for ref in hub_references(cfg):
        name = ".".join(str(x) for x in ref.loc)
        if not model_allowed(ref.model, settings):
            errors.append(
                _error(
                    ref.loc,
                    f"{name} {ref.model!r} is not an allowed model; allowed: "
                    f"{sorted(BUILTIN_MODELS | set(settings.allowed_models))} "
                    "(LUGPI_ALLOWED_MODELS)",
                )
            )
        revision = ref.revision
        if revision is None or PINNED_COMMIT.match(revision):
            continue
        if f"{ref.model}@{revision}" not in settings.allowed_models:
            section = ref.loc[0]
            errors.append(
                _error(
                    (section, "revision"),
                    f"{section}.revision {revision!r} is not a pinned commit (40 hex digits) "
                    f"and {ref.model}@{revision} is not in LUGPI_ALLOWED_MODELS; "
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
        artifacts = Path(settings.artifacts_dir).resolve()
        try:
            cache = local_path(value)
        except ValueError:
            cache = Path("..")  # refused below like any path outside the artifacts dir
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
    if strata:
        a = cfg.strata
        teachers = [
            t.model_copy(update={"model": teacher_updates[i]}) if i in teacher_updates else t
            for i, t in enumerate(a.teachers)
        ]
        update["strata"] = a.model_copy(
            update={"teachers": teachers, "seed_texts": seed_texts or a.seed_texts}
        )
    if tgt_teacher is not None:
        update["tgt"] = cfg.tgt.model_copy(update={"teacher": tgt_teacher})
    return cfg.model_copy(update=update)
