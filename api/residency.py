"""Which loaded model versions to unload: an LRU under a count bound and a memory bound.

Each model's default version stays loaded (the traffic that names no version must never
wait for a load); every other version is loaded on its first request and, once the
process holds more than ``LUGPI_MAX_LOADED_VERSIONS`` versions or more than
``LUGPI_MAX_LOADED_MB`` of them, the least recently used non-default versions are
unloaded first. ``plan_evictions`` is the policy, a pure function; the registry applies it.

Memory per version is what the process's resident set grew by while it loaded (session,
arena after the warm-up, tokenizer), never less than its graph file: the figure an
operator can check against ``ps``. It is measured under the registry's load lock, so two
loads never share a delta, though a request running meanwhile may add to one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

Key = tuple[str, str]  # (model name, version)

MB = 1024 * 1024


@dataclass(frozen=True)
class Resident:
    key: Key
    memory_bytes: int
    last_used: float  # time.monotonic() of its last request (or of its load)
    warm: bool  # its model's default version: never unloaded by the LRU


def plan_evictions(
    residents: Sequence[Resident],
    max_versions: int,
    max_bytes: int | None,
    incoming_bytes: int = 0,
    incoming: int = 0,
) -> list[Key] | None:
    """The versions to unload, least recently used first, so that the residents plus
    ``incoming`` versions of ``incoming_bytes`` fit both bounds; None when they cannot fit
    even with every non-default version unloaded (the defaults alone fill a bound)."""
    count = len(residents) + incoming
    used = sum(r.memory_bytes for r in residents) + incoming_bytes
    drop: list[Key] = []
    for r in sorted((r for r in residents if not r.warm), key=lambda r: r.last_used):
        if count <= max_versions and (max_bytes is None or used <= max_bytes):
            break
        drop.append(r.key)
        count -= 1
        used -= r.memory_bytes
    if count > max_versions or (max_bytes is not None and used > max_bytes):
        return None
    return drop


def resident_bytes() -> int | None:
    """This process's resident set size (Linux /proc), None where it cannot be read."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")
