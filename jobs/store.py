"""Job records: where every job's state lives, so it outlives API and worker restarts.

One interface, two implementations:

- ``RedisJobStore`` (production, Celery mode): one JSON string per job, a sorted set
  of job ids by creation time (paging, newest first) and one set per state (the
  reaper scans only running jobs). Read-modify-write goes through WATCH/MULTI, so the
  API setting ``cancel_requested`` and the worker writing progress never lose each
  other's update.
- ``SqliteJobStore`` (embedded default, no Redis): one SQLite file under
  ``artifacts_dir``. Chosen over JSON files because the API process and the job's
  child process write the same record concurrently (cancel vs progress): SQLite gives
  atomic read-modify-write (``BEGIN IMMEDIATE``), an index for newest-first paging and
  for "oldest queued job", and lock rows with an expiry, all in the standard library.

Both also hold *job locks*: a name -> owner entry with a TTL. The worker running a job
holds the job's lock and its heartbeat refreshes it, so a re-delivered task never runs
the same job twice at once, and a job that is "running" with no lock and an old
heartbeat lost its worker (``reap_stale_jobs``). Torch-free: the API imports it.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sqlite3
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contracts.errors import JobNotFound, JobStoreUnavailable
from contracts.jobs import JobRecord, JobState

log = logging.getLogger(__name__)

# Job ids are generated here (uuid4 hex); anything else never reaches a key or a path.
JOB_ID_PATTERN = r"^[0-9a-f]{32}$"
_JOB_ID_RE = re.compile(JOB_ID_PATTERN)

# Returns the changed record to write, or None to leave the record as it is.
Mutator = Callable[[JobRecord], JobRecord | None]


def now_utc() -> datetime:
    return datetime.now(UTC)


def new_job_id() -> str:
    return uuid.uuid4().hex


def check_job_id(job_id: str) -> str:
    if not _JOB_ID_RE.match(job_id):
        raise JobNotFound(f"no job {job_id!r} (job ids are 32 hex digits)")
    return job_id


class JobStore(ABC):
    """Job records plus named locks with a TTL."""

    def create(self, config: dict[str, object], job_id: str | None = None) -> JobRecord:
        now = now_utc()
        record = JobRecord(
            job_id=check_job_id(job_id or new_job_id()),
            config=config,
            created_at=now,
            updated_at=now,
            queued_at=now,
        )
        self._insert(record)
        return record

    @abstractmethod
    def _insert(self, record: JobRecord) -> None: ...

    @abstractmethod
    def get(self, job_id: str) -> JobRecord:
        """The record; ``JobNotFound`` if there is none."""

    @abstractmethod
    def list_jobs(self, offset: int = 0, limit: int = 20) -> tuple[list[JobRecord], int]:
        """A page of records, newest first, and the total number of jobs."""

    @abstractmethod
    def ids_in_state(self, state: JobState) -> list[str]:
        """Ids of the jobs in ``state``, oldest first."""

    @abstractmethod
    def update(self, job_id: str, mutate: Mutator) -> tuple[JobRecord, bool]:
        """Atomically apply ``mutate`` to the current record.

        Returns the record as it now is and whether ``mutate`` changed it. ``mutate``
        may run more than once (optimistic retry), so it must not have side effects.
        """

    @abstractmethod
    def acquire_lock(self, name: str, owner: str, ttl: float) -> bool:
        """Take the lock if nobody holds it (or it expired)."""

    @abstractmethod
    def refresh_lock(self, name: str, owner: str, ttl: float) -> bool:
        """Extend the lock's TTL; False if ``owner`` no longer holds it."""

    @abstractmethod
    def release_lock(self, name: str, owner: str) -> None:
        """Drop the lock if ``owner`` still holds it."""

    @abstractmethod
    def lock_holder(self, name: str) -> str | None: ...

    def close(self) -> None:
        return None


def _stamp(record: JobRecord) -> JobRecord:
    record.updated_at = now_utc()
    return record


# ----------------------------------------------------------------------------- Redis

# Refresh only our own lock: a lock that expired and was taken by another worker stays theirs.
_REFRESH_LUA = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE_LUA = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


def redact_url(url: str) -> str:
    """``redis://:secret@host`` -> ``redis://***@host``: URLs reach messages, secrets must not."""
    return re.sub(r"//[^@/]*@", "//***@", url)


