"""How a stage reports progress and learns it was cancelled.

Every stage function takes a ``RunContext``. The CLI's context draws progress
bars; the worker's writes the job record and raises ``Cancelled`` when the job
was cancelled. Stages call ``ctx.step(...)`` once per batch, which is both the
progress report and the cancellation point ("stops at the next batch").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from contracts.errors import Cancelled
from contracts.jobs import Stage

ReportFn = Callable[[Stage, int, int, str], None]


def _no_report(stage: Stage, done: int, total: int, message: str) -> None:
    return None


def _never() -> bool:
    return False


@dataclass
class RunContext:
    report: ReportFn = field(default=_no_report)
    cancel_requested: Callable[[], bool] = field(default=_never)
    # The slice (lo, hi) of the current stage that the counts reported now cover; nested
    # ``part`` blocks narrow it. A job's overall fraction reads it; progress bars do not.
    stage_part: tuple[float, float] = (0.0, 1.0)

    @contextmanager
    def part(self, lo: float, hi: float) -> Iterator[None]:
        """Counts reported inside cover [lo, hi] of what the enclosing part covers, e.g. a
        cheap pass then training: ``with ctx.part(0, 0.1): ...`` then ``ctx.part(0.1, 1)``."""
        outer = self.stage_part
        a, b = outer
        self.stage_part = (a + (b - a) * lo, a + (b - a) * hi)
        try:
            yield
        finally:
            self.stage_part = outer

    def step(self, stage: Stage, done: int, total: int, message: str = "") -> None:
        """Report ``done``/``total`` for ``stage``; raise ``Cancelled`` if asked to stop."""
        self.report(stage, done, total, message)
        if self.cancel_requested():
            raise Cancelled(f"cancelled during {stage.value} at {done}/{total}")
