"""Give the C heap back to the system after bursts: few malloc arenas, trimmed periodically.

The operator's live Python heap at 10,000 pools is about 0.35 GB, yet its resident size stayed
near three times that once they ticked (1.1 GB), and creating them took it to 3.5 GB on the
way (docs/benchmarks.md, "Memory at 10,000 pools"): glibc keeps what a burst (creating the
pools, their first ticks, a scrape) allocated in its arenas, one arena per thread that ever
allocated (up to eight per core), and gives memory back only from the top of each heap.
Python's own small-object arenas are released when empty, but dicts, lists and strings over
512 bytes come from malloc.
Two things bound that, both glibc's own knobs (what `MALLOC_ARENA_MAX` and `malloc_trim(3)` do
for a C program, done here so that the operator needs no environment variable to be lean):

- `limit_arenas`: at most `ARENAS` malloc arenas, so that the Kubernetes client's and the
  Deployment watches' threads share two heaps rather than spreading the peak over sixteen;
- `release_periodically`: every `TRIM_PERIOD` seconds, `malloc_trim(0)` returns the free pages of
  every arena (not only the top), which the operator's steady state then does not touch again.

Measured at 10,000 idle pools: the steady window's peak 1111 -> 893 MB, and a creation burst's
2.5 GB back to 0.7 GB at the next trim. What neither can do: lower the peak of a burst (a trim
comes after it), or give back a page that still holds one live object (about 0.8 GB just after
a trim at 10,000 pools, with Python's allocator or with plain malloc alike).

Elsewhere than on glibc (musl, macOS) both do nothing: those allocators have no such knobs.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable
from functools import cache

__all__ = ["ARENAS", "TRIM_PERIOD", "limit_arenas", "release_periodically", "trimmer"]

log = logging.getLogger(__name__)

ARENAS = 2
"""malloc arenas for the whole process: the event loop's and one for all threads."""

TRIM_PERIOD = 60.0
"""Seconds between trims: a trim of a 1 GB heap took about 5 ms of the loop on a 2-core machine."""

_M_ARENA_MAX = -8
"""mallopt's parameter number for the arena limit (glibc's malloc.h)."""


@cache
def _libc() -> ctypes.CDLL | None:
    """The C library if it is glibc (it has `malloc_trim`), else None."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    if not hasattr(libc, "malloc_trim") or not hasattr(libc, "mallopt"):
        return None
    return libc


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas at `arenas`; True if the allocator took it.

    Call it early, before threads start: an arena once made stays."""
    libc = _libc()
    if libc is None:
        return False
    return bool(libc.mallopt(ctypes.c_int(_M_ARENA_MAX), ctypes.c_int(arenas)))


def trimmer() -> Callable[[], int] | None:
    """A call that returns free heap pages to the system (1 if some were), or None off glibc."""
    libc = _libc()
    if libc is None:
        return None
    trim = libc.malloc_trim

    def release() -> int:
        return int(trim(ctypes.c_size_t(0)))

    return release


async def release_periodically(
    period: float = TRIM_PERIOD, release: Callable[[], int] | None = None
) -> None:
    """Trim the heap every `period` seconds until cancelled; return at once without a trimmer."""
    release = release if release is not None else trimmer()
    if release is None:
        log.debug("no malloc_trim on this C library: the heap is left to the allocator")
        return
    while True:
        await asyncio.sleep(period)
        release()