class RedisJobStore(JobStore):
    def __init__(self, url: str, prefix: str = "lugpi:", connect_timeout: float = 2.0) -> None:
        import redis  # here, not at module level: the embedded install may lack redis-py

        # Every Redis error, not only a lost connection: a replica that turned read-only
        # in a failover (ReadOnlyError), an out-of-memory refusal... WatchError never gets
        # here (update() retries it).
        self._errors: tuple[type[BaseException], ...] = (redis.exceptions.RedisError,)
        self._watch_error = redis.exceptions.WatchError
        self.url = redact_url(url)
        self._prefix = prefix
        # Short timeouts: with Redis down, /jobs must answer 503 in seconds, not hang.
        self._redis: Any = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=connect_timeout,
            socket_timeout=max(5.0, connect_timeout),
        )
        self._refresh = self._redis.register_script(_REFRESH_LUA)
        self._release = self._redis.register_script(_RELEASE_LUA)

    def _job_key(self, job_id: str) -> str:
        return f"{self._prefix}job:{check_job_id(job_id)}"

    def _state_key(self, state: JobState) -> str:
        return f"{self._prefix}jobs:{state.value}"

    def _lock_key(self, name: str) -> str:
        return f"{self._prefix}lock:{name}"

    @property
    def _index_key(self) -> str:
        return f"{self._prefix}jobs"

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except self._errors as e:
            raise JobStoreUnavailable(f"job store (Redis at {self.url}) unreachable: {e}") from e

    def _insert(self, record: JobRecord) -> None:
        with self._guard(), self._redis.pipeline() as pipe:
            pipe.set(self._job_key(record.job_id), record.model_dump_json())
            pipe.zadd(self._index_key, {record.job_id: record.created_at.timestamp()})
            pipe.sadd(self._state_key(record.state), record.job_id)
            pipe.execute()

    def get(self, job_id: str) -> JobRecord:
        with self._guard():
            raw = self._redis.get(self._job_key(job_id))
        if raw is None:
            raise JobNotFound(f"no job {job_id!r}")
        return JobRecord.model_validate_json(raw)

    def list_jobs(self, offset: int = 0, limit: int = 20) -> tuple[list[JobRecord], int]:
        with self._guard():
            ids = self._redis.zrevrange(self._index_key, offset, offset + limit - 1)
            total = int(self._redis.zcard(self._index_key))
            raws = self._redis.mget([self._job_key(i) for i in ids]) if ids else []
        return [JobRecord.model_validate_json(r) for r in raws if r is not None], total

    def ids_in_state(self, state: JobState) -> list[str]:
        with self._guard():
            ids = list(self._redis.smembers(self._state_key(state)))
            scores = self._redis.zmscore(self._index_key, ids) if ids else []
        return [i for _, i in sorted(zip((s or 0.0 for s in scores), ids, strict=True))]

    def update(self, job_id: str, mutate: Mutator) -> tuple[JobRecord, bool]:
        key = self._job_key(job_id)
        with self._guard(), self._redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    if raw is None:
                        raise JobNotFound(f"no job {job_id!r}")
                    old = JobRecord.model_validate_json(raw)
                    new = mutate(old.model_copy(deep=True))
                    if new is None:
                        pipe.unwatch()
                        return old, False
                    pipe.multi()
                    pipe.set(key, _stamp(new).model_dump_json())
                    if new.state != old.state:
                        pipe.srem(self._state_key(old.state), job_id)
                        pipe.sadd(self._state_key(new.state), job_id)
                    pipe.execute()
                    return new, True
                except self._watch_error:
                    continue  # someone wrote the record between WATCH and EXEC: redo

    def acquire_lock(self, name: str, owner: str, ttl: float) -> bool:
        with self._guard():
            return bool(self._redis.set(self._lock_key(name), owner, nx=True, px=int(ttl * 1000)))

    def refresh_lock(self, name: str, owner: str, ttl: float) -> bool:
        with self._guard():
            return bool(self._refresh(keys=[self._lock_key(name)], args=[owner, int(ttl * 1000)]))

    def release_lock(self, name: str, owner: str) -> None:
        with self._guard():
            self._release(keys=[self._lock_key(name)], args=[owner])

    def lock_holder(self, name: str) -> str | None:
        with self._guard():
            holder = self._redis.get(self._lock_key(name))
        return str(holder) if holder is not None else None

    def close(self) -> None:
        self._redis.close()


# ---------------------------------------------------------------------------- SQLite

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY, created REAL NOT NULL, state TEXT NOT NULL, record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_by_created ON jobs (created);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, created);
CREATE TABLE IF NOT EXISTS locks (
    name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires REAL NOT NULL);
