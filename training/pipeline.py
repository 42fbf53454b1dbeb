"""A run: the steps every enabled method contributes, in stage order, resumable; then
one evaluation, one export and one publish for every method's students.

    [steps of LUGPI, TGT, StrataNet, added methods: prepare -> generate -> teacher(s) ->
     tgt -> baseline -> distill + TGT students ...] -> evaluate -> export -> publish

The methods (training/methods.py) say what is made; this module only runs it. Run
directory: ``contracts.layout.RunLayout`` (every stage dir is atomic: complete with
``stage.json`` or absent). Every student is evaluated and exported (``export/<key>/`` is
its bundle); ``export/stage.json`` names the one with the best dev accuracy, which is
what the run publishes under ``export.name``.

A stage whose directory is complete is skipped, so rerunning after a crash or a
cancellation resumes where it stopped. ``config.yaml`` pins the config of the run: a
rerun with a config that would change the results is refused. Publishing comes last
and only after every stage succeeded, so a failed or cancelled run publishes nothing.

This module imports no torch (``lugpi --help`` and ``lugpi presets`` start without it):
the few imports of torch-side modules below are inside the functions that need them.
"""

from __future__ import annotations

import functools
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from contracts.artifacts import (
    atomic_dir,
    is_complete,
    read_stage,
    write_json_atomic,
    write_stage_record,
    write_text_atomic,
)
from contracts.bundle import read_manifest
from contracts.config import TGT_PIPELINE_TEACHER, PipelineConfig
from contracts.errors import ArtifactError, ConfigError
from contracts.jobs import STAGE_ORDER, Stage
from contracts.layout import RunLayout
from contracts.repository import publish as publish_bundle
from training import distributed
from training.data.prepare import (
    PreparedData,
    load_prepared,
    student_train_rows,
    student_view,
)
from training.export.score_temperature import results_section, write_results_section
from training.generation.generate_images import ImageIndex, load_image_index
from training.methods import (
    BringsItsOwnTexts,
    Method,
    MethodStudent,
    Step,
    enabled_methods,
    method_report,
)
from training.sharding import InProcess, ShardStrategy
from training.tracking.experiments import Tracker, software_provenance
from training.tracking.progress import RunContext

if TYPE_CHECKING:
    from training.export.publish_gate import GateSplit

# Settings that change how fast a stage runs or where it publishes, never what it makes.
_NOT_RESULT_AFFECTING = {
    "device",
    "generator.batch_size",
    "generator.num_shards",
    "generator.cache_dir",
    "text_generator.batch_size",
    "text_generator.num_shards",
    "text_generator.cache_dir",
    "export.publish",
    # Whether a weak int8 model fails the export or ships fp32 only: a policy, not a result of
    # any stage before export, so a run stopped by the int8 check can be finished with it.
    "export.require_int8",
    # Whether the bundle is published as the default, held or not at all: decided after
    # every stage, from their results (training/export/publish_gate.py).
    "publish_gate.metric",
    "publish_gate.split",
    "publish_gate.minimum",
    "publish_gate.max_drop",
    "publish_gate.majority_margin",
    "publish_gate.on_fail",
    # Where the run is reported, not what it computes.
    "tracking.mlflow",
    "tracking.uri",
    "tracking.experiment",
}


@dataclass
class PipelineResult:
    run_dir: Path
    metrics: dict[str, Any]  # model -> split -> {"accuracy", "macro_f1", "n"}
    bundle_dir: Path | None
    published: tuple[str, str] | None  # (name, version)
    # The publish gate's decision (training/export/publish_gate.py GateDecision), None if not run.
    gate: dict[str, Any] | None = None


