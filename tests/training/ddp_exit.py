"""Join the process group through ``training.distributed.init`` and record, at exit,
whether the group was left before the interpreter finalised.

    python -m torch.distributed.run --standalone --nproc_per_node 2 \\
        tests/training/ddp_exit.py OUT_PREFIX

atexit handlers run last-registered first: the probe is registered BEFORE ``init``, so it
runs after any handler ``init`` registers and sees the group as the interpreter will.
"""

from __future__ import annotations

import atexit
import sys
from pathlib import Path

import torch.distributed as dist

from training.distributed import barrier, init, world


def main(prefix: str) -> None:
    out = Path(f"{prefix}.rank{world().rank}.txt")
    atexit.register(lambda: out.write_text(str(dist.is_initialized())))
    init()
    barrier()


if __name__ == "__main__":
    main(sys.argv[1])
