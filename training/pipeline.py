"""The whole LUGPI recipe, one stage after another, resumable.

    prepare -> generate -> teacher(s) -> [tgt] -> distill [+ TGT students] -> baseline
    -> evaluate -> export -> publish

Run directory: ``contracts.layout.RunLayout`` (every stage dir is atomic: complete with
``stage.json`` or absent).

One student per teacher (``student-<teacher name>``, the paper's Table 1), and/or the
amalgamated one (``student-amalgamated``), as ``distill.students`` says
(``PipelineConfig.student_plan``). Every student is evaluated and exported
(``export/<key>/`` is its bundle); ``export/stage.json`` names the one with the best dev
accuracy, which is what the run publishes under ``export.name``.

A stage whose directory is complete is skipped, so rerunning after a crash or a
cancellation resumes where it stopped. ``config.yaml`` pins the config of the run: a
rerun with a config that would change the results is refused. Publishing comes last
and only after every stage succeeded, so a failed or cancelled run publishes nothing.
"""

from __future__ import annotations

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
from contracts.config import PipelineConfig, TeacherConfig
from contracts.errors import ArtifactError, ConfigError
from contracts.jobs import Stage
from contracts.layout import RunLayout
from training import distributed
from training.data.prepare import PreparedData, load_prepared, prepare_data
from training.generation.generate_images import (
    ImageIndex,
    generate_images,
    load_image_index,
)
from training.methods import MethodStudent, enabled_methods
from training.sharding import InProcess, ShardStrategy
from training.tracking.experiments import Tracker
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
    return cfg.model_copy(
        update={
            "data": data,
            "generator": gen,
            "text_generator": text_gen,
            "strata": strata,
        }
    )


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
    """One run directory: each method runs one stage unless its directory is complete."""

    def __init__(
        self,
        cfg: PipelineConfig,
        run_dir: Path,
        ctx: RunContext,
        shards: ShardStrategy | None = None,
    ) -> None:
        self.cfg, self.dir, self.ctx = cfg, Path(run_dir), ctx
        self.layout = RunLayout(self.dir)
        # How the generate stage's shards are run: here, one after another, by default.
        self.shards = shards or InProcess()
        self._data: PreparedData | None = None
        self._images: ImageIndex | None = None

    # -- layout -----------------------------------------------------------------------------
    def teacher_dir(self, t: TeacherConfig) -> Path:
        return self.layout.teacher(t.name)

    def student_dir(self, key: str) -> Path:
        return self.layout.student(key)

    def student_dirs(self) -> dict[str, Path]:
        """Student key -> its directory, for every student of ``cfg.student_plan()``."""
        return {key: self.student_dir(key) for key in self.cfg.student_plan()}

    @property
    def token_store(self) -> Path:
        """Frozen image-encoder tokens, beside the images they encode (shared with them)."""
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

    # -- inputs of later stages ---------------------------------------------------------------
    @property
    def data(self) -> PreparedData:
        if self._data is None:
            self._data = load_prepared(self.layout.data)
        return self._data

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

    # -- stages -------------------------------------------------------------------------------
    def prepare(self, force: bool = False) -> Path:
        out = self.layout.data

        def stage() -> None:
            if not self._skip(Stage.PREPARE, out, force):
                prepare_data(self.cfg, out, self.ctx)

        distributed.on_main(stage)
        return out

    def generate(self, shard: int | None = None, force: bool = False) -> Path:
        out = self.layout.images
        if not self.reads_images:
            self.ctx.step(Stage.GENERATE, 1, 1, "no teacher reads images; skipped")
            return out

        def stage() -> None:
            if shard is not None:  # one worker's share: fills the cache, writes no index
                generate_images(self.cfg, self.data, out, self.ctx, shard=shard)
            elif not self._skip(Stage.GENERATE, out, force):
                generate_images(self.cfg, self.data, out, self.ctx, strategy=self.shards)

        distributed.on_main(stage)
        return out

    def teachers(self, names: list[str] | None = None, force: bool = False) -> list[Path]:
        from training.teachers.train_teacher import train_teacher

        wanted = [t for t in self.cfg.teachers if names is None or t.name in names]
        if names is not None and len(wanted) != len(names):
            known = [t.name for t in self.cfg.teachers]
            raise ConfigError(f"unknown teacher name(s) {names}; the config has {known}")
        for n, t in enumerate(wanted):
            self.ctx.stage_part = (n / len(wanted), (n + 1) / len(wanted))  # job progress
            out = self.teacher_dir(t)
            if not self._skip(Stage.TEACHER, out, force):
                train_teacher(
                    self.cfg, t, self.data, self.images, out, self.ctx, token_store=self.token_store
                )
            if self.cfg.distill.cross_fit_folds >= 2:
                from training.lugpi.cross_fit import fold_teacher_dir, train_fold_teachers

                k = self.cfg.distill.cross_fit_folds
                for i in range(k) if force else ():
                    self._skip(Stage.TEACHER, fold_teacher_dir(out, i, k), force)
                train_fold_teachers(
                    self.cfg, t, self.data, self.images, out, self.ctx, token_store=self.token_store
                )
        self.ctx.stage_part = (0.0, 1.0)
        return [self.teacher_dir(t) for t in self.cfg.teachers]

    def distill(self, force: bool = False) -> list[Path]:
        from training.lugpi.distill import distill_student

        by_name = {t.name: t for t in self.cfg.teachers}
        plan = self.cfg.student_plan()
        for i, (key, names) in enumerate(plan.items()):
            self.ctx.stage_part = (i / len(plan), (i + 1) / len(plan))  # job progress
            out = self.student_dir(key)
            if not self._skip(Stage.DISTILL, out, force):
                teachers = [self.teacher_dir(by_name[n]) for n in names]
                distill_student(
                    self.cfg,
                    self.data,
                    self.images,
                    teachers,
                    out,
                    self.ctx,
                    token_store=self.token_store,
                )
        self.ctx.stage_part = (0.0, 1.0)
        return list(self.student_dirs().values())

    def tgt_student_dir(self, mode: str) -> Path:
        return self.layout.tgt_student(mode)

    def tgt(self, shard: int | None = None, force: bool = False) -> Path | None:
        """The tgt stage: generated texts, filtered, with their images. ``shard``: only
        that shard of the text generation, into the text cache (one worker's share)."""
        from training.generation.texts import plan_texts, resolve_text_cache, run_text_shard
        from training.tgt.texts import neighbour_requests, run_tgt

        if not self.cfg.tgt.enabled:
            self.ctx.step(Stage.TGT, 1, 1, "tgt.enabled is false; skipped")
            return None
        out = self.layout.tgt
        text_cache = resolve_text_cache(self.cfg, self.dir)

        def stage() -> None:
            if shard is not None:
                plan = plan_texts(self.cfg, neighbour_requests(self.cfg, self.data), text_cache)
                run_text_shard(self.cfg, plan, shard, self.ctx)
            elif not self._skip(Stage.TGT, out, force):
                cache = self.layout.image_cache(self.cfg.generator.cache_dir)
                images = cache if self.reads_images else None
                run_tgt(
                    self.cfg,
                    self.data,
                    out,
                    self.ctx,
                    text_cache=text_cache,
                    image_cache=images,
                    strategy=self.shards,
                )

        distributed.on_main(stage)
        return out

    def tgt_students(self, force: bool = False) -> dict[str, Path]:
        from training.tgt.distill import train_tgt_student
        from training.tgt.texts import load_generated

        if not self.cfg.tgt.enabled:
            return {}
        out: dict[str, Path] = {}
        rows: list[Any] | None = None
        for mode in self.cfg.tgt.modes:
            d = out[mode] = self.tgt_student_dir(mode)
            if self._skip(Stage.DISTILL, d, force):
                continue
            if rows is None:
                rows, _ = load_generated(self.layout.tgt)
            teachers = [self.teacher_dir(t) for t in self.cfg.teachers]
            train_tgt_student(
                self.cfg,
                self.data,
                self.images,
                teachers,
                rows,
                mode,
                d,
                self.ctx,
                token_store=self.token_store,
            )
        return out

    def method_students(self) -> dict[str, MethodStudent]:
        """Key -> student of every method added through training.methods that this config
        runs; they are evaluated, exported and offered for publishing with the others."""
        out: dict[str, MethodStudent] = {}
        for method in enabled_methods(self.cfg):
            for s in method.students(self):
                if s.key in out or s.key in self.cfg.student_plan():
                    raise ConfigError(f"method {method.name}: student key {s.key!r} is taken")
                out[s.key] = s
        return out

    def method_steps(self, force: bool = False) -> list[Path]:
        """Make every step of the added methods (training.methods) that is not complete;
        return their directories."""
        made = []
        for method in enabled_methods(self.cfg):
            for step in method.steps(self):
                if not self._skip(step.stage, step.out, force):
                    step.make()
                made.append(step.out)
        return made

    def baseline(self, force: bool = False) -> Path | None:
        from training.lugpi.distill import train_baseline

        if not self.cfg.baseline:
            return None
        out = self.layout.baseline
        if not self._skip(Stage.BASELINE, out, force):
            train_baseline(self.cfg, self.data, out, self.ctx)
        return out

    def evaluate(self, force: bool = False) -> Path:
        out = self.layout.evaluate
        distributed.on_main(lambda: self._evaluate(out, force))
        return out

    def _evaluate(self, out: Path, force: bool) -> None:
        from training.evaluation.evaluate import evaluate

        if not self._skip(Stage.EVALUATE, out, force):
            teachers = [self.teacher_dir(t) for t in self.cfg.teachers]
            baseline = self.layout.baseline if self.cfg.baseline else None
            tgt_dirs, tgt_summary = None, None
            if self.cfg.tgt.enabled:
                from training.tgt.texts import load_generated

                tgt_dirs = {str(m): self.tgt_student_dir(m) for m in self.cfg.tgt.modes}
                tgt_summary = load_generated(self.layout.tgt)[1]
            evaluate(
                self.cfg,
                self.data,
                self.images,
                teachers,
                {**self.student_dirs(), **{k: m.dir for k, m in self.method_students().items()}},
                baseline,
                out,
                self.ctx,
                token_store=self.token_store,
                tgt_dirs=tgt_dirs,
                tgt_summary=tgt_summary,
            )

    def metrics(self) -> dict[str, dict[str, dict[str, float]]]:
        """evaluate/results.json as bundle metrics: model -> split -> accuracy, macro_f1, n.
        Students are ``student-<key>``."""
        from training.evaluation.evaluate import RESULTS_FILE

        results = json.loads((self.layout.evaluate / RESULTS_FILE).read_text())
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
        """Student key -> (its directory, the teachers it learned from, its metrics key): the
        students of ``cfg.student_plan()``, and with ``tgt.export_best`` the TGT students
        (keys ``tgt-<mode>``, learning from every teacher)."""
        out = {
            key: (self.student_dir(key), names, f"student-{key}")
            for key, names in self.cfg.student_plan().items()
        }
        for key, student in self.method_students().items():
            out[key] = (student.dir, student.teachers, f"student-{key}")
        if self.cfg.tgt.enabled and self.cfg.tgt.export_best:
            names = [t.name for t in self.cfg.teachers]
            for mode in self.cfg.tgt.modes:
                out[f"tgt-{mode}"] = (self.tgt_student_dir(mode), names, f"tgt-{mode}")
        return out

    def best_student(self) -> str:
        """The key of the student with the best dev accuracy (then macro-F1; then plan order,
        the TGT students last)."""
        metrics = self.metrics()
        candidates = self.export_candidates()
        keys = list(candidates)

        def score(key: str) -> tuple[float, float, int]:
            dev = metrics[candidates[key][2]]["dev"]
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
        from training.export.bundle import export_student
        from training.students.trainer import loss_record
        from training.tracking.experiments import software_provenance

        if self._skip(Stage.EXPORT, out, force):
            return
        cfg, data = self.cfg, self.data
        plan, metrics, selected = self.export_candidates(), self.metrics(), self.best_student()
        by_name = {t.name: t for t in cfg.teachers}
        students = {
            key: {"teachers": names, "dev": metrics[mkey]["dev"]}
            for key, (_, names, mkey) in plan.items()
        }
        has_test = bool(data.splits.get("test"))
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
                }
                if cfg.tgt.enabled:
                    provenance["text_generator"] = cfg.text_generator.model
                    provenance["tgt"] = cfg.tgt.model_dump(mode="json")
                # This bundle's own student is "student"; the others keep their keys.
                own = {**metrics, "student": metrics[mkey]}
                export_student(
                    student_dir,
                    tmp / key,
                    data.texts("dev"),
                    data.pairs("dev"),
                    data.label_ids("dev"),
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
        from training.export.score_temperature import results_section, write_results_section

        fitted = {key: read_manifest(out / key).score_temperature for key in plan}
        write_results_section(self.layout.evaluate / "results.md", results_section(fitted))
        self.ctx.step(Stage.EXPORT, len(plan), len(plan), f"exported; publishing {selected}")

    # -- the data-free StrataNet mode (training/strata/mode.py) ------------------------------
    def strata_generate(self, force: bool = False) -> Path:
        """Steered generation for every StrataNet teacher -> strata/."""
        from training.generation.texts import resolve_text_cache
        from training.strata.mode import run_generation

        out = self.layout.strata

        def stage() -> None:
            if not self._skip(Stage.TGT, out, force):
                cache = resolve_text_cache(self.cfg, self.dir)
                run_generation(self.cfg, out, self.ctx, text_cache=cache, strategy=self.shards)

        distributed.on_main(stage)
        return out

    def strata_student(self, force: bool = False) -> Path:
        """Probes, per-sample teacher weights and the union-label student -> student-strata/."""
        from training.strata.mode import STUDENT_KEY, train_strata_student

        out = self.layout.student(STUDENT_KEY)
        if not self._skip(Stage.DISTILL, out, force):
            train_strata_student(self.cfg, self.layout.strata, out, self.ctx)
        return out

    def strata_mode(
        self,
        *,
        repository: Path | None = None,
        job_id: str | None = None,
        keep_last: int = 5,
        force_export: bool = False,
    ) -> PipelineResult:
        """The whole StrataNet mode, resumable: generate -> student -> evaluate (with
        data.dev/test) -> export -> publish."""
        from training.strata.mode import evaluate_strata, export_strata

        self.pin_config()
        self.strata_generate()
        student = self.strata_student()
        cfg = self.cfg
        if (cfg.data.dev or cfg.data.test) and not self._skip(
            Stage.EVALUATE, self.layout.evaluate, False
        ):
            distributed.on_main(
                lambda: evaluate_strata(cfg, student, self.layout.evaluate, self.ctx)
            )
        if not self._skip(Stage.EXPORT, self.layout.export, force_export):
            distributed.on_main(lambda: export_strata(cfg, self.layout, job_id, self.ctx))
        bundle = self.selected_bundle()
        metrics = {
            model: {split: m.model_dump() for split, m in per_split.items()}
            for model, per_split in read_manifest(bundle).metrics.items()
        }
        published = None
        if repository is not None and cfg.export.publish:
            published = self.publish(Path(repository), keep_last)
        return PipelineResult(self.dir, metrics, bundle, published, self.gate_record())

    def strata_stage_dirs(self) -> list[Path]:
        """The StrataNet mode's stage directories, in order (a missing one is not tracked)."""
        from training.strata.mode import STUDENT_KEY

        layout = self.layout
        return [layout.strata, layout.student(STUDENT_KEY), layout.evaluate, layout.export]

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
        from contracts.repository import publish
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
        version, path = publish(
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
        """The texts of ``publish_gate.split``; None in the StrataNet mode, whose data is
        not prepared, in a run dir without prepared data, or when the split has no labels
        (the gate's checks that need texts are then skipped, and say so)."""
        from training.export.publish_gate import GateSplit

        split = self.cfg.publish_gate.split
        if self.cfg.strata.enabled:
            return None
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

    if cfg.strata.enabled:
        result = run.strata_mode(repository=repository, job_id=job_id, keep_last=keep_last)
        track(*run.strata_stage_dirs())
        return result

    run.pin_config()
    track(run.prepare())
    track(run.generate())
    track(*run.teachers())
    track(run.tgt())
    track(*run.distill())
    track(*run.tgt_students().values())
    track(run.baseline())
    track(*run.method_steps())
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
