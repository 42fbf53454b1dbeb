"""Several GPUs of one machine: data-parallel training under ``torchrun``.

    torchrun --nproc_per_node=4 -m training.cli run paper --run-dir runs/paper

torchrun starts one process per GPU and sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``;
nothing here starts processes. Every process runs the same command. The three training
stages (teacher, distill, baseline) run on every rank: ``training/train_loop.fit`` wraps
the trainable modules in ``DistributedDataParallel`` and gives each rank its slice of every
(global) batch, so epochs, steps, batch size and learning rate mean the same with 1 or N
processes. Everything else (prepare, generate, evaluate, export, publish, every write of
an artifact) runs on rank 0 while the other ranks wait at a barrier, so each file is
written once.

Without torchrun (``WORLD_SIZE`` unset or 1) every function here is a no-op and torch's
distributed package is never initialised. This module imports no torch at load time: the
pipeline (which the API's job checks import) stays torch-free.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

T = TypeVar("T")
# How long a rank waits at exit for its peers before leaving the group alone (gloo only;
# other backends leave at once).
EXIT_BARRIER_S = 60


@dataclass(frozen=True)
class World:
    size: int
    rank: int
    local_rank: int

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = World(1, 0, 0)


def world() -> World:
    """This process's place in a torchrun launch (size 1 outside of one)."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as e:
        raise RuntimeError(f"WORLD_SIZE/RANK/LOCAL_RANK must be integers: {e}") from e
    return World(max(size, 1), rank, local)


def init() -> World:
    """Join the process group once and return the world. NCCL carries CUDA tensors and gloo
    CPU ones, so a run with ``device: cpu`` on a GPU machine works too."""
    w = world()
    if not w.distributed:
        return w
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        # Ranks 1..N-1 wait at a barrier while rank 0 generates every image, which takes
        # hours for a large dataset; torchrun stops them all if rank 0 fails instead.
        timeout = timedelta(hours=24)
        if torch.cuda.is_available():
            torch.cuda.set_device(w.local_rank)
            dist.init_process_group(backend="cpu:gloo,cuda:nccl", timeout=timeout)
        else:
            dist.init_process_group(backend="gloo", timeout=timeout)
        # A group still alive when the interpreter finalises lets gloo's worker threads
        # outlive Python: the process then aborts ("terminate called without an active
        # exception", SIGABRT) after its work is done, and torchrun reports the run failed.
        atexit.register(shutdown)
    return w


def shutdown() -> None:
    """Leave the process group (a no-op outside torchrun or when already left)."""
    if not world().distributed:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        # Leave together. A rank that destroyed its gloo group while its peer was still
        # tearing down (or already gone) aborted in gloo's threads ("terminate called
        # without an active exception"), in a loaded CI run even with this function run
        # at exit. The timeout bounds the wait when a peer has died: then leave anyway.
        with contextlib.suppress(Exception):  # a peer that failed or left: nothing to wait for
            dist.monitored_barrier(timeout=timedelta(seconds=EXIT_BARRIER_S))
        dist.destroy_process_group()


def barrier() -> None:
    if not world().distributed:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()


def on_main(fn: Callable[[], T]) -> T | None:
    """Run ``fn`` on rank 0 only, then wait until it is done everywhere; None elsewhere."""
    w = world()
    if not w.distributed:
        return fn()
    init()
    result = fn() if w.is_main else None
    barrier()
    return result
