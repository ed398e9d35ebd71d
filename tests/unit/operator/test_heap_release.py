"""`heap_release`: the glibc knobs that give a burst's heap back, and the loop that trims."""

from __future__ import annotations

import asyncio
import itertools
import platform

import pytest

from flowable_worker_operator import heap_release

GLIBC = platform.libc_ver()[0] == "glibc"


def test_on_glibc_a_trim_runs_and_says_whether_it_released() -> None:
    release = heap_release.trimmer()
    if not GLIBC:  # musl, macOS: no such call, and nothing pretends to have one
        assert release is None
        return
    assert release is not None
    garbage = [bytearray(4096) for _ in range(20_000)]  # ~80 MB from malloc, then freed
    del garbage
    assert release() in (0, 1)


def test_on_glibc_the_arena_cap_is_taken() -> None:
    assert heap_release.limit_arenas(heap_release.ARENAS) is GLIBC


def test_without_glibc_nothing_is_done(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap_release, "_libc", lambda: None)
    assert heap_release.trimmer() is None
    assert heap_release.limit_arenas() is False


async def test_the_loop_trims_once_per_period_until_cancelled() -> None:
    loop = asyncio.get_running_loop()
    trims: list[float] = []
    third = asyncio.Event()

    def release() -> int:
        trims.append(loop.time())
        if len(trims) == 3:
            third.set()
        return 1

    started = loop.time()
    task = asyncio.ensure_future(heap_release.release_periodically(0.05, release))
    await asyncio.wait_for(third.wait(), timeout=5.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert trims[0] - started >= 0.045  # a period first: no trim at start
    assert all(b - a >= 0.045 for a, b in itertools.pairwise(trims))
    count = len(trims)
    await asyncio.sleep(0.15)
    assert len(trims) == count  # nothing after the cancel


async def test_without_a_trimmer_the_loop_ends_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap_release, "_libc", lambda: None)
    await asyncio.wait_for(heap_release.release_periodically(3600.0), timeout=1.0)
