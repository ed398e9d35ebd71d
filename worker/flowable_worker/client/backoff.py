"""Jittered exponential backoff: how long to wait before trying again.

One class for every wait in the package: the client's repeated reads, the worker's polling after
an empty answer or an error, and its repeated reports. Attempt n may wait up to
`min(maximum, initial * 2**n)`; the wait is drawn at random below that cap, so many workers that
failed together do not retry together:

- "full" jitter draws from [0, cap]: the spread is widest (the client's read retries);
- "equal" jitter draws from [cap/2, cap]: never near zero, so a poller that found nothing does
  not come straight back (polling and reporting).

Pure: the random source is injectable and nothing here sleeps.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Literal

Jitter = Literal["full", "equal"]


class Backoff:
    """Exponential backoff: `delay(n)` for attempt n, or `next_delay()` counting attempts itself."""

    def __init__(
        self,
        *,
        initial: float,
        maximum: float,
        jitter: Jitter = "full",
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        if initial < 0 or maximum < 0:
            raise ValueError("backoff needs initial >= 0 and maximum >= 0")
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self._uniform = uniform
        self._attempt = 0

    def cap(self, attempt: int) -> float:
        """The longest wait before retry number `attempt` (0-based)."""
        if self.initial <= 0:
            return 0.0
        # min() before the power would overflow for absurd attempt numbers.
        return min(self.maximum, self.initial * 2.0 ** min(attempt, 62))

    def delay(self, attempt: int) -> float:
        """A jittered wait before retry number `attempt` (0-based)."""
        cap = self.cap(attempt)
        if cap <= 0:
            return 0.0
        return self._uniform(cap / 2 if self.jitter == "equal" else 0.0, cap)

    def next_delay(self) -> float:
        """The next wait in a row (grows with each call until the maximum, or until `reset`)."""
        delay = self.delay(self._attempt)
        if self.cap(self._attempt) < self.maximum:
            self._attempt += 1
        return delay

    def reset(self) -> None:
        """Work arrived: the next wait starts from `initial` again."""
        self._attempt = 0

    @property
    def attempts(self) -> int:
        """How many waits in a row grew (0 after reset)."""
        return self._attempt
