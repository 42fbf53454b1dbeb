"""GET /models, GET /models/{name}, POST /models/{name}/reload (admin)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from api.auth import AUTH_RESPONSES, AdminAccess, IsAdmin
from api.deps import RegistryDep
from api.execution import Plan
from api.registry import LoadedModel, Snapshot, version_number
from api.residency import MB
from api.schemas import (
    ExecutionInfo,
    ModelInfo,
    ModelList,
    ReloadResponse,
    VersionInfo,
    error_responses,
)
from contracts.bundle import public_reference
from contracts.errors import ModelNotFound

router = APIRouter(prefix="/models", tags=["models"])
# What callers without an admin key see of a bundle's provenance: model names, never the
# job id, the config or a path of this machine (a local path shows as its last part, a
# run directory as "(a local run)": contracts.bundle.public_reference), in any value.
PUBLIC_PROVENANCE = (
    "dataset",
    "generator",
    "teachers",
    "student_base_model",
    # How the student learned (loss and dev metrics per epoch), drawn by the web page.
    "training_curves",
)


def _public_name(value: object) -> object:
    if isinstance(value, str):
        return public_reference(value)
    if isinstance(value, list):
        return [_public_name(v) for v in value]
    return value


def public_provenance(provenance: dict[str, object]) -> dict[str, object]:
    return {k: _public_name(provenance[k]) for k in PUBLIC_PROVENANCE if provenance.get(k)}


def execution_info(plan: Plan) -> ExecutionInfo:
    curve = plan.curve
    table: dict[str, dict[str, float]] | None = None
    if curve is not None:
        table = {
            f"{length} tokens": {f"b{b}": round(ms, 3) for b, ms in costs.items()}
            for length, costs in curve.per_text_ms.items()
        }
        table["batch 1"] = {
            "one thread": round(curve.b1_one_thread_ms, 3),
            f"{curve.cores} threads": round(curve.b1_all_cores_ms, 3),
            f"{curve.cores} threads spinning": round(curve.b1_all_cores_spinning_ms, 3),
        }
        table["one-thread call"] = {
            "fixed": round(curve.call_ms, 4),
            "per padded token": round(curve.token_ms, 5),
        }
    return ExecutionInfo(
        instances=plan.instances,
        intra_op_threads=plan.threads,
        spinning=plan.spinning,
        batch_cap=plan.batch_cap,
        lone_session=plan.lone_session,
        why=plan.why,
        cost_curve_ms=table,
    )


def _loaded_info(
    model: LoadedModel, is_default: bool, admin: bool, held: str | None = None, warm: bool = False
) -> VersionInfo:
    m = model.manifest
    provenance = m.provenance.model_dump()
    return VersionInfo(
        version=model.version,
        status="loaded",
        is_default=is_default,
        labels=m.labels,
        max_length=m.max_length,
        text_pair=m.text_pair,
        variant=model.classifier.variant,
        provider=model.classifier.provider,
        created_at=m.created_at,
        metrics={
            k: {s: v.model_dump() for s, v in splits.items()} for k, splits in m.metrics.items()
        },
        provenance=provenance if admin else public_provenance(provenance),
        score_temperature=m.score_temperature,
        held=held,
        memory_mb=round(model.memory_bytes / MB, 1),
        execution=execution_info(model.plan),
        warm=warm,
    )


def describe(snap: Snapshot, name: str, admin: bool = False) -> ModelInfo:
    """Every version of a model on disk, newest first, with its status."""
    loaded = snap.models.get(name, {})
    latest = snap.latest(name)
    versions: list[VersionInfo] = []
    for version in snap.present.get(name, []):
        is_default = latest is not None and latest.version == version
        failure = snap.failures.get((name, version))
        if version in loaded:
            held = snap.held.get(name, {}).get(version)
            warm = snap.warm.get(name) == version
            versions.append(_loaded_info(loaded[version], is_default, admin, held, warm))
        elif failure is not None:
            versions.append(
                VersionInfo(
                    version=version,
                    status="failed",
                    is_default=False,
                    error_code=failure.code,
                    error=failure.reason,
                    error_detail=failure.error if admin else None,
                )
            )
        else:
            versions.append(
                VersionInfo(
                    version=version,
                    status="available",
                    is_default=False,
                    held=snap.held.get(name, {}).get(version),
                )
            )
    versions.sort(key=lambda v: version_number(v.version), reverse=True)
    return ModelInfo(
        name=name,
        is_default=snap.default_model == name,
        default_version=latest.version if latest else None,
        pinned_version=snap.pinned.get(name),
        versions=versions,
    )


def _known(registry: RegistryDep, name: str) -> Snapshot:
    snap = registry.snapshot
    if name not in snap.present:
        raise ModelNotFound(f"unknown model {name!r}; models: {sorted(snap.present)}")
    return snap


@router.get("")
async def list_models(registry: RegistryDep, admin: IsAdmin) -> ModelList:
    """Every model in the repository: versions, labels, metrics, status, the defaults.
    With an admin key: full load errors and provenance too."""
    snap = registry.snapshot
    models = [describe(snap, n, admin) for n in sorted(snap.present)]
    return ModelList(default_model=snap.default_model, models=models)


@router.get("/{name}", responses=error_responses(s404="Unknown model; lists the known ones."))
async def get_model(name: str, registry: RegistryDep, admin: IsAdmin) -> ModelInfo:
    """One model: its versions (newest first), which is the default, and load errors."""
    return describe(_known(registry, name), name, admin)


@router.post(
    "/{name}/reload",
    dependencies=[AdminAccess],
    responses={**AUTH_RESPONSES, **error_responses(s404="No such model in the repository.")},
)
async def reload_model(name: str, registry: RegistryDep) -> ReloadResponse:
    """Rescan this model's directory now (admins): load new versions, drop removed ones.

    A version that fails to load is reported here and never replaces a loaded one.
    """
    snap = await asyncio.to_thread(registry.refresh, name)
    info = describe(snap, name, admin=True)
    return ReloadResponse(
        model=info,
        loaded=[v.version for v in info.versions if v.status == "loaded"],
        failed=[v for v in info.versions if v.status == "failed"],
    )
