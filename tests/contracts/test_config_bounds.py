"""Every number and every list of the training config has an upper bound in the schema
itself (issue 27 item 8: ``hidden_size=1e12``, ``fusion_heads=1e9``, ``seed=1e30`` and
2,000 teachers were accepted; one job tried to allocate 3 PB). The bounds live in
``contracts/config.py``, so ``POST /jobs/train`` and the command line refuse the same."""

from __future__ import annotations

import types
import typing
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from contracts.config import PipelineConfig, parse_config
from contracts.errors import ConfigError


def _walk(model: type[BaseModel], prefix: str = "") -> list[tuple[str, Any, list[Any]]]:
    """(dotted path, annotation, constraint metadata) of every field, recursively."""
    out = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        out += _walk_annotation(path, info.annotation, list(info.metadata))
    return out


def _walk_annotation(path: str, ann: Any, meta: list[Any]) -> list[tuple[str, Any, list[Any]]]:
    origin = typing.get_origin(ann)
    if origin is typing.Annotated:
        base, *extra = typing.get_args(ann)
        more = [m for e in extra for m in (e.metadata if isinstance(e, FieldInfo) else [e])]
        return _walk_annotation(path, base, meta + more)
    if origin in (typing.Union, types.UnionType):
        out = []
        for arg in typing.get_args(ann):
            if arg is not type(None):
                out += _walk_annotation(path, arg, meta)
        return out
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return _walk(ann, path + ".")
    out = [(path, ann, meta)]
    if origin in (list, dict):
        *_, item = typing.get_args(ann)
        out += _walk_annotation(path + "[]", item, [])
    return out


def _has(meta: list[Any], *names: str) -> bool:
    return any(getattr(m, n, None) is not None for m in meta for n in names)


FIELDS = _walk(PipelineConfig)


def test_every_number_has_an_upper_bound() -> None:
    numbers = [(p, meta) for p, ann, meta in FIELDS if ann in (int, float)]
    assert len(numbers) > 30
    unbounded = [p for p, meta in numbers if not _has(meta, "le", "lt")]
    assert unbounded == []


def test_every_list_and_mapping_has_a_count_bound() -> None:
    collections = [(p, meta) for p, ann, meta in FIELDS if typing.get_origin(ann) in (list, dict)]
    assert collections
    unbounded = [p for p, meta in collections if not _has(meta, "max_length")]
    assert unbounded == []


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("teachers.0.hidden_size", 10**12),
        ("teachers.0.fusion_heads", 10**9),
        ("seed", 10**30),
    ],
)
def test_huge_numbers_are_refused_by_the_schema(key: str, value: int) -> None:
    raw: dict[str, Any] = {"data": {"train": "t.csv"}, "teachers": [{"name": "t"}]}
    section, *rest = key.split(".")
    if rest:
        raw[section][int(rest[0])][rest[1]] = value
    else:
        raw[section] = value
    with pytest.raises(ConfigError, match=key.split(".")[-1]):
        parse_config(raw)


def test_two_thousand_teachers_are_refused() -> None:
    teachers = [{"name": f"t{i}", "model": "x"} for i in range(2000)]
    with pytest.raises(ConfigError, match="teachers"):
        parse_config({"strata": {"enabled": True, "teachers": teachers}})
