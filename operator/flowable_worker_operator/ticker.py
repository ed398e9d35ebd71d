"""One clock for every pool: each pool's next tick in one heap, run by one task.

A pool used to have a kopf daemon of its own: a task that ticked, then slept until its next tick.
At 1000 pools the heap held 11.9 KB a pool for kopf's daemon machinery (its task, the coroutines
around ours, its stopper and loggers), and that grows with every pool a replica keeps. Here each
pool is a key with a due time: one task sleeps until the earliest is due (one timer, whatever the
number of pools), starts that pool's tick as a task of its own, and files the pool again at the
time the tick asks for. A pool's ticks never overlap, a wake-up during a tick makes the next one
come at once, and removing a pool waits for the tick it is in.

A new pool's first tick is the costly one: it creates the pool's Deployment, writes its first
status, posts its first Events, each a call to the API server on a worker thread. When thousands of
pools come at once (created together, or all of them when the operator starts), starting every
first tick at once left about 10,000 ticks in flight waiting for those threads, each holding what
it had built, and that peak (about 0.4 GB at 10,000 pools) left the allocator's arenas part-used
for good after it (docs/benchmarks.md, "The creation's peak"). So at most `first_ticks` first
ticks run at once; the other new keys that are due wait in line, in the order they came due, and
a pool's later ticks never wait for that line.

What a tick does and how long it waits is the caller's (`handlers`); this module only keeps time.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["Ticker"]

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)


class Ticker(Generic[K]):
    """Runs `tick(key)` for every added key, each again after the seconds its last run returned.

    A tick that raises is logged and run again after `error_pause` seconds. `remove` and `stop`
    give a tick in flight `grace` seconds to end, then cancel it; it is not run again. At most
    `first_ticks` keys run their first tick at once (None: no bound)."""

    def __init__(
        self,
        tick: Callable[[K], Awaitable[float]],
        *,
        error_pause: float = 10.0,
        grace: float = 10.0,
        first_ticks: int | None = None,
    ) -> None:
        if first_ticks is not None and first_ticks < 1:
            raise ValueError(f"first_ticks must be at least 1, not {first_ticks}")
        self._tick = tick
        self._error_pause = error_pause
        self._grace = grace
        self._first_ticks = first_ticks
        self._new: set[K] = set()
        """Keys added whose first tick has not started."""
        self._firsts = 0
        """First ticks running."""
        self._line: deque[K] = deque()
        self._in_line: set[K] = set()
        """New keys that came due while `first_ticks` first ticks ran, in the order they did (the
        deque may hold keys removed since: only those in the set are still in line)."""
        self._keys: set[K] = set()
        self._due: dict[K, float] = {}
        """When each key waiting for its next tick is due (on the event loop's clock)."""
        self._heap: list[tuple[float, int, K]] = []
        """The same, in time order; an entry whose time is no longer the key's due is stale."""
        self._order = itertools.count()
        self._running: dict[K, asyncio.Task[None]] = {}
        self._again: set[K] = set()
        """Keys woken while their tick ran: the next tick comes as soon as it ends."""
        self._kick = asyncio.Event()
        self._clock: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def due_in(self, key: K) -> float | None:
        """Seconds until `key`'s next tick; None while it ticks or waits in line for its first,
        or for an unknown key."""
        due = self._due.get(key)
        return None if due is None else due - asyncio.get_running_loop().time()

    def start(self) -> None:
        """Start the clock (on the running event loop); keys added before wait for it."""
        if self._clock is None:
            self._clock = asyncio.get_running_loop().create_task(self._run(), name="ticker")
            self._clock.add_done_callback(_report_end)

    def add(self, key: K) -> None:
        """Tick `key` now, then as its ticks ask; a key already there is left as it is."""
        if key in self._keys:
            return
        self._keys.add(key)
        self._new.add(key)
        if key in self._running:  # a removed key's last tick still runs: follow it at once
            self._again.add(key)
        else:
            self._schedule(key, 0.0)

    def wake(self, key: K) -> None:
        """Tick `key` now (or right after the tick it is in) instead of at its time."""
        if key not in self._keys or key in self._in_line:
            return
        if key in self._running:
            self._again.add(key)
        else:
            self._schedule(key, 0.0)

    @property
    def waiting_first(self) -> int:
        """New keys due and waiting in line for their first tick."""
        return len(self._in_line)

    async def remove(self, key: K) -> None:
        """Tick `key` no more, once the tick it is in has ended (or had its grace)."""
        self._keys.discard(key)
        self._due.pop(key, None)
        self._again.discard(key)
        self._new.discard(key)
        self._in_line.discard(key)
        running = self._running.get(key)
        if running is not None:
            await _finish(running, self._grace)

    async def stop(self) -> None:
        """Stop the clock; ticks in flight get their grace, then are cancelled (at once if this
        stop is itself cancelled: nothing may tick on after it)."""
        clock, self._clock = self._clock, None
        if clock is not None:
            clock.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await clock
        self._keys.clear()
        self._due.clear()
        self._heap.clear()
        self._again.clear()
        self._new.clear()
        self._line.clear()
        self._in_line.clear()
        running = list(self._running.values())
        try:
            if running:
                await asyncio.gather(*(_finish(task, self._grace) for task in running))
        except asyncio.CancelledError:
            for task in running:
                task.cancel()
            raise

    def _schedule(self, key: K, delay: float) -> None:
        due = asyncio.get_running_loop().time() + max(delay, 0.0)
        self._due[key] = due
        heapq.heappush(self._heap, (due, next(self._order), key))
        if self._heap[0][2] == key:  # the earliest now: the clock's timer is too late
            self._kick.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            while self._heap and self._heap[0][0] <= now:
                due, _, key = heapq.heappop(self._heap)
                if self._due.get(key) != due:
                    continue  # stale: woken, removed or filed again since
                del self._due[key]
                if key in self._new and not self._first_slot():
                    self._line.append(key)
                    self._in_line.add(key)
                else:
                    self._start(key)
            self._kick.clear()
            timer = loop.call_at(self._heap[0][0], self._kick.set) if self._heap else None
            try:
                await self._kick.wait()
            finally:
                if timer is not None:
                    timer.cancel()

    def _first_slot(self) -> bool:
        return self._first_ticks is None or self._firsts < self._first_ticks

    def _start(self, key: K) -> None:
        first = key in self._new
        if first:
            self._new.discard(key)
            self._firsts += 1
        self._running[key] = asyncio.get_running_loop().create_task(self._one(key, first))

    def _next_in_line(self) -> None:
        """Start the first ticks waiting in line, as many as there are slots."""
        while self._line and self._first_slot():
            key = self._line.popleft()
            if key not in self._in_line:
                continue  # removed while in line (and perhaps in line again further on)
            self._in_line.discard(key)
            self._start(key)

    async def _one(self, key: K, first: bool = False) -> None:
        try:
            pause = await self._tick(key)
        except asyncio.CancelledError:
            self._ended(key, first)
            raise
        except Exception:
            log.exception("tick of %s failed; again in %gs", key, self._error_pause)
            pause = self._error_pause
        self._ended(key, first)
        if key not in self._keys:
            return
        if key in self._again:
            self._again.discard(key)
            pause = 0.0
        self._schedule(key, pause)

    def _ended(self, key: K, first: bool) -> None:
        self._running.pop(key, None)
        if first:
            self._firsts -= 1
            self._next_in_line()


async def _finish(task: asyncio.Task[None], grace: float) -> None:
    """Wait for `task` up to `grace` seconds, then cancel it and wait for that."""
    done, _ = await asyncio.wait({task}, timeout=grace)
    if not done:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _report_end(clock: asyncio.Task[None]) -> None:
    """The clock ends only when stopped; anything else would stop every pool, so it is loud."""
    if not clock.cancelled() and clock.exception() is not None:
        log.critical("the pools' clock stopped: no pool ticks any more", exc_info=clock.exception())
