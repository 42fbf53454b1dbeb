"""Admin routes over a model's versions: pin the default, unpin, roll back, delete one,
promote one the publish gate held back.

Each change is made in the repository by ``contracts.model_versions`` (under the model's
lock, atomically), then this model is rescanned at once so that the answer, and the
next request, already see it. Other API processes on the same repository see it at
their next rescan (LUGPI_POLL_INTERVAL_S).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

from fastapi import APIRouter

from api.auth import AUTH_RESPONSES, AdminAccess
from api.deps import RegistryDep, SettingsDep
from api.errors import ModelNotFound
from api.registry import ModelRegistry
from api.routes.models import describe
from api.schemas import ModelInfo, PinRequest, error_responses
from contracts import model_versions
from contracts.bundle import VERSION_PATTERN

router = APIRouter(
    prefix="/models",
    tags=["models"],
    dependencies=[AdminAccess],
    responses={
        **AUTH_RESPONSES,
        **error_responses(
            s400="The change is refused (unknown or broken version, the pinned or last "
            "version, a read-only repository); the detail says why.",
            s404="No such model.",
        ),
    },
)


async def _change(registry: ModelRegistry, name: str, change: Callable[[], object]) -> ModelInfo:
    if name not in registry.snapshot.present:
        raise ModelNotFound(f"unknown model {name!r}; models: {sorted(registry.snapshot.present)}")
    await asyncio.to_thread(change)
    snap = await asyncio.to_thread(registry.refresh, name)
    return describe(snap, name, admin=True)


@router.put("/{name}/default")
async def pin_default(
    name: str, body: PinRequest, registry: RegistryDep, settings: SettingsDep
) -> ModelInfo:
    """Serve ``version`` when a request names none, even after newer versions are published."""
    repo = settings.model_repository
    return await _change(
        registry, name, lambda: model_versions.pin_version(repo, name, body.version)
    )


@router.delete("/{name}/default")
async def unpin_default(name: str, registry: RegistryDep, settings: SettingsDep) -> ModelInfo:
    """Forget the pin: the newest version is the default again."""
    repo = settings.model_repository
    return await _change(registry, name, lambda: model_versions.unpin(repo, name))


@router.post("/{name}/rollback")
async def roll_back(name: str, registry: RegistryDep, settings: SettingsDep) -> ModelInfo:
    """Pin the newest version older than the current default."""
    repo = settings.model_repository
    return await _change(registry, name, lambda: model_versions.rollback(repo, name))


@router.delete("/{name}/versions/{version}")
async def delete_version(
    name: str, version: str, registry: RegistryDep, settings: SettingsDep
) -> ModelInfo:
    """Delete one version (not the pinned one, not the last valid one)."""
    if not re.match(VERSION_PATTERN, version):
        raise ModelNotFound(f"invalid version {version!r}: expected v1, v2, ...")
    repo = settings.model_repository
    return await _change(registry, name, lambda: model_versions.delete_version(repo, name, version))


@router.post("/{name}/versions/{version}/promote")
async def promote_version(
    name: str, version: str, registry: RegistryDep, settings: SettingsDep
) -> ModelInfo:
    """Lift the publish gate's hold on a version: it is served as the default when it is the
    newest servable one (pinning serves it without lifting the hold)."""
    if not re.match(VERSION_PATTERN, version):
        raise ModelNotFound(f"invalid version {version!r}: expected v1, v2, ...")
    repo = settings.model_repository
    return await _change(registry, name, lambda: model_versions.promote(repo, name, version))
