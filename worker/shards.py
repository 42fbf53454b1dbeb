"""Generation spread over workers: shard tasks plus work claiming.

Three kinds of work are sharded (``training.sharding.ShardKind``): the generate stage's
images, the tgt stage's generated texts, and then their images. The job's own task sends
one ``generate_shard`` task per unfinished shard, naming its kind (any worker takes them;
it rebuilds the same work list from the job's config and run directory), then works
alongside: it claims every shard that nobody holds, runs it,
and waits for the shards other workers hold. A shard is claimed by a lock with a TTL
(refreshed while it runs) and is done when all its images are in the content-addressed
cache (training/generation/generate_images.py). Why not a Celery chord: a chord's callback
never fires if one shard's worker dies (its message returns only after the visibility timeout,
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
from training.generation.generate_images import plan_generation, resolve_cache_dir
from training.generation.images import LazyPipeline
from training.generation.texts import LazyTextGenerator
from training.sharding import SHARD_KINDS, Shard, ShardedWork, ShardKind
from training.tracking.progress import RunContext
from worker.job_context import STOPPING, FanOut
from worker.locks import LockKeeper, lock_owner
from worker.settings import WorkerSettings

log = logging.getLogger(__name__)


def shard_lock(job_id: str, shard: int, kind: ShardKind = "images") -> str:
    return f"{job_id}:shard:{shard}" if kind == "images" else f"{job_id}:{kind}:shard:{shard}"


_pipe: tuple[str, LazyPipeline] | None = None
_text_gen: tuple[str, LazyTextGenerator] | None = None


def cached_pipeline(cfg: PipelineConfig, cache_dir: Path) -> LazyPipeline:
    """The generator of this worker process, kept between shard tasks: loading it is often
    slower than drawing one shard. Only the last one is kept (GPU memory)."""
    global _pipe
    key = cfg.generator.model_dump_json(exclude={"batch_size", "num_shards"}) + str(cache_dir)
    if _pipe is None or _pipe[0] != key:
        _pipe = (key, LazyPipeline(cfg, cache_dir))
    return _pipe[1]


def cached_text_generator(cfg: PipelineConfig, cache_dir: Path) -> LazyTextGenerator:
    """Like ``cached_pipeline``, for the text generator of the tgt stage."""
    global _text_gen
    key = cfg.text_generator.model_dump_json(exclude={"batch_size", "num_shards"}) + str(cache_dir)
    if _text_gen is None or _text_gen[0] != key:
        _text_gen = (key, LazyTextGenerator(cfg, cache_dir))
    return _text_gen[1]


def shard_work(kind: ShardKind, cfg: PipelineConfig, run_dir: Path) -> ShardedWork:
    """The work list a shard of ``kind`` belongs to, rebuilt from the job's config and run
    directory exactly as the job's own task built it."""
    from training.data.prepare import load_prepared, student_view
    from training.generation.texts import plan_texts, resolve_text_cache, text_work
    from training.tgt.texts import image_plan, neighbour_requests, stage_texts

    layout = RunLayout(run_dir)
    data = load_prepared(layout.data)
    if kind == "images":
        plan = plan_generation(cfg, data, resolve_cache_dir(cfg, layout.images))
        return plan.work(cfg, cached_pipeline(cfg, plan.cache_dir))
    data = student_view(cfg, data)  # the tgt stage explores around the students' texts
    requests = neighbour_requests(cfg, data)
    texts = plan_texts(cfg, requests, resolve_text_cache(cfg, run_dir))
    if kind == "texts":
        return text_work(cfg, texts, cached_text_generator(cfg, texts.cache_dir))
    # tgt-images: only sent once every text is generated (the stage draws after them);
    # the rows of every origin, as the stage keeps them (masked-LM and latent samples).
    rows = stage_texts(cfg, data, texts.cache_dir, RunContext()).rows
    iplan = image_plan(cfg, rows, layout.image_cache(cfg.generator.cache_dir))
    return iplan.work(cfg, cached_pipeline(cfg, iplan.cache_dir), Stage.TGT, "tgt-images")


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
            self.fan_out(self.job_id, s.index, work.kind)
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
                (s for s in left if self.store.acquire_lock(self._lock(s, work), owner, ttl)),
                None,
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

            keeper = LockKeeper(self.store, self._lock(mine, work), owner, self.settings)
            with keeper, shard_log(self.job_id, mine, self.worker, work.kind):
                work.run(mine, RunContext(report, ctx.cancel_requested))

    def _lock(self, shard: Shard, work: ShardedWork) -> str:
        return shard_lock(self.job_id, shard.index, work.kind)


@contextlib.contextmanager
def shard_log(job_id: str, shard: Shard, worker: str, kind: ShardKind = "images") -> Iterator[None]:
    """Log which worker drew which shard, and how long it took: how the work was split
    (tests/deploy reads these lines from the containers' logs)."""
    size, what = shard.stop - shard.start, {"texts": "texts"}.get(kind, "images")
    name = "shard" if kind == "images" else f"{kind} shard"
    log.info("job %s: %s %d (%d %s) started on %s", job_id, name, shard.index, size, what, worker)
    t0 = time.monotonic()
    yield
    seconds = time.monotonic() - t0
    log.info("job %s: %s %d done on %s in %.1f s", job_id, name, shard.index, worker, seconds)


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
    store: JobStore,
    job_id: str,
    shard: int,
    settings: WorkerSettings,
    *,
    worker: str,
    kind: ShardKind = "images",
) -> bool:
    """The ``generate_shard`` task: run one shard of ``kind`` unless it is done, held, or
    the job is over. Returns whether this call ran it."""
    if kind not in SHARD_KINDS:
        raise ValueError(f"unknown shard kind {kind!r}; one of {SHARD_KINDS}")
    try:
        rec = store.get(job_id)
    except JobNotFound:
        return False
    if rec.state is not JobState.RUNNING and rec.state is not JobState.QUEUED:
        return False
    cfg = PipelineConfig.model_validate(rec.config)
    work = shard_work(kind, cfg, settings.run_dir(job_id))
    if shard >= len(work.shards) or work.done_in(work.shards[shard]) == work.shards[shard].size:
        return False
    owner, lock = lock_owner(worker), shard_lock(job_id, shard, kind)
    if not store.acquire_lock(lock, owner, settings.stale_after_s):
        return False  # the job's own task (or another worker) is on it
    with LockKeeper(store, lock, owner, settings):
        try:
            stop = _StopCheck(store, job_id)
            ctx = RunContext(cancel_requested=stop)
            with shard_log(job_id, work.shards[shard], worker, kind):
                work.run(work.shards[shard], ctx)
        except Cancelled:
            log.info("job %s: %s shard %d abandoned (%s)", job_id, kind, shard, stop.why)
            return False
    return True
