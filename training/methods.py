"""The extension point for a distillation method: what it adds to a run.

A method contributes **steps** (stage directories it makes; every method's steps run in
stage order, before evaluation) and **students** (the student directories those steps
wrote). LUGPI (training/lugpi/method.py), TGT (training/tgt/method.py) and StrataNet
(training/strata/method.py) are methods like any other. The pipeline
(training/pipeline.py) runs each step unless its directory is already complete
(resume), tracks it like every other stage, then evaluates, reports, exports and
publishes the method's students with everyone else's: one results table, one
provenance, one best-on-dev choice. A method never touches the pipeline's code.

Register a method with ``register_method`` (or, for the length of a ``with`` block,
``registered``); its ``enabled`` decides per config whether it takes part, typically from
its own section of ``cfg.methods``. docs/adding-a-method.md walks through one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from contracts.artifacts import ImageIndex
from contracts.config import PipelineConfig
from contracts.errors import ConfigError
from contracts.jobs import Stage
from contracts.layout import RunLayout
from training.data.prepare import PreparedData, prepare_data
from training.generation.generate_images import generate_images
from training.sharding import ShardStrategy
from training.tracking.progress import RunContext


class Run(Protocol):
    """What a method sees of the run (training.pipeline.Run has it): its pinned config, its
    layout, the prepared data and the progress/cancellation context; the images and image
    tokens of the generate stage; how sharded work is spread. ``student_data`` and
    ``student_images`` are what the students learn from: the same, except that with
    ``tgt.student_train_samples`` their train split is that subset (teachers: ``data``)."""

    @property
    def cfg(self) -> PipelineConfig: ...
    @property
    def layout(self) -> RunLayout: ...
    @property
    def data(self) -> PreparedData: ...
    @property
    def student_data(self) -> PreparedData: ...
    @property
    def student_images(self) -> ImageIndex: ...
    @property
    def ctx(self) -> RunContext: ...
    @property
    def images(self) -> ImageIndex: ...
    @property
    def token_store(self) -> Path: ...
    @property
    def shards(self) -> ShardStrategy: ...


@dataclass(frozen=True)
class Step:
    """One stage directory a method makes: the pipeline calls ``make()`` only when ``out``
    is not complete, and ``make`` writes ``out`` atomically (``train_text_classifier`` and
    ``contracts.artifacts.atomic_dir`` do).

    The pipeline runs the steps of every enabled method in the order of their ``stage``
    (``contracts.jobs.STAGE_ORDER``, so job progress only moves forward): a step may use
    what every step of an earlier stage made. Steps of one stage run in method
    registration order, a method's own in its order; two methods listing the same ``out``
    (the shared data stages) make it once."""

    stage: Stage  # what progress reports and cancellation see it as
    out: Path  # the stage directory, under the run directory
    make: Callable[[], None]
    # The `lugpi` stage command that makes it on its own (Run.make); default: the stage.
    command: str = ""
    label: str = ""  # what it makes, for `--name` (a teacher's name); default: none
    # Files, not training: under torchrun one process makes it (training steps run on
    # every rank, which train together).
    main_only: bool = False
    part: tuple[float, float] = (0.0, 1.0)  # its share of its stage, for job progress

    @property
    def name(self) -> str:
        return self.command or self.stage.value


@dataclass(frozen=True)
class MethodStudent:
    """A model a method trained: evaluated, and (``exported``) exported and offered for
    publishing."""

    key: str  # unique in the run: bundle export/<key>/
    dir: Path
    teachers: list[str] = field(default_factory=list)  # what it learned from (provenance)
    # Its row in evaluate/results.json (default "student:<key>"); its metrics key in the
    # bundle is the same with "-" for the first ":" ("student-<key>").
    results_key: str = ""
    exported: bool = True  # False: a reference model (the baseline), scored only

    @property
    def results(self) -> str:
        return self.results_key or f"student:{self.key}"

    @property
    def metrics_key(self) -> str:
        return self.results.replace(":", "-", 1)


@dataclass(frozen=True)
class MethodReport:
    """What a method adds to the one results report and the one provenance (optional:
    ``Method.report``)."""

    teachers: list[Path] = field(default_factory=list)  # teacher dirs scored beside students
    notes: list[str] = field(default_factory=list)  # markdown under the results table
    provenance: dict[str, object] = field(default_factory=dict)  # into every bundle's


class Method(Protocol):
    """A distillation method. Optional: ``report(run) -> MethodReport`` (what it adds to
    the results report and the bundles' provenance; read through ``method_report``)."""

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


@runtime_checkable
class BringsItsOwnTexts(Protocol):
    """A method that trains on no prepared data (StrataNet) and so brings the texts its
    students are scored on, and the rows of models the shared evaluation cannot load. The
    pipeline evaluates, exports and publishes its students like every other's; it runs
    alone (the run has one set of evaluation texts)."""

    def own_texts(self, run: Run) -> PreparedData:
        """Labelled "dev" and/or "test" splits over its students' labels (none: nothing is
        evaluated), and, without "dev", unlabelled "check" texts for export's checks."""
        ...

    def extra_results(self, run: Run, data: PreparedData) -> dict[str, dict[str, object]]:
        """Results rows it scores itself on ``data``: key ("teacher:<name>", ...) -> entry
        with a ``classification_report`` per split, merged into results.json."""
        ...


def method_report(method: Method, run: Run) -> MethodReport:
    """``method.report(run)``, or an empty report for a method without one."""
    report: Callable[[Run], MethodReport] | None = getattr(method, "report", None)
    return report(run) if report is not None else MethodReport()


def data_steps(run: Run) -> list[Step]:
    """The shared data stages, for a method that trains on the prepared data: prepare, and
    generate (the images) when a teacher reads images."""
    cfg, layout = run.cfg, run.layout

    def prepare() -> None:
        prepare_data(cfg, layout.data, run.ctx)

    steps = [Step(Stage.PREPARE, layout.data, prepare, main_only=True)]
    if any(t.modality != "text" for t in cfg.teachers):

        def images() -> None:
            generate_images(cfg, run.data, layout.images, run.ctx, strategy=run.shards)

        steps.append(Step(Stage.GENERATE, layout.images, images, main_only=True))
    return steps


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
