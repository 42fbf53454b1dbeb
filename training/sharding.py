"""Work split into shards, and the strategies that run them.

A stage that can be split (generate: one image per sample; tgt: one text per draw, then
one image per kept text) describes its work as
``ShardedWork``: contiguous shards, how many items each has done, and how to do the rest
of one shard. It does not decide where shards run: the pipeline hands it a
``ShardStrategy``. ``InProcess`` runs them here, one after another (the CLI, a single
worker); the worker's strategy (worker/shards.py) hands them to every idle worker and
claims the unheld ones itself. Every strategy leaves every shard done, or raises.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from contracts.jobs import Stage
from training.tracking.progress import RunContext


@dataclass(frozen=True)
class Shard:
    index: int
    start: int  # range [start, stop) of the work's items
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


def plan_shards(n_items: int, num_shards: int) -> list[Shard]:
    """``num_shards`` contiguous ranges covering ``range(n_items)`` once (some may be empty)."""
    size, extra = divmod(n_items, num_shards)
    shards, start = [], 0
    for i in range(num_shards):
        stop = start + size + (1 if i < extra else 0)
        shards.append(Shard(i, start, stop))
        start = stop
    return shards


# Which work list a shard belongs to: a strategy that sends shards to other processes
# names it, so that the receiver rebuilds the same list (worker/shards.py).
ShardKind = Literal["images", "texts", "tgt-images"]
SHARD_KINDS: tuple[ShardKind, ...] = ("images", "texts", "tgt-images")


@dataclass
class ShardedWork:
    """What a strategy needs to know of a stage's work."""

    stage: Stage
    kind: ShardKind
    shards: list[Shard]
    done_in: Callable[[Shard], int]  # items of the shard already done (e.g. cached)
    # Do the missing items of one shard, reporting (done, shard size) to the context.
    run: Callable[[Shard, RunContext], None]

    @property
    def total(self) -> int:
        return sum(s.size for s in self.shards)

    def done(self) -> int:
        return sum(self.done_in(s) for s in self.shards)

    def left(self) -> list[Shard]:
        return [s for s in self.shards if self.done_in(s) < s.size]


class ShardStrategy(Protocol):
    def run(self, work: ShardedWork, ctx: RunContext) -> None:
        """Leave every shard of ``work`` done, reporting progress over all of them."""


class InProcess:
    """Every shard here, one after another."""

    def run(self, work: ShardedWork, ctx: RunContext) -> None:
        total = work.total
        for shard in work.shards:
            offset = shard.start

            def report(stage: Stage, done: int, _: int, msg: str, offset: int = offset) -> None:
                ctx.report(stage, offset + done, total, msg)

            work.run(shard, RunContext(report, ctx.cancel_requested))
