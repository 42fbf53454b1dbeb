"""Stand-in job stages for the chaos tests, run where the real pipeline would run.

``scripted`` has the signature of ``worker.execute.execute_pipeline`` and does what the
run's ``plan.json`` says: report a number of steps (each one logged with the process id
and the time, so tests can see which attempt wrote when), then return or hang. Torch-free,
so a job process starts in about a second.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts.jobs import Stage

PLAN_FILE, STEPS_FILE = "plan.json", "steps.log"


@dataclass
class ScriptedResult:
    metrics: dict[str, Any] = field(default_factory=dict)
    published: tuple[str, str] | None = None
    gate: dict[str, Any] | None = None  # PipelineResult.gate: the publish gate's decision


def write_plan(run_dir: Path, *, steps: int, interval: float = 0.05, then: str = "return") -> None:
    """``then``: "return" (the job succeeds) or "hang" (sleeps for an hour, never stepping:
    a stage stuck in a model load or a deadlock)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    plan = {"steps": steps, "interval": interval, "then": then}
    (run_dir / PLAN_FILE).write_text(json.dumps(plan))


def read_steps(run_dir: Path) -> list[tuple[int, float]]:
    """(pid, time) of every step the stage reported, in order."""
    path = run_dir / STEPS_FILE
    if not path.is_file():
        return []
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    return [(int(pid), float(t)) for pid, t, *_ in rows]


def scripted(
    cfg: Any, job_id: str, settings: Any, reporter: Any, fan_out: Any, *, worker: str
) -> ScriptedResult:
    run_dir = Path(settings.artifacts_dir) / "runs" / job_id
    plan = json.loads((run_dir / PLAN_FILE).read_text())
    ctx = reporter.context()
    for i in range(plan["steps"]):
        ctx.step(Stage.PREPARE, i, plan["steps"], "scripted step")
        with (run_dir / STEPS_FILE).open("a") as f:
            f.write(f"{os.getpid()} {time.time()} {i}\n")
        time.sleep(plan["interval"])
    if plan["then"] == "hang":
        time.sleep(3600)
    return ScriptedResult()
