"""Image generation spread over workers: shard tasks plus work claiming.

The job's own task sends one ``generate_shard`` task per unfinished shard (any worker
takes them), then works alongside: it claims every shard that nobody holds, runs it,
and waits for the shards other workers hold. A shard is claimed by a lock with a TTL
(refreshed while it runs) and is done when all its images are in the content-addressed
cache (training/generate.py). Why not a Celery chord: a chord's callback never fires
if one shard's worker dies (its message returns only after the visibility timeout,
hours), and a task that waits for a group inside a worker deadlocks when it is the
only worker. Here one worker does all shards itself; N workers split them; a dead
worker's shard lock expires and the job's task takes the shard over.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from contracts.config import PipelineConfig
from contracts.errors import Cancelled
from contracts.jobs import JobState, Stage
from contracts.layout import RunLayout
from jobs.store import JobNotFound, JobStore, JobStoreUnavailable
from training.generate import GenerationPlan, plan_generation, resolve_cache_dir, run_shard
from training.images import LazyPipeline
from training.progress import RunContext
from training.sharding import Shard, ShardedWork
from worker.job_context import STOPPING, FanOut
from worker.locks import LockKeeper, lock_owner
from worker.settings import WorkerSettings

log = logging.getLogger(__name__)


def shard_lock(job_id: str, shard: int) -> str:
    return f"{job_id}:shard:{shard}"


def shard_done(plan: GenerationPlan, shard: Shard) -> bool:
    return plan.cached(shard) == shard.size


_pipe: tuple[str, LazyPipeline] | None = None


def cached_pipeline(cfg: PipelineConfig, cache_dir: Path) -> LazyPipeline:
    """The generator of this worker process, kept between shard tasks: loading it is often
    slower than drawing one shard. Only the last one is kept (GPU memory)."""
    global _pipe
    key = cfg.generator.model_dump_json(exclude={"batch_size", "num_shards"}) + str(cache_dir)
    if _pipe is None or _pipe[0] != key:
        _pipe = (key, LazyPipeline(cfg, cache_dir))
    return _pipe[1]


def _plan(cfg: PipelineConfig, run_dir: Path) -> GenerationPlan:
    from training.data import load_prepared

    layout = RunLayout(run_dir)
    data = load_prepared(layout.data)
    return plan_generation(cfg, data, resolve_cache_dir(cfg, layout.images))


@dataclass
class WorkerShards:
    """The job's side of spreading its shards: send one task per unfinished shard, then
    claim and run every shard nobody holds, and wait for the ones other workers hold."""

    store: JobStore
    job_id: str
    settings: WorkerSettings
    worker: str
    fan_out: FanOut

    def run(self, work: ShardedWork, ctx: RunContext) -> None:
        for s in work.left():
            self.fan_out(self.job_id, s.index)
        owner = lock_owner(self.worker)
        total, shown = work.total, 0
        while True:
            done = work.done()
            shown = max(shown, done)
            left = work.left()
            ctx.step(work.stage, shown, total, f"{len(work.shards) - len(left)} shards done")
            if not left:
                return
            ttl = self.settings.stale_after_s
            mine = next(
                (s for s in left if self.store.acquire_lock(self._lock(s), owner, ttl)), None
            )
            if mine is None:
                time.sleep(0.5)  # the other workers hold the rest: wait for them
                continue
            # Report items of the other shards (as counted now) plus this shard's own.
            base = done - work.done_in(mine)

            def report(
                stage: Stage, d: int, t: int, msg: str, base: int = base, floor: int = shown
            ) -> None:
                ctx.report(stage, max(floor, base + d), total, msg)

            keeper = LockKeeper(self.store, self._lock(mine), owner, self.settings)
            with keeper, shard_log(self.job_id, mine, self.worker):
                work.run(mine, RunContext(report, ctx.cancel_requested))

    def _lock(self, shard: Shard) -> str:
        return shard_lock(self.job_id, shard.index)


@contextlib.contextmanager
def shard_log(job_id: str, shard: Shard, worker: str) -> Iterator[None]:
    """Log which worker drew which shard, and how long it took: how the work was split
    (tests/deploy reads these lines from the containers' logs)."""
    size = shard.stop - shard.start
    log.info("job %s: shard %d (%d images) started on %s", job_id, shard.index, size, worker)
    t0 = time.monotonic()
    yield
    log.info(
        "job %s: shard %d done on %s in %.1f s", job_id, shard.index, worker, time.monotonic() - t0
    )


class _StopCheck:
    """Cancellation for a shard task on another worker: read the job record at most
    once a second; stop when the job ended or was cancelled, or when this worker is
    shutting down (the shard is abandoned: its lock is released at once and the job's own
    task, which claims every shard nobody holds, draws the rest; its images so far stay
    cached)."""

    def __init__(self, store: JobStore, job_id: str) -> None:
        self.store, self.job_id, self._next, self._stop = store, job_id, 0.0, False
        self.why = "job cancelled or over"

    def __call__(self) -> bool:
        if STOPPING.is_set():
            self.why = "this worker is shutting down"
            return True
        if not self._stop and time.monotonic() >= self._next:
            self._next = time.monotonic() + 1.0
            try:
                rec = self.store.get(self.job_id)
                self._stop = rec.cancel_requested or rec.state.terminal
            except JobStoreUnavailable:
                pass
        return self._stop


def run_shard_for_job(
    store: JobStore, job_id: str, shard: int, settings: WorkerSettings, *, worker: str
) -> bool:
    """The ``generate_shard`` task: draw one shard unless it is done, held, or the job is
    over. Returns whether this call drew it."""
    try:
        rec = store.get(job_id)
    except JobNotFound:
        return False
    if rec.state is not JobState.RUNNING and rec.state is not JobState.QUEUED:
        return False
    run_dir = settings.run_dir(job_id)
    cfg = PipelineConfig.model_validate(rec.config)
    plan = _plan(cfg, run_dir)
    if shard >= len(plan.shards) or shard_done(plan, plan.shards[shard]):
        return False
    owner = lock_owner(worker)
    if not store.acquire_lock(shard_lock(job_id, shard), owner, settings.stale_after_s):
        return False  # the job's own task (or another worker) is on it
    with LockKeeper(store, shard_lock(job_id, shard), owner, settings):
        try:
            stop = _StopCheck(store, job_id)
            ctx = RunContext(cancel_requested=stop)
            with shard_log(job_id, plan.shards[shard], worker):
                run_shard(cfg, plan, shard, ctx, cached_pipeline(cfg, plan.cache_dir))
        except Cancelled:
            log.info("job %s: shard %d abandoned (%s)", job_id, shard, stop.why)
            return False
    return True
