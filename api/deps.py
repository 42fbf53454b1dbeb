"""Dependencies as ``Annotated`` aliases: a route names what it needs by type.

The objects live on ``app.state`` (set once by ``create_app``), so every app built in
one process (tests) has its own. The getters are ``async def`` although they never
await: FastAPI runs a plain ``def`` dependency in a worker thread, and those thread
hops cost more than the rest of a /classify request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.metrics import ApiMetrics
from api.registry import ModelRegistry
from api.settings import ApiSettings


async def get_settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


async def get_registry(request: Request) -> ModelRegistry:
    registry: ModelRegistry = request.app.state.registry
    return registry


async def get_metrics(request: Request) -> ApiMetrics:
    metrics: ApiMetrics = request.app.state.metrics
    return metrics


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
MetricsDep = Annotated[ApiMetrics, Depends(get_metrics)]