def resolve_paths(cfg: PipelineConfig, base: Path) -> PipelineConfig:
    """Make data and cache paths absolute (against ``base``), so a run resumes from anywhere.
    With ``data.format: hf`` a source that is no local path is a hub dataset id: kept as is."""

    def absolute(p: str | None) -> str | None:
        return None if p is None else str((base / Path(p).expanduser()).resolve())

    def data_source(p: str | None) -> str | None:
        if p is not None and cfg.data.format == "hf" and not (base / Path(p).expanduser()).exists():
            return p
        return absolute(p)

    d = cfg.data
    data = d.model_copy(
        update={k: data_source(getattr(d, k)) for k in ("train", "dev", "test", "unlabelled")}
    )
    gen = cfg.generator.model_copy(update={"cache_dir": absolute(cfg.generator.cache_dir)})
    tg = cfg.text_generator
    text_gen = tg.model_copy(update={"cache_dir": absolute(tg.cache_dir)})
    a = cfg.strata

    def model_path(m: str) -> str:
        # A teacher given as a local path (it exists here) is pinned absolute; a hub id stays.
        return str((base / Path(m).expanduser()).resolve()) if (base / m).exists() else m

    strata = a.model_copy(
        update={
            "seed_texts": absolute(a.seed_texts),
            "teachers": [t.model_copy(update={"model": model_path(t.model)}) for t in a.teachers],
        }
    )
    # tgt.teacher as a local path (a run, teacher or classifier directory) is pinned too.
    t = cfg.tgt.teacher
    tgt = cfg.tgt.model_copy(update={"teacher": t if t == TGT_PIPELINE_TEACHER else model_path(t)})
    return cfg.model_copy(
        update={
            "data": data,
            "generator": gen,
            "text_generator": text_gen,
            "strata": strata,
            "tgt": tgt,
        }
    )


@functools.cache
def builtin_methods() -> tuple[Method, ...]:
    """LUGPI, TGT and StrataNet, in this order (before any registered method)."""
    # torch: the methods train models; imported on first use so the CLI starts without it.
    from training.lugpi.method import Lugpi
    from training.strata.method import StrataNet
    from training.tgt.method import Tgt

    return (Lugpi(), Tgt(), StrataNet())


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            flat |= _flatten(v, f"{prefix}{k}.")
        else:
            flat[f"{prefix}{k}"] = v
    return flat


def _current_schema(pinned: dict[str, Any]) -> dict[str, Any]:
    """A pinned config read through today's schema, so that a field added since then (at
    its default, e.g. teachers[].modality) does not count as a change."""
    try:
        return PipelineConfig.model_validate(pinned).model_dump(mode="json")
    except ValidationError:  # a field removed or renamed since: compare as written
        return pinned


