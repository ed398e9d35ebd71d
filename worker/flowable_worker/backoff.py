"""Jittered exponential backoff for polling: how long to wait after an empty poll or an error.

Many replicas polling one engine must not fall into step, so every wait is drawn at random from
[delay/2, delay] ("equal jitter"): never zero, never above the bound. Pure: the random source is
injectable and nothing here sleeps.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Doubles from `initial` up to `maximum` on each `next_delay()`; `reset()` starts over."""

    def __init__(
        self,
        *,
        initial: float,
        maximum: float,
        factor: float = 2.0,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError("backoff needs 0 < initial <= maximum")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self._uniform = uniform
        self._attempt = 0

    def next_delay(self) -> float:
        """The next wait in seconds (grows with each call until reset)."""
        delay = min(self.maximum, self.initial * self.factor**self._attempt)
        if delay < self.maximum:
            self._attempt += 1
        return self._uniform(delay / 2, delay)

    def reset(self) -> None:
        """Work arrived: the next wait starts from `initial` again."""
        self._attempt = 0

    @property
    def attempts(self) -> int:
        """How many waits in a row grew (0 after reset)."""
        return self._attempt
