"""``python -m tests.chaos.publish_child RUN_DIR REPO NAME KEEP_LAST [--die-before-record]``:
publish a run's export the way the pipeline does, in a process of its own. With
``--die-before-record`` the process dies (``os._exit``, no cleanup: a killed worker) right
after the version is renamed into the repository, before ``published.json`` is written."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import training.pipeline as pipeline
from contracts.config import PipelineConfig
from training.tracking.progress import RunContext


def main(argv: list[str]) -> int:
    run_dir, repository, name, keep_last = Path(argv[0]), Path(argv[1]), argv[2], int(argv[3])
    cfg = PipelineConfig.model_validate({"data": {"train": "unused"}, "export": {"name": name}})
    run = pipeline.Run(cfg, run_dir, RunContext())
    if "--die-before-record" in argv:
        write = pipeline.write_json_atomic

        def die_at_the_record(path: Path, obj: Any) -> None:
            if path == run.layout.published:
                os._exit(137)
            write(path, obj)

        pipeline.write_json_atomic = die_at_the_record  # type: ignore[assignment]
    published = run.publish(repository, keep_last=keep_last)
    print(" ".join(published))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
