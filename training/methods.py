"""The extension point for a distillation method: what it adds to a run.

A method contributes **steps** (stage directories it makes, in order, after the built-in
training stages and before evaluation) and **students** (the student directories those
steps wrote). The pipeline (training/pipeline.py) runs each step unless its directory is
already complete (resume), tracks it like every other stage, then evaluates, reports,
exports and publishes the method's students with everyone else's: one results table,
one provenance, one best-on-dev choice. A method never touches the pipeline's code.

Register a method with ``register_method`` (or, for the length of a ``with`` block,
``registered``); its ``enabled`` decides per config whether it takes part, typically from
its own section of ``cfg.methods``. docs/adding-a-method.md walks through one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from contracts.config import PipelineConfig
from contracts.errors import ConfigError
from contracts.jobs import Stage
from contracts.layout import RunLayout
from training.data.prepare import PreparedData
from training.tracking.progress import RunContext


class Run(Protocol):
    """What a method sees of the run (training.pipeline.Run has it): its pinned config, its
    layout, the prepared data and the progress/cancellation context."""

    @property
    def cfg(self) -> PipelineConfig: ...
    @property
    def layout(self) -> RunLayout: ...
    @property
    def data(self) -> PreparedData: ...
    @property
    def ctx(self) -> RunContext: ...


@dataclass(frozen=True)
class Step:
    """One stage directory a method makes: the pipeline calls ``make()`` only when ``out``
    is not complete, and ``make`` writes ``out`` atomically (``train_text_classifier`` and
    ``contracts.artifacts.atomic_dir`` do)."""

    stage: Stage  # what progress reports and cancellation see it as
    out: Path  # the stage directory, under the run directory
    make: Callable[[], None]


@dataclass(frozen=True)
class MethodStudent:
    """A student a method trained: evaluated, exported and offered for publishing."""

    key: str  # unique in the run: results "student:<key>", bundle export/<key>/
    dir: Path
    teachers: list[str] = field(default_factory=list)  # what it learned from (provenance)


class Method(Protocol):
    name: str

    def enabled(self, cfg: PipelineConfig) -> bool:
        """Whether this config runs the method."""
        ...

    def steps(self, run: Run) -> list[Step]:
        """Its stage directories, in the order they are made."""
        ...

    def students(self, run: Run) -> list[MethodStudent]:
        """The students its steps wrote."""
        ...


_METHODS: dict[str, Method] = {}


def register_method(method: Method) -> None:
    if method.name in _METHODS:
        raise ConfigError(f"a method named {method.name!r} is already registered")
    _METHODS[method.name] = method


def unregister_method(name: str) -> None:
    _METHODS.pop(name, None)


@contextmanager
def registered(method: Method) -> Iterator[Method]:
    """``method`` registered for the length of the block (tests, one-off scripts)."""
    register_method(method)
    try:
        yield method
    finally:
        unregister_method(method.name)


def enabled_methods(cfg: PipelineConfig) -> list[Method]:
    """The registered methods this config runs, in registration order."""
    return [m for m in _METHODS.values() if m.enabled(cfg)]