class Run:
    """One run directory: the layout, the pinned config, and the steps of every enabled
    method (training/methods.py), each made unless its directory is complete; then the
    one evaluation, export and publish of every method's students."""

    def __init__(
        self,
        cfg: PipelineConfig,
        run_dir: Path,
        ctx: RunContext,
        shards: ShardStrategy | None = None,
    ) -> None:
        self.cfg, self.dir, self.ctx = cfg, Path(run_dir), ctx
        self.layout = RunLayout(self.dir)
        # How sharded work (images, texts) is run: here, one after another, by default.
        self.shards = shards or InProcess()
        self._data: PreparedData | None = None
        self._student_data: PreparedData | None = None
        self._images: ImageIndex | None = None
        self._eval_data: PreparedData | None = None

    # -- layout -----------------------------------------------------------------------------
    @property
    def token_store(self) -> Path:
        """Frozen image-encoder tokens, beside the images they encode (shared with them)."""
        # torch (image_tokens encodes images): imported here so the CLI starts without it.
        from training.teachers.image_tokens import TOKEN_STORE_DIR

        return self.layout.image_cache(self.cfg.generator.cache_dir) / TOKEN_STORE_DIR

    def pin_config(self) -> None:
        """Write config.yaml, or check the one there; refuse a result-changing difference."""
        distributed.on_main(self._pin_config)

    def _pin_config(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.layout.config
        new = self.cfg.model_dump(mode="json")
        if path.is_file():
            old = _current_schema(yaml.safe_load(path.read_text()) or {})
            a, b = _flatten(old), _flatten(new)
            changed = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
            blocking = [k for k in changed if k not in _NOT_RESULT_AFFECTING]
            if blocking:
                raise ConfigError(
                    f"{path}: this run dir was made with a different config ({', '.join(blocking)}"
                    "); use a new --run-dir, or delete the run dir to start over"
                )
            if not changed:
                return
        write_text_atomic(path, yaml.safe_dump(new, sort_keys=False))

    def _skip(self, stage: Stage, out: Path, force: bool) -> bool:
        if is_complete(out) and not force:
            self.ctx.step(stage, 1, 1, f"{out.name}: already complete, skipped")
            return True
        # Under torchrun every rank of a training stage gets here; one deletes.
        if force and out.exists() and distributed.world().is_main:
            shutil.rmtree(out)
        return False

    # -- inputs of the steps ------------------------------------------------------------------
    @property
    def data(self) -> PreparedData:
        if self._data is None:
            self._data = load_prepared(self.layout.data)
        return self._data

    @property
    def student_data(self) -> PreparedData:
        """The prepared data the students see (``tgt.student_train_samples``: its train
        split is that stratified subset; the teachers train on ``data``)."""
        if self._student_data is None:
            self._student_data = student_view(self.cfg, self.data)
        return self._student_data

    @property
    def student_images(self) -> ImageIndex:
        """``images`` aligned with ``student_data``."""
        rows = student_train_rows(self.cfg, self.data)
        images = self.images
        if rows is None or not images.get("train"):
            return images
        train = images["train"]
        return {**images, "train": [train[i] for i in rows]}

    @property
    def reads_images(self) -> bool:
        """False when every teacher is text-only: then no image is drawn or read."""
        return any(t.modality != "text" for t in self.cfg.teachers)

    @property
    def images(self) -> ImageIndex:
        if self._images is None:
            reads = self.reads_images
            self._images = load_image_index(self.layout.images) if reads else {}
        return self._images

    # -- the steps ----------------------------------------------------------------------------
    def methods(self) -> list[Method]:
        """The built-in methods this config runs, then the registered ones."""
        builtin = [m for m in builtin_methods() if m.enabled(self.cfg)]
        return [*builtin, *enabled_methods(self.cfg)]

    def steps(self) -> list[Step]:
        """Every enabled method's steps in stage order (training/methods.py ``Step``), a
        directory listed by several methods once."""
        seen: set[Path] = set()
        steps = []
        for method in self.methods():
            for step in method.steps(self):
                if step.out not in seen:
                    seen.add(step.out)
                    steps.append(step)
        return sorted(steps, key=lambda s: STAGE_ORDER.index(s.stage))  # stable

    def make(
        self, command: str | None = None, force: bool = False, labels: list[str] | None = None
    ) -> list[Path]:
        """Make every step (or those of one ``lugpi`` stage ``command``; of those, with
        ``labels``, only the ones making these names) unless complete; return their dirs."""
        steps = [s for s in self.steps() if command is None or s.name == command]
        if labels is not None:
            known = list(dict.fromkeys(s.label for s in steps if s.label))
            if unknown := [n for n in labels if n not in known]:
                raise ConfigError(f"unknown {command} name(s) {unknown}; the config has {known}")
            steps = [s for s in steps if s.label in labels]
        for step in steps:
            self._make(step, force)
        return [s.out for s in steps]

    def _make(self, step: Step, force: bool) -> None:
        self.ctx.stage_part = step.part

        def make() -> None:
            if not self._skip(step.stage, step.out, force):
                step.make()

        if step.main_only:
            distributed.on_main(make)
        else:
            make()
        self.ctx.stage_part = (0.0, 1.0)

    def brings_its_own_texts(self) -> BringsItsOwnTexts | None:
        """The enabled method that trains on no prepared data, if any (it runs alone)."""
        methods = self.methods()
        own = [m for m in methods if isinstance(m, BringsItsOwnTexts)]
        if own and len(methods) > 1:
            names = [m.name for m in methods]
            raise ConfigError(f"method {own[0].name} runs alone; this config enables {names}")
        return own[0] if own else None

    @property
    def eval_data(self) -> PreparedData:
        """The texts every student is scored and checked on: the prepared data, or those
        of a method that brings its own."""
        if self._eval_data is None:
            own = self.brings_its_own_texts()
            self._eval_data = own.own_texts(self) if own is not None else self.data
        return self._eval_data

    def students(self) -> list[MethodStudent]:
        """Every model the enabled methods trained, in method order (a key used twice is
        refused)."""
        out: dict[str, MethodStudent] = {}
        for method in self.methods():
            for s in method.students(self):
                if s.key in out or any(s.results == o.results for o in out.values()):
                    raise ConfigError(f"method {method.name}: student key {s.key!r} is taken")
                out[s.key] = s
        return list(out.values())

    # -- the one evaluation, export and publish --------------------------------------------------
    def evaluate(self, force: bool = False) -> Path:
        out = self.layout.evaluate
        distributed.on_main(lambda: self._evaluate(out, force))
        return out

    def _evaluate(self, out: Path, force: bool) -> None:
        if self._skip(Stage.EVALUATE, out, force):
            return
        data, own = self.eval_data, self.brings_its_own_texts()
        if not any(data.splits.get(s) for s in ("dev", "test")):
            self.ctx.step(Stage.EVALUATE, 1, 1, "no dev or test texts; nothing evaluated")
            return
        # torch: the evaluate stage runs models; imported here so the CLI starts without it.
        from training.evaluation.evaluate import evaluate

        reports = [method_report(m, self) for m in self.methods()]
        teachers = list(dict.fromkeys(d for r in reports for d in r.teachers))
        evaluate(
            self.cfg,
            data,
            self.images if own is None else {},
            teachers,
            {},
            None,
            out,
            self.ctx,
            token_store=self.token_store,
            models={s.results: s.dir for s in self.students()},
            notes=[n for r in reports for n in r.notes],
            scored=own.extra_results(self, data) if own is not None else None,
        )

    def metrics(self) -> dict[str, dict[str, dict[str, float]]]:
        """evaluate/results.json as bundle metrics: model -> split -> accuracy, macro_f1, n.
        Students are ``student-<key>``."""
        # torch (beside the constant): imported here so the CLI starts without it.
        from training.evaluation.evaluate import RESULTS_FILE

        path = self.layout.evaluate / RESULTS_FILE
        if not path.is_file():  # nothing to evaluate on (a method's own texts had none)
            return {}
        results = json.loads(path.read_text())
        out: dict[str, dict[str, dict[str, float]]] = {}
        for model, entry in results["models"].items():
            name = model.replace(":", "-", 1)
            for split in ("dev", "test"):
                if isinstance(entry.get(split), dict):
                    m = entry[split]
                    out.setdefault(name, {})[split] = {
                        k: m[k] for k in ("accuracy", "macro_f1", "n")
                    }
        return out

    def export_candidates(self) -> dict[str, tuple[Path, list[str], str]]:
        """Student key -> (its directory, the teachers it learned from, its metrics key):
        every exported student of the enabled methods, in method order."""
        return {s.key: (s.dir, s.teachers, s.metrics_key) for s in self.students() if s.exported}

    def best_student(self) -> str:
        """The key of the student with the best dev accuracy (then macro-F1; then method
        order: LUGPI's plan order, then TGT's, then added methods')."""
        metrics = self.metrics()
        candidates = self.export_candidates()
        keys = list(candidates)

        def score(key: str) -> tuple[float, float, int]:
            # Without dev scores (nothing evaluated) the first student is the one.
            dev = metrics.get(candidates[key][2], {}).get("dev", {"accuracy": 0, "macro_f1": 0})
            return dev["accuracy"], dev["macro_f1"], -keys.index(key)

        return max(keys, key=score)

    def export(self, job_id: str | None = None, force: bool = False) -> Path:
        """Export every student; return the bundle of the one to publish."""
        out = self.layout.export
        distributed.on_main(lambda: self._export(out, job_id, force))
        return self.selected_bundle()

    def selected_bundle(self) -> Path:
        """``export/<key>`` of the student the export stage selected."""
        out = self.layout.export
        return out / str(read_stage(out).summary["selected"])

    def _export(self, out: Path, job_id: str | None, force: bool) -> None:
        if self._skip(Stage.EXPORT, out, force):
            return
        # torch, onnx: the export stage converts models; imported here so the CLI starts
        # without them.
        from training.export.bundle import export_student
        from training.students.trainer import loss_record

        cfg, data = self.cfg, self.eval_data
        plan, metrics, selected = self.export_candidates(), self.metrics(), self.best_student()
        by_name = {t.name: t for t in cfg.teachers}
        students = {
            key: {"teachers": names, "dev": metrics.get(mkey, {}).get("dev")}
            for key, (_, names, mkey) in plan.items()
        }
        extra = {k: v for m in self.methods() for k, v in method_report(m, self).provenance.items()}
        has_test = bool(data.splits.get("test"))
        # Export's checks run on dev; a method's own texts without dev bring unlabelled ones.
        check = "dev" if data.splits.get("dev") else "check"
        labelled = all(ex.label is not None for ex in data.splits[check])
        started = time.perf_counter()
        with atomic_dir(out, Stage.EXPORT.value) as tmp:
            for i, (key, (student_dir, names, mkey)) in enumerate(plan.items()):
                self.ctx.step(Stage.EXPORT, i, len(plan), f"exporting student {key} to ONNX")
                provenance = {
                    "job_id": job_id,
                    "dataset": cfg.data.train,
                    "config": cfg.model_dump(mode="json"),
                    "generator": cfg.generator.model,
                    "teachers": [
                        f"{n}: {by_name[n].text_model} + {by_name[n].image_model}"
                        if n in by_name
                        else n  # a method's student may learn from another student
                        for n in names
                    ],
                    "student_base_model": cfg.student.text_model,
                    "student": key,
                    "loss": loss_record(cfg),
                    "students": students,
                    "selected_student": selected,
                    "software": software_provenance(),
                    **extra,
                }
                # This bundle's own student is "student"; the others keep their keys.
                own = {**metrics, "student": metrics[mkey]} if mkey in metrics else None
                export_student(
                    student_dir,
                    tmp / key,
                    data.texts(check),
                    data.pairs(check),
                    data.label_ids(check) if labelled else None,
                    name=cfg.export.name,
                    quantize=cfg.export.quantize,
                    require_int8=cfg.export.require_int8,
                    opset=cfg.export.opset,
                    provenance=provenance,
                    metrics=own,
                    test_texts=data.texts("test") if has_test else None,
                    test_pairs=data.pairs("test") if has_test else None,
                    test_labels=data.label_ids("test") if has_test else None,
                )
            summary: dict[str, object] = {"selected": selected, "students": students}
            write_stage_record(tmp, Stage.EXPORT, time.perf_counter() - started, summary)
        # Score temperature (issue 26): each bundle's T and ECE before/after, in results.md.
        fitted = {key: read_manifest(out / key).score_temperature for key in plan}
        # Without labelled dev/test texts (the data-free StrataNet mode's default) nothing was
        # evaluated and there is no report to add to: the manifests keep the temperatures.
        if self.layout.evaluate.is_dir():
            write_results_section(self.layout.evaluate / "results.md", results_section(fitted))
        self.ctx.step(Stage.EXPORT, len(plan), len(plan), f"exported; publishing {selected}")

    def publish(self, repository: Path, keep_last: int = 5) -> tuple[str, str] | None:
        """Publish the exported bundle once per run dir, keeping the newest ``keep_last``
        versions of its name; return (name, version), or None when the publish gate
        refused it (``publish_gate.on_fail: skip``; ``gate_record`` says why)."""
        distributed.on_main(lambda: self._publish(repository, keep_last))
        done = json.loads(self.layout.published.read_text())
        return (done["name"], done["version"]) if done.get("version") else None

    def gate_record(self) -> dict[str, Any] | None:
        """The publish gate's decision recorded by ``publish`` (None before it ran)."""
        record = self.layout.published
        gate = json.loads(record.read_text()).get("gate") if record.is_file() else None
        return gate if isinstance(gate, dict) else None

    def _publish(self, repository: Path, keep_last: int) -> None:
        # onnxruntime (the gate may score the current default): not needed to start the CLI.
        from training.export.publish_gate import decide

        record = self.layout.published
        if record.is_file():
            done = json.loads(record.read_text())
            was = done["version"] or "not published (publish gate)"
            self.ctx.step(Stage.PUBLISH, 1, 1, f"already done: {was}")
            return
        name = self.cfg.export.name
        # Issue 26: the publish gate, before the last cancel point (it may evaluate the
        # current default version on this run's texts).
        self.ctx.step(Stage.PUBLISH, 0, 1, "checking the publish gate")
        gate = decide(
            self.cfg.publish_gate, self.selected_bundle(), repository, name, self._gate_split()
        )
        if gate.action == "skip":
            write_json_atomic(record, {"name": name, "version": None, "gate": gate.model_dump()})
            self.ctx.step(Stage.PUBLISH, 1, 1, gate.summary())
            return
        self.ctx.step(Stage.PUBLISH, 0, 1, f"publishing into {repository}")  # last cancel point
        # Once per export: a worker killed after the rename but before the record above
        # was written finds its version on resume instead of publishing it again.
        version, path = publish_bundle(
            self.selected_bundle(),
            repository,
            name,
            keep_last,
            once_per_export=True,
            held=gate.reason if gate.action == "hold" else None,
        )
        done = {"name": name, "version": version, "path": str(path), "gate": gate.model_dump()}
        write_json_atomic(record, done)
        held = f" (held: {gate.reason})" if gate.action == "hold" else ""
        self.ctx.step(Stage.PUBLISH, 1, 1, f"published {name} {version}{held}")

    def _gate_split(self) -> GateSplit | None:
        """The texts of ``publish_gate.split``; None in a run dir without prepared data
        (the StrataNet mode, an export made elsewhere), or when the split has no labels
        (the gate's checks that need texts are then skipped, and say so)."""
        # onnxruntime, as in _publish.
        from training.export.publish_gate import GateSplit

        split = self.cfg.publish_gate.split
        try:
            if not self.data.splits.get(split):
                return None
            labels = self.data.label_ids(split)
        except ArtifactError:  # no prepared data in this run dir (an export made elsewhere)
            return None
        except ValueError:  # unlabelled texts: nothing to measure on
            return None
        return GateSplit(self.data.texts(split), self.data.pairs(split), labels)


def run_pipeline(
    cfg: PipelineConfig,
    run_dir: Path,
    ctx: RunContext,
    *,
    repository: Path | None,
    job_id: str | None = None,
    keep_last: int = 5,
    shards: ShardStrategy | None = None,
) -> PipelineResult:
    """Run (or resume) every stage in ``run_dir``; publish into ``repository`` if given and
    ``export.publish`` is set, keeping its newest ``keep_last`` versions. ``shards`` runs
    the generate stage's shards (default: here, in turn; a worker passes one that spreads
    them over the workers). Relative data paths are taken from the current directory."""
    cfg = resolve_paths(cfg, Path.cwd())
    run = Run(cfg, run_dir, ctx, shards)
    tracker = Tracker(cfg, run.dir)

    def track(*dirs: Path | None) -> None:
        def log() -> None:
            for d in dirs:
                if d is not None:
                    tracker.stage_done(d.name, d)

        distributed.on_main(log)

    run.pin_config()
    for step in run.steps():
        run._make(step, force=False)
        track(step.out)
    track(run.evaluate())
    bundle = run.export(job_id=job_id)
    track(run.layout.export)
    metrics = {
        model: {split: m.model_dump() for split, m in per_split.items()}
        for model, per_split in read_manifest(bundle).metrics.items()
    }
    published = None
    if repository is not None and cfg.export.publish:
        published = run.publish(Path(repository), keep_last)
    return PipelineResult(
        run_dir=run.dir,
        metrics=metrics,
        bundle_dir=bundle,
        published=published,
        gate=run.gate_record(),
    )
