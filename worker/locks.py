"""Named locks with a TTL, kept alive by a thread while a block of work runs.

A job attempt holds its job's lock, a generation shard its shard's lock (the store's
``acquire_lock``/``refresh_lock``/``release_lock``). The lock is refreshed every
``heartbeat_s`` and lives ``stale_after_s``; a holder that dies lets it expire, and
the reaper (jobs/lifecycle.py) or another worker takes the work over.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from types import TracebackType
from typing import Self

from jobs.lifecycle import AttemptLost
from jobs.store import JobStore, JobStoreUnavailable
from worker.settings import WorkerSettings

log = logging.getLogger(__name__)


def lock_owner(worker: str) -> str:
    """A lock owner name unique to this process and call: ``<worker>:<pid>:<random>``."""
    return f"{worker}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LockKeeper:
    """Refresh a lock every ``heartbeat_s`` in a daemon thread while a block runs; release
    it at the end unless ``release`` is False (the caller releases it, e.g. after handing on).

    A refresh that fails with *any* error is retried: a locked SQLite file or a Redis
    failover is usually over in seconds. Only when no refresh succeeded for the lock's TTL
    less one interval (so the lock may expire before the next try) is the lock given up:
    ``on_lost`` runs and ``lost`` is set, early enough that the holder can stop before
    anyone else can take the lock.
    """

    def __init__(
        self,
        store: JobStore,
        name: str,
        owner: str,
        settings: WorkerSettings,
        *,
        release: bool = True,
    ) -> None:
        self.store, self.name, self.owner = store, name, owner
        self.interval, self.ttl = settings.heartbeat_s, settings.stale_after_s
        self.release = release
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lock-{name}", daemon=True)

    def after_refresh(self) -> None:
        """Called after each successful refresh; may raise AttemptLost."""

    def on_lost(self, why: str) -> None:
        log.error("lock %s lost: %s", self.name, why)

    def _lose(self, why: str) -> None:
        self.lost.set()
        self.on_lost(why)

    def _run(self) -> None:
        last_ok = time.monotonic()
        while not self._stop.wait(self.interval):
            try:
                if not self.store.refresh_lock(self.name, self.owner, self.ttl):
                    self._lose("held by another owner or expired")
                    return
                last_ok = time.monotonic()
                self.after_refresh()
            except AttemptLost as e:
                self._lose(str(e))
                return
            except Exception as e:  # the thread must never die silently
                silent = time.monotonic() - last_ok
                if silent >= self.ttl - self.interval:
                    self._lose(f"not refreshed for {silent:.1f} s (last error: {e!r})")
                    return
                level = logging.WARNING if isinstance(e, JobStoreUnavailable) else logging.ERROR
                log.log(level, "lock %s not refreshed (retrying): %r", self.name, e)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)
        if self.release:
            with contextlib.suppress(Exception):  # else it expires by itself
                self.store.release_lock(self.name, self.owner)
