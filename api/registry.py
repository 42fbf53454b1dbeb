"""The served models: which bundle versions are loaded, and which failed.

State lives in an immutable ``Snapshot`` that ``refresh`` replaces in one assignment.
A request resolves its ``LoadedModel`` from the snapshot once and keeps that
reference, so a reload never switches a request midway; an unloaded version's
batcher finishes what it has queued before its thread exits. A bundle that fails
to verify or load is recorded (``/models``, the log) and never replaces a loaded one;
it is retried when its files change, on an admin reload, and (a load that failed, not
a bundle that did not verify) by the poller with a backoff.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from api.batching import DynamicBatcher, LargeCallGate
from api.metrics import ApiMetrics
from api.settings import ApiSettings
from contracts.bundle import VERSION_PATTERN, BundleManifest, read_manifest
from contracts.errors import (
    LugpiError,
    ModelLoadError,
    ModelNotFound,
    NoModelLoaded,
    RepositoryError,
)
from contracts.repository import ModelEntry, list_models
from contracts.repository import version_number as parse_version_number
from runtime.classifier import BundleLimits, OnnxClassifier, open_bundle
from runtime.session import RuntimeOptions

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

    @property
    def labels(self) -> list[str]:
        return self.classifier.labels


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
            device=settings.device,
            intra_op_threads=settings.ort_intra_op_threads,
            inter_op_threads=settings.inter_op_threads,
            spinning=settings.ort_spinning,
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
        if not versions:
            why = "every version failed to load" if name in snap.present else "unknown model"
            raise ModelNotFound(f"{why} {name!r}; served models: {served}")
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
            if version in snap.present.get(name, []):
                hint = (
                    f" ({version} exists but is not loaded: only the newest "
                    f"{self.settings.max_loaded_versions} valid versions are served)"
                )
            raise ModelNotFound(
                f"unknown version {version!r} of model {name!r}{hint}; served versions: {loaded}"
            )
        return versions[version]

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
            for name, dirs in found.items():
                if only is not None and name != only:  # keep the others exactly as they were
                    models[name] = dict(old.models.get(name, {}))
                    failures.update({k: f for k, f in old.failures.items() if k[0] == name})
                    continue
                models[name] = self._refresh_model(name, dirs, old, failures, only == name)
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
            self.snapshot = Snapshot(models, present, failures, self._default(models), pinned, held)
            self.metrics.models_loaded.set(sum(len(v) for v in models.values()))
            self._close_dropped(old, self.snapshot)
            return self.snapshot

    def _refresh_model(
        self,
        name: str,
        dirs: dict[str, ModelEntry],
        old: Snapshot,
        failures: dict[tuple[str, str], LoadFailure],
        retry_all: bool = False,
    ) -> dict[str, LoadedModel]:
        """The pinned version and the newest others, ``max_loaded_versions`` in all, that
        load; loaded ones are reused.

        A failed version with unchanged files is retried when ``retry_all`` (an admin
        reload) or when its backoff is over (the poller: the poll interval, doubling per
        failure, at most 5 minutes)."""
        kept: dict[str, LoadedModel] = {}
        now = time.monotonic()
        pinned = [v for v, e in dirs.items() if e.pinned]
        newest = sorted(dirs, key=version_number, reverse=True)
        for version in pinned + [v for v in newest if v not in pinned]:
            if len(kept) >= self.settings.max_loaded_versions:
                break
            entry = dirs[version]
            sig = signature(entry.path)
            current = old.models.get(name, {}).get(version)
            if current is not None and current.signature == sig:
                kept[version] = current
                continue
            failed = old.failures.get((name, version))
            retry = retry_all or (failed is not None and failed.retry_due(now))
            if failed is not None and failed.signature == sig and not retry:
                failures[(name, version)] = failed
                continue
            attempts = failed.attempts + 1 if failed is not None and failed.signature == sig else 1
            code = "bundle_invalid" if entry.problems else "load_failed"
            try:
                if entry.problems:  # did not verify (sha256, manifest, misplaced)
                    raise ModelLoadError("; ".join(entry.problems))
                kept[version] = self._load(name, version, entry.path, sig)
            except LugpiError as e:
                log.error("model %s/%s not loaded: %s", name, version, e)
                self.metrics.load_failures.labels(model=name).inc()
                delay = min(300.0, (self.settings.poll_interval_s or 10.0) * 2 ** (attempts - 1))
                failures[(name, version)] = LoadFailure(
                    name, version, str(e), sig, code, attempts, time.monotonic() + delay
                )
        return kept

    def _load(self, name: str, version: str, path: Path, sig: Signature) -> LoadedModel:
        manifest = read_manifest(path)  # list_models has verified every file's sha256
        try:
            classifier = open_bundle(path, manifest, self.options, self.limits)
        except LugpiError:
            raise
        except Exception as e:  # onnxruntime errors on a graph that does not fit the bundle
            raise ModelLoadError(f"{path}: warm-up failed: {e}") from e
        batcher = DynamicBatcher(
            classifier,
            max_batch_size=self.settings.max_batch_size,
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
        return LoadedModel(name, version, path, manifest, classifier, batcher, sig)

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
    def _close_dropped(old: Snapshot, new: Snapshot) -> None:
        for name, versions in old.models.items():
            for version, loaded in versions.items():
                if new.models.get(name, {}).get(version) is not loaded:
                    log.info("unloading %s/%s", name, version)
                    loaded.batcher.close()

    def close(self) -> None:
        with self._refresh_lock:
            for versions in self.snapshot.models.values():
                for loaded in versions.values():
                    loaded.batcher.close(timeout=5.0)
            self.snapshot = Snapshot()
