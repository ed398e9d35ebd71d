"""`SharedAnswers`: ask once, answer everyone who asks the same question at about the same time;
`phase_delay`: make askers of one question ask at the same time.

Generic on purpose (any hashable question, any answer): the backlog prober uses it so that pools
asking an engine the same count (or the same whole question) share one request, and the reconciler
so that pools naming the same engine share one resolution of it, but nothing here knows about
engines or pools.

Sharing for a short while only works if the askers ask together. Pools on one topic that poll
every 15 s from whenever each was created ask at random phases of the interval: with a 1 s
memory, five of them cost about five requests per interval. Remembering answers longer (a
fraction of the interval) would save requests but make every answer older, so a backlog change
would reach replicas up to that much later than one interval. `phase_delay` does the other
thing: each asker waits until the next moment of its question's phase (`offset(key) + k *
period`, on the wall clock), so every asker of one question asks in the same instant and one
request (single flight, an answer at most `max_age` old) answers them all, once per period;
the answers stay fresh, and different questions keep different phases, spread over the period.
"""

from __future__ import annotations

import asyncio
import functools
import time
import zlib
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from functools import partial
from typing import Generic, TypeVar

__all__ = ["SharedAnswers", "phase_delay"]

PHASE_SPAN = 3600.0
"""Phases are spread over an hour: `offset + k * period` for any period dividing it (15 s, 30 s,
1 min...) gives nested moments, so askers of one question polling every 15 s and every 30 s still
meet every 30 s."""


def phase_delay(period: float, key: str, now: float) -> float:
    """Seconds from `now` (seconds since the epoch) to the next moment of `key`'s phase, in
    (0, period]: the moments are `offset(key) + k * period`, `offset` a stable hash of `key`
    (the same in every process, so after a restart and across replicas). A period of 0 or less
    is returned as it is."""
    if period <= 0:
        return period
    delay = (_offset(key) - now) % period
    return delay if delay > 0 else period


@functools.lru_cache(maxsize=65536)
def _offset(key: str) -> float:
    """`key`'s phase in `PHASE_SPAN` (remembered: every tick of every pool asks it)."""
    return zlib.crc32(key.encode()) / 2**32 * PHASE_SPAN


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass
class _Flight(Generic[V]):
    task: asyncio.Task[V]
    answered_at: float | None = None  # set once the task succeeded


class SharedAnswers(Generic[K, V]):
    """Single-flight with a short memory: one request per question per `max_age` seconds.

    The first asker of a question starts its request as a task of its own; askers arriving while it
    is in flight await the same task, and askers arriving within `max_age` seconds after it
    answered get that answer. A failure is shared only by those already waiting: the next asker
    tries again. Askers await the task through `asyncio.shield`, so one asker giving up (cancelled)
    never cancels the request the others wait for. `on_shared` is called for each asker served
    by another's request (the operator counts them in a metric).
    """

    def __init__(
        self,
        *,
        max_age: float,
        clock: Callable[[], float] = time.monotonic,
        on_shared: Callable[[], object] = lambda: None,
    ) -> None:
        if max_age < 0:
            raise ValueError("max_age cannot be negative")
        self._max_age = max_age
        self._clock = clock
        self._on_shared = on_shared
        self._flights: dict[K, _Flight[V]] = {}
        self._swept_at = clock()

    async def get(self, key: K, fetch: Callable[[], Awaitable[V]]) -> V:
        """The answer to `key`: shared if one is in flight or fresh, else from `fetch()`."""
        now = self._clock()
        self._sweep(now)
        flight = self._flights.get(key)
        if flight is not None and self._stale(flight, now):
            flight = None
        if flight is not None:
            self._on_shared()
        else:
            flight = _Flight(asyncio.ensure_future(fetch()))
            self._flights[key] = flight
            flight.task.add_done_callback(partial(self._landed, key, flight))
        return await asyncio.shield(flight.task)

    def cancel_all(self) -> None:
        """Cancel every request in flight and forget every answer (shutdown)."""
        for flight in self._flights.values():
            flight.task.cancel()
        self._flights.clear()

    def _landed(self, key: K, flight: _Flight[V], _task: asyncio.Task[V]) -> None:
        task = flight.task
        # Reading the exception marks it retrieved, even when every asker gave up waiting.
        if not task.cancelled() and task.exception() is None:
            flight.answered_at = self._clock()
        elif self._flights.get(key) is flight:
            del self._flights[key]

    def _stale(self, flight: _Flight[V], now: float) -> bool:
        return flight.answered_at is not None and now - flight.answered_at > self._max_age

    def _sweep(self, now: float) -> None:
        """Drop stale answers of questions nobody asks any more; at most once per `max_age`
        (and at least a second apart), so a probe costs O(its questions), not O(all answers)."""
        if now - self._swept_at < max(self._max_age, 1.0):
            return
        self._swept_at = now
        for key in [key for key, flight in self._flights.items() if self._stale(flight, now)]:
            del self._flights[key]

    def __len__(self) -> int:
        """Questions in flight or remembered (for tests and debugging)."""
        return len(self._flights)