"""


class SqliteJobStore(JobStore):
    """The embedded store: ``<artifacts_dir>/jobs.sqlite3``, shared by the API and job processes."""

    FILE_NAME = "jobs.sqlite3"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._mutex = threading.Lock()
        with self._guard():
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise sqlite3.OperationalError(f"cannot create {self.path.parent}: {e}") from e
            # One connection per store, used under a lock: the API calls from threadpool
            # threads.
            self._conn = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            with self._mutex:
                # WAL: readers (GET /jobs) never wait for the job process's writes.
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.executescript(_SCHEMA)

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """SQLite's errors (locked, disk full or failing, a corrupt file) are the store
        being unavailable, which callers answer with 503, not an internal error."""
        try:
            yield
        except sqlite3.Error as e:
            raise JobStoreUnavailable(f"job store ({self.path}) failed: {e}") from e

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: BEGIN IMMEDIATE takes the write lock up front, so
        read-modify-write is atomic across processes. Whatever fails inside, COMMIT
        included, is rolled back: the connection is shared, and one left inside a
        transaction would refuse every later write."""
        with self._guard(), self._mutex:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    try:
                        self._conn.execute("ROLLBACK")
                    except sqlite3.Error as e:
                        log.error("job store %s: rollback failed: %s", self.path, e)
                raise

    def _query(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with self._guard(), self._mutex:
            return self._conn.execute(sql, args).fetchall()

    def _insert(self, record: JobRecord) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT INTO jobs (job_id, created, state, record) VALUES (?, ?, ?, ?)",
                (
                    record.job_id,
                    record.created_at.timestamp(),
                    record.state.value,
                    record.model_dump_json(),
                ),
            )

    def get(self, job_id: str) -> JobRecord:
        rows = self._query("SELECT record FROM jobs WHERE job_id = ?", (check_job_id(job_id),))
        if not rows:
            raise JobNotFound(f"no job {job_id!r}")
        return JobRecord.model_validate_json(rows[0][0])

    def list_jobs(self, offset: int = 0, limit: int = 20) -> tuple[list[JobRecord], int]:
        rows = self._query(
            "SELECT record FROM jobs ORDER BY created DESC LIMIT ? OFFSET ?", (limit, offset)
        )
        total = self._query("SELECT COUNT(*) FROM jobs")[0][0]
        return [JobRecord.model_validate_json(r[0]) for r in rows], int(total)

    def ids_in_state(self, state: JobState) -> list[str]:
        rows = self._query(
            "SELECT job_id FROM jobs WHERE state = ? ORDER BY created", (state.value,)
        )
        return [r[0] for r in rows]

    def update(self, job_id: str, mutate: Mutator) -> tuple[JobRecord, bool]:
        with self._tx() as c:
            row = c.execute(
                "SELECT record FROM jobs WHERE job_id = ?", (check_job_id(job_id),)
            ).fetchone()
            if row is None:
                raise JobNotFound(f"no job {job_id!r}")
            old = JobRecord.model_validate_json(row[0])
            new = mutate(old.model_copy(deep=True))
            if new is None:
                return old, False
            c.execute(
                "UPDATE jobs SET state = ?, record = ? WHERE job_id = ?",
                (new.state.value, _stamp(new).model_dump_json(), job_id),
            )
            return new, True

    def acquire_lock(self, name: str, owner: str, ttl: float) -> bool:
        now = time.time()
        with self._tx() as c:
            row = c.execute("SELECT owner, expires FROM locks WHERE name = ?", (name,)).fetchone()
            if row is not None and row[1] > now:
                return False
            c.execute(
                "INSERT OR REPLACE INTO locks (name, owner, expires) VALUES (?, ?, ?)",
                (name, owner, now + ttl),
            )
            return True

    def refresh_lock(self, name: str, owner: str, ttl: float) -> bool:
        now = time.time()
        with self._tx() as c:
            cur = c.execute(
                "UPDATE locks SET expires = ? WHERE name = ? AND owner = ? AND expires > ?",
                (now + ttl, name, owner, now),
            )
            return cur.rowcount == 1

    def release_lock(self, name: str, owner: str) -> None:
        with self._tx() as c:
            c.execute("DELETE FROM locks WHERE name = ? AND owner = ?", (name, owner))

    def lock_holder(self, name: str) -> str | None:
        rows = self._query(
            "SELECT owner FROM locks WHERE name = ? AND expires > ?", (name, time.time())
        )
        return rows[0][0] if rows else None

    def close(self) -> None:
        with self._mutex, contextlib.suppress(sqlite3.Error):
            self._conn.close()


def open_jobstore(redis_url: str | None, artifacts_dir: Path) -> JobStore:
    """Redis when a URL is configured, else the embedded SQLite file under ``artifacts_dir``."""
    if redis_url:
        return RedisJobStore(redis_url)
    return SqliteJobStore(Path(artifacts_dir) / SqliteJobStore.FILE_NAME)
