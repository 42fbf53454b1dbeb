"""The served models: which bundle versions are loaded, and which failed.

State lives in an immutable ``Snapshot`` that ``refresh`` replaces in one assignment.
Each model's default version is loaded by ``refresh`` and stays loaded; any other
version is loaded on its first inference request (``get``) and unloaded again, least
recently used first, when the process holds more versions or memory than its bounds
(``api.residency``).
A request resolves its ``LoadedModel`` from the snapshot once and keeps that
reference, so a reload never switches a request midway; an unloaded version's
batcher finishes what it has queued before its thread exits. A bundle that fails
to verify or load is recorded (``/models``, the log) and never replaces a loaded one;
it is retried when its files change, on an admin reload, and (a load that failed, not
a bundle that did not verify) by the poller with a backoff.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from api.batching import DynamicBatcher, LargeCallGate
from api.execution import (
    Call,
    CostCurve,
    Overrides,
    Plan,
    choose_engine,
    engines,
    measure_engines,
)
from api.metrics import ApiMetrics
from api.residency import MB, Key, Resident, plan_evictions, resident_bytes
from api.settings import ApiSettings, usable_cores
from contracts.bundle import (
    MODEL_FP32,
    MODEL_INT8,
    TOKENIZER,
    VERSION_PATTERN,
    BundleManifest,
    read_manifest,
)
from contracts.errors import (
    LugpiError,
    ModelLoadError,
    ModelNotFound,
    NoModelLoaded,
    Overloaded,
    RepositoryError,
)
from contracts.repository import ModelEntry, list_models
from contracts.repository import version_number as parse_version_number
from contracts.truncation import Cut
from runtime.classifier import BundleLimits, OnnxClassifier, open_bundle
from runtime.session import CUDA, RuntimeOptions

log = logging.getLogger("lugpi.api")

_VERSION = re.compile(VERSION_PATTERN)
# (file name, size, mtime_ns) of each file: changes whenever a bundle directory does.
Signature = tuple[tuple[str, int, int], ...]


def version_number(version: str) -> int:
    """Sort key of a version the scan already matched (contracts.repository parses it)."""
    return parse_version_number(version) or 0


def scan_repository(root: Path) -> dict[str, dict[str, ModelEntry]]:
    """name -> version -> entry (verified, or with ``problems``), per contracts.repository.

    Directories that are not versions (a publish's ``.tmp-*``, a prune's ``.trash-*``)
    come and go during normal operation: they are skipped, not reported as failures.
    """
    try:
        entries = list_models(root)
    except RepositoryError as e:
        log.error("cannot scan the model repository: %s", e)
        return {}
    found: dict[str, dict[str, ModelEntry]] = {}
    for entry in entries:
        if _VERSION.match(entry.version):
            found.setdefault(entry.name, {})[entry.version] = entry
    return found


def bundle_samples(classifier: OnnxClassifier, manifest: BundleManifest) -> list[Cut]:
    """The dev texts export checked (bundle.json), tokenized: what a version's cost curve is
    measured on; a stock sentence where the bundle has none."""
    checks = manifest.export_checks
    samples = checks.samples[:8] if checks is not None else []
    texts = [s.text for s in samples] or ["the quick brown fox jumps over the lazy dog"]
    pairs = [s.text_pair or "" for s in samples] if manifest.text_pair else None
    if pairs is not None and not samples:
        pairs = ["fox"]
    return classifier.encode(classifier.pair_up(texts, pairs))


def signature(bundle_dir: Path) -> Signature:
    try:
        entries = sorted(os.scandir(bundle_dir), key=lambda e: e.name)
        return tuple((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in entries)
    except OSError:
        return ()


@dataclass
class LoadedModel:
    """One servable bundle version. Requests hold a reference for their whole life."""

    name: str
    version: str
    path: Path
    manifest: BundleManifest
    classifier: OnnxClassifier
    batcher: DynamicBatcher
    signature: Signature
    plan: Plan  # how it runs, and why (api.execution)
    memory_bytes: int = 0  # what loading it added to the process (api.residency)
    last_used: float = field(default_factory=time.monotonic)

    @property
    def labels(self) -> list[str]:
        return self.classifier.labels

    def touch(self) -> None:
        """Mark it used now (the LRU's clock); one float store, cheap on the hot path."""
        self.last_used = time.monotonic()


# Why a version is not served, as callers without an admin key see it: a code and a
# sentence, never the underlying message (it names paths and onnxruntime internals).
PUBLIC_REASONS = {
    "bundle_invalid": "the bundle did not verify (manifest, file list or checksums)",
    "load_failed": "the model or tokenizer file could not be loaded",
}


@dataclass(frozen=True)
class LoadFailure:
    name: str
    version: str
    error: str  # the full message: logs and admin callers only
    signature: Signature
    code: str = "load_failed"
    attempts: int = 1
    retry_at: float = 0.0  # time.monotonic() from which the poller tries it again

    def retry_due(self, now: float) -> bool:
        # A bundle that did not verify fails again until its files change; a load can fail
        # for a moment (file descriptors, memory) and is worth another try.
        return self.code == "load_failed" and now >= self.retry_at

    @property
    def reason(self) -> str:
        return PUBLIC_REASONS[self.code]


@dataclass(frozen=True)
class Snapshot:
    # name -> version -> model, for loaded versions only
    models: dict[str, dict[str, LoadedModel]] = field(default_factory=dict)
    # name -> every version directory present, newest first
    present: dict[str, list[str]] = field(default_factory=dict)
    failures: dict[tuple[str, str], LoadFailure] = field(default_factory=dict)
    default_model: str | None = None
    # name -> the version an admin pinned as default (contracts.model_versions)
    pinned: dict[str, str] = field(default_factory=dict)
    # name -> version -> why the publish gate held it back (contracts.repository HELD_FILE)
    held: dict[str, dict[str, str]] = field(default_factory=dict)
    # name -> the version ``refresh`` keeps loaded (the default; the LRU never unloads it)
    warm: dict[str, str] = field(default_factory=dict)

    def latest(self, name: str) -> LoadedModel | None:
        """The default version of ``name``: the pinned one if it is loaded, else the newest
        loaded one that is not held (None when every loaded version is held)."""
        versions = self.models.get(name)
        if not versions:
            return None
        pin = self.pinned.get(name)
        if pin is not None and pin in versions:
            return versions[pin]
        servable = [v for v in versions if v not in self.held.get(name, {})]
        return versions[max(servable, key=version_number)] if servable else None


class ModelRegistry:
    def __init__(self, settings: ApiSettings, metrics: ApiMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.options = RuntimeOptions(
            variant=settings.model_variant,
            # auto: onnxruntime until a version's measurement says otherwise (_engine).
            engine="openvino" if settings.engine == "openvino" else "onnxruntime",
            device=settings.device,
            intra_op_threads=settings.ort_intra_op_threads,
            inter_op_threads=settings.inter_op_threads,
            spinning=bool(settings.ort_spinning),
            lone_spinning=settings.ort_lone_spinning and settings.inline_lone_requests,
        )
        self.limits = BundleLimits(
            max_tokenizer_bytes=settings.max_tokenizer_bytes,
            max_vocab_size=settings.max_vocab_size,
            max_length=settings.max_model_length,
        )
        self.snapshot = Snapshot()
        # One large onnxruntime call at a time across every loaded version (api/batching.py).
        self.gate = LargeCallGate(settings.large_batch_tokens)
        self.started = False  # set once the start-up load (and warm-up) has finished
        self._refresh_lock = threading.Lock()
        # "<engine>:<graph sha256>" -> its cost curve: versions of one graph are measured once
        self._curves: dict[str, CostCurve] = {}
        # LUGPI_ENGINE=auto: the graphs' sha256 and the candidates measured -> candidate ->
        # batch -> ms per text.
        self._engine_costs: dict[str, dict[str, dict[int, float]]] = {}

    # --- reading (event loop; never blocks) -----------------------------------------------
    @property
    def ready(self) -> bool:
        snap = self.snapshot
        return self.started and snap.default_model is not None and bool(snap.models)

    @property
    def overloaded(self) -> list[str]:
        """Loaded versions whose queue is nearly full ("name/version")."""
        return [
            f"{m.name}/{m.version}"
            for versions in self.snapshot.models.values()
            for m in versions.values()
            if m.batcher.saturated
        ]

    def resolve(self, model: str | None, version: str | None) -> LoadedModel:
        """The loaded version a request runs on; errors say what exists."""
        snap = self.snapshot
        served = sorted(snap.models)
        if not served:
            raise NoModelLoaded(
                "no model is loaded; publish a bundle into the model repository "
                "(GET /models lists bundles that failed to load)"
            )
        name = model or snap.default_model
        if name is None:
            raise NoModelLoaded(
                f"the default model {self.settings.default_model!r} (LUGPI_DEFAULT_MODEL) is "
                f"not loaded; name one in 'model': {served}"
            )
        versions = snap.models.get(name)
        if not versions and (version is None or version not in snap.present.get(name, [])):
            why = "every version failed to load" if name in snap.present else "unknown model"
            raise ModelNotFound(f"{why} {name!r}; served models: {served}")
        versions = versions or {}
        if version is None:
            latest = snap.latest(name)
            if latest is None:  # every loaded version is held by the publish gate
                raise ModelNotFound(
                    f"every served version of {name!r} is held by the publish gate "
                    f"({sorted(versions, key=version_number)}); name a version, or an admin "
                    f"pins one (PUT /models/{name}/default)"
                )
            return latest
        if version not in versions:
            loaded = sorted(versions, key=version_number, reverse=True)
            hint = ""
            failure = snap.failures.get((name, version))
            if failure is not None:
                hint = f" ({version} failed to load: {failure.reason})"
            elif version in snap.present.get(name, []):
                hint = f" ({version} exists but is not loaded: an inference request loads it)"
            raise ModelNotFound(
                f"unknown version {version!r} of model {name!r}{hint}; loaded versions: {loaded}"
            )
        found = versions[version]
        found.touch()
        return found

    async def get(self, model: str | None, version: str | None) -> LoadedModel:
        """``resolve``, but a version that is published and not loaded is loaded first (off
        the event loop; requests for loaded versions never wait for it). For inference
        routes: metadata routes ``resolve`` and never load."""
        snap = self.snapshot
        name = model or snap.default_model
        if (
            name is not None
            and version is not None
            and version not in snap.models.get(name, {})
            and version in snap.present.get(name, [])
            and (
                (name, version) not in snap.failures
                or snap.failures[(name, version)].retry_due(time.monotonic())
            )
        ):
            return await asyncio.to_thread(self.load_on_demand, name, version)
        return self.resolve(model, version)

    # --- loading (worker threads) ---------------------------------------------------------
    def refresh(self, only: str | None = None) -> Snapshot:
        """Rescan the repository; load new versions, drop removed ones. Blocking: call it
        in a thread. ``only`` limits loading to one model (a reload) and raises
        ``ModelNotFound`` when the repository has no such model."""
        with self._refresh_lock:
            old = self.snapshot
            found = scan_repository(self.settings.model_repository)
            if only is not None and only not in found:
                raise ModelNotFound(
                    f"no model {only!r} in the repository; models there: {sorted(found)}"
                )
            models: dict[str, dict[str, LoadedModel]] = {}
            failures: dict[tuple[str, str], LoadFailure] = {}
            warm: dict[str, str] = {}
            for name, dirs in found.items():
                if only is not None and name != only:  # keep the others exactly as they were
                    models[name] = dict(old.models.get(name, {}))
                    failures.update({k: f for k, f in old.failures.items() if k[0] == name})
                    if name in old.warm:
                        warm[name] = old.warm[name]
                    continue
                models[name], chosen = self._refresh_model(name, dirs, old, failures, only == name)
                if chosen is not None:
                    warm[name] = chosen
            models = {name: versions for name, versions in models.items() if versions}
            present = {
                name: sorted(dirs, key=version_number, reverse=True) for name, dirs in found.items()
            }
            pinned = {
                name: e.version for name, dirs in found.items() for e in dirs.values() if e.pinned
            }
            held = {
                name: {v: e.held for v, e in dirs.items() if e.held is not None}
                for name, dirs in found.items()
            }
            new = Snapshot(models, present, failures, self._default(models), pinned, held, warm)
            # Over a bound (a new default, a lowered bound): unload the least recently used.
            # The warm versions stay even if they alone pass it (logged).
            drop = plan_evictions(self._residents(new), *self._bounds())
            if drop is None:
                log.warning(
                    "the default versions alone pass LUGPI_MAX_LOADED_VERSIONS or "
                    "LUGPI_MAX_LOADED_MB; only they stay loaded"
                )
                drop = [r.key for r in self._residents(new) if not r.warm]
            return self._publish(new, self._drop(models, drop), failures, also=old)

    def _refresh_model(
        self,
        name: str,
        dirs: dict[str, ModelEntry],
        old: Snapshot,
        failures: dict[tuple[str, str], LoadFailure],
        retry_all: bool = False,
    ) -> tuple[dict[str, LoadedModel], str | None]:
        """The loaded versions of one model and its warm version: the first of the pinned
        one, the newest that are not held, then the held ones, that loads (the default;
        a held one only where every other failed, so that the model still answers by
        version). Versions loaded on demand stay while their files are unchanged.

        A failed version with unchanged files is retried when ``retry_all`` (an admin
        reload) or when its backoff is over (the poller: the poll interval, doubling per
        failure, at most 5 minutes)."""
        kept: dict[str, LoadedModel] = {}
        for version, current in old.models.get(name, {}).items():
            entry = dirs.get(version)
            if entry is not None and current.signature == signature(entry.path):
                kept[version] = current
        for key, earlier in old.failures.items():
            entry = dirs.get(key[1]) if key[0] == name else None
            if entry is not None and earlier.signature == signature(entry.path):
                failures[key] = earlier  # until retried below or its files change
        now = time.monotonic()
        newest = sorted(dirs, key=version_number, reverse=True)
        pinned = [v for v in newest if dirs[v].pinned]
        unheld = [v for v in newest if dirs[v].held is None and v not in pinned]
        held = [v for v in newest if dirs[v].held is not None and v not in pinned]
        for version in pinned + unheld + held:
            if version in kept:
                return kept, version
            entry = dirs[version]
            sig = signature(entry.path)
            failed = failures.get((name, version))
            retry = retry_all or (failed is not None and failed.retry_due(now))
            if failed is not None and not retry:
                continue
            loaded = self._try_load(entry, sig, failed, failures)
            if loaded is not None:
                kept[version] = loaded
                return kept, version
        return kept, None

    def _try_load(
        self,
        entry: ModelEntry,
        sig: Signature,
        failed: LoadFailure | None,
        failures: dict[tuple[str, str], LoadFailure],
    ) -> LoadedModel | None:
        """The version loaded, or None with its failure recorded in ``failures``."""
        name, version = entry.name, entry.version
        attempts = failed.attempts + 1 if failed is not None and failed.signature == sig else 1
        code = "bundle_invalid" if entry.problems else "load_failed"
        try:
            if entry.problems:  # did not verify (sha256, manifest, misplaced)
                raise ModelLoadError("; ".join(entry.problems))
            loaded = self._load(name, version, entry.path, sig)
        except LugpiError as e:
            log.error("model %s/%s not loaded: %s", name, version, e)
            self.metrics.load_failures.labels(model=name).inc()
            delay = min(300.0, (self.settings.poll_interval_s or 10.0) * 2 ** (attempts - 1))
            failures[(name, version)] = LoadFailure(
                name, version, str(e), sig, code, attempts, time.monotonic() + delay
            )
            return None
        failures.pop((name, version), None)
        return loaded

    # --- loading on demand, and the bounds (worker threads) -------------------------------
    def load_on_demand(self, name: str, version: str) -> LoadedModel:
        """Load a published version that is not loaded, unloading the least recently used
        others first where the bounds need room. Blocking: ``get`` runs it in a thread;
        loads are one at a time (the refresh lock), requests for loaded versions never
        wait. ``Overloaded`` when the warm versions alone leave no room."""
        with self._refresh_lock:
            snap = self.snapshot
            current = snap.models.get(name, {}).get(version)
            if current is not None:  # another request loaded it meanwhile
                current.touch()
                return current
            entries = {e.version: e for e in self._scan_model(name)}
            entry = entries.get(version)
            if entry is None:
                raise ModelNotFound(f"no version {version!r} of model {name!r} in the repository")
            room = plan_evictions(self._residents(snap), *self._bounds(), self._estimate(entry), 1)
            if room is None:
                raise Overloaded(
                    f"no room to load {name}/{version}: the default versions alone fill "
                    f"LUGPI_MAX_LOADED_VERSIONS ({self.settings.max_loaded_versions}) or "
                    f"LUGPI_MAX_LOADED_MB ({self.settings.max_loaded_mb}); retry later or "
                    "raise the bound"
                )
            snap = self._publish(snap, self._drop(snap.models, room), snap.failures)
            failures = dict(snap.failures)
            loaded = self._try_load(
                entry, signature(entry.path), failures.get((name, version)), failures
            )
            models = {n: dict(v) for n, v in snap.models.items()}
            if loaded is not None:
                models.setdefault(name, {})[version] = loaded
            snap = replace(snap, models=models, failures=failures)
            # The measured size may pass a bound the estimate did not: unload more, never it
            # (it has a request to answer); where even that is not enough, every other
            # version that is not warm.
            others = [r for r in self._residents(snap) if r.key != (name, version)]
            more = plan_evictions(
                others,
                *self._bounds(),
                loaded.memory_bytes if loaded is not None else 0,
                1 if loaded is not None else 0,
            )
            if more is None:
                log.warning(
                    "%s/%s took more than the bounds leave: unloading the rest", name, version
                )
                more = [r.key for r in others if not r.warm]
            self._publish(self.snapshot, self._drop(models, more), failures)
            if loaded is None:
                return self.resolve(name, version)  # raises, with the failure's reason
            return loaded

    def _scan_model(self, name: str) -> list[ModelEntry]:
        try:
            return list_models(self.settings.model_repository, name)
        except RepositoryError as e:
            raise ModelNotFound(f"cannot read model {name!r} from the repository: {e}") from e

    def _bounds(self) -> tuple[int, int | None]:
        mb = self.settings.max_loaded_mb
        return self.settings.max_loaded_versions, (int(mb * MB) if mb else None)

    @staticmethod
    def _residents(snap: Snapshot) -> list[Resident]:
        return [
            Resident((n, v), m.memory_bytes, m.last_used, snap.warm.get(n) == v)
            for n, versions in snap.models.items()
            for v, m in versions.items()
        ]

    def _estimate(self, entry: ModelEntry) -> int:
        """What loading ``entry`` will add, before it is loaded: its graph and tokenizer
        files, a floor (a MiniLM int8 version takes about 3x them: the load's measured size
        then unloads more, ``load_on_demand``). Not the sizes other versions measured: the
        first load of a process also pays onnxruntime's own start, and a guess from it
        refused versions that fit."""
        fp32 = self.options.variant == "fp32" or self.options.engine == "openvino"
        graph = MODEL_FP32 if fp32 else MODEL_INT8
        return entry.sizes.get(graph, entry.sizes.get(MODEL_FP32, 0)) + entry.sizes.get(
            TOKENIZER, 0
        )

    @staticmethod
    def _drop(
        models: dict[str, dict[str, LoadedModel]], keys: list[Key]
    ) -> dict[str, dict[str, LoadedModel]]:
        out = {
            n: {v: m for v, m in versions.items() if (n, v) not in keys}
            for n, versions in models.items()
        }
        return {n: versions for n, versions in out.items() if versions}

    def _publish(
        self,
        old: Snapshot,
        models: dict[str, dict[str, LoadedModel]],
        failures: dict[tuple[str, str], LoadFailure],
        also: Snapshot | None = None,
    ) -> Snapshot:
        """Serve ``old`` with ``models`` from now on; close the versions that ``old`` (and
        ``also``, the snapshot served until now where ``old`` is a new one) had and the
        result has not."""
        self.snapshot = replace(old, models=models, failures=failures)
        self.metrics.models_loaded.set(sum(len(v) for v in models.values()))
        self._close_dropped([old, *([also] if also is not None else [])], self.snapshot)
        return self.snapshot

    def _engine(
        self, path: Path, manifest: BundleManifest, base: OnnxClassifier, one_thread: RuntimeOptions
    ) -> tuple[OnnxClassifier, RuntimeOptions, str]:
        """LUGPI_ENGINE=auto: the classifier, options and reason to serve a version with. The
        candidates: ``base`` (onnxruntime, the configured variant); onnxruntime on the fp32
        graph where the variant is auto and ``base`` runs int8 (int8 costs more per text
        than fp32 on CPUs without VNNI: docs/environment.md); OpenVINO on the fp32 graph
        where it passes this bundle's check against the probabilities export recorded. The
        one that costs least per text on this machine is served if it costs at most
        ``ENGINE_GAIN`` of ``base`` (``choose_engine``); measured once per graph files,
        candidates and process."""
        if base.provider == CUDA:
            return base, self.options, "engine onnxruntime: CUDA (OpenVINO runs on the CPU)"
        default = f"onnxruntime {base.variant}"
        wanted = {default: self.options}
        if self.options.variant == "auto" and base.variant == "int8":
            wanted["onnxruntime fp32"] = replace(self.options, variant="fp32")
        notes: list[str] = []
        if importlib.util.find_spec("openvino") is None:
            notes.append("openvino is not installed")
        else:
            wanted["openvino fp32"] = replace(self.options, engine="openvino")
        opened = {default: base}
        for name, options in wanted.items():
            if name == default:
                continue
            one = replace(one_thread, engine=options.engine, variant=options.variant)
            try:
                opened[name] = open_bundle(path, manifest, one, self.limits)
            except ModelLoadError as e:
                notes.append(f"{'OpenVINO' if options.engine == 'openvino' else name} refused: {e}")
        if len(opened) == 1:
            return base, self.options, "; ".join([f"engine {default}", *notes])
        graphs = [manifest.files.get(f, "") for f in (MODEL_INT8, MODEL_FP32)]
        key = "/".join([*graphs, *sorted(opened)])
        if key not in self._engine_costs:
            calls: dict[str, Call] = {n: c.run_scores for n, c in opened.items()}
            self._engine_costs[key] = measure_engines(bundle_samples(base, manifest), calls)
        chosen, why = choose_engine(self._engine_costs[key], default)
        return opened[chosen], wanted[chosen], "; ".join([why, *notes])

    def _load(self, name: str, version: str, path: Path, sig: Signature) -> LoadedModel:
        manifest = read_manifest(path)  # list_models has verified every file's sha256
        before = resident_bytes()
        # Opened with one thread: the measurement's first session, and the instances'
        # own when one thread per instance is chosen (api.execution).
        one_thread = replace(self.options, intra_op_threads=1, spinning=False, lone_spinning=False)
        try:
            base = open_bundle(path, manifest, one_thread, self.limits)
            options, engine_why = self.options, None
            if self.settings.engine == "auto":
                base, options, engine_why = self._engine(path, manifest, base, one_thread)
            graph_sha = manifest.files.get(base.model_file.name if base.model_file else "", "")
            key = f"{options.engine}:{graph_sha}"
            instances, plan = engines(
                base,
                options,
                bundle_samples(base, manifest),
                usable_cores(),
                self.settings.max_batch_size,
                Overrides(*self.settings.execution_overrides),
                measure_on=self.settings.measure_execution,
                lone_allowed=options.lone_spinning,
                known=self._curves.get(key),
            )
        except LugpiError:
            raise
        except Exception as e:  # onnxruntime errors on a graph that does not fit the bundle
            raise ModelLoadError(f"{path}: warm-up failed: {e}") from e
        if plan.curve is not None and graph_sha:
            self._curves[key] = plan.curve
        if engine_why is not None:
            plan = replace(plan, why=[engine_why, *plan.why])
        classifier = instances[0]
        log.info("%s/%s runs as: %s", name, version, "; ".join(plan.why))
        batcher = DynamicBatcher(
            classifier,
            max_batch_size=plan.batch_cap,
            max_wait_s=self.settings.max_batch_wait_ms / 1000.0,
            name=f"{name}-{version}",
            on_batch=self.metrics.batch_observer(name),
            max_queued_texts=self.settings.max_queued_texts,
            timeout_s=self.settings.request_timeout_s,
            on_drop=self.metrics.drop_observer(name),
            inline_lone=self.settings.inline_lone_requests,
            inline_max_tokens=self.settings.inline_max_tokens,
            inline_max_ms=self.settings.inline_max_ms,
            max_batch_tokens=self.settings.max_batch_tokens,
            gate=self.gate,
            instances=instances,
            call_tokens=plan.call_tokens,
        )
        batcher.calibrate_inline()
        batcher.start()
        log.info(
            "loaded %s/%s (%s, %s, %d labels)",
            name,
            version,
            classifier.variant,
            classifier.provider,
            len(manifest.labels),
        )
        graph = path / (MODEL_INT8 if classifier.variant == "int8" else MODEL_FP32)
        after = resident_bytes()
        grew = after - before if after is not None and before is not None else 0
        memory = max(grew, graph.stat().st_size + (path / TOKENIZER).stat().st_size)
        return LoadedModel(name, version, path, manifest, classifier, batcher, sig, plan, memory)

    def _default(self, models: dict[str, dict[str, LoadedModel]]) -> str | None:
        """LUGPI_DEFAULT_MODEL if set; else the current default while it is served (a
        model published later never takes over, whatever its name), and the first name
        in order only when there is none yet (start-up, or the default was removed)."""
        if self.settings.default_model is not None:
            return self.settings.default_model if self.settings.default_model in models else None
        if self.snapshot.default_model in models:
            return self.snapshot.default_model
        return min(models) if models else None

    @staticmethod
    def _close_dropped(before: list[Snapshot], now: Snapshot) -> None:
        closing: dict[int, LoadedModel] = {}
        for old in before:
            for name, versions in old.models.items():
                for version, loaded in versions.items():
                    if now.models.get(name, {}).get(version) is not loaded:
                        closing[id(loaded)] = loaded
        for loaded in closing.values():
            log.info("unloading %s/%s", loaded.name, loaded.version)
            loaded.batcher.close()

    def close(self) -> None:
        with self._refresh_lock:
            for versions in self.snapshot.models.values():
                for loaded in versions.values():
                    loaded.batcher.close(timeout=5.0)
            self.snapshot = Snapshot()
