"""When and how long to wait before repeating an idempotent read.

Only reads are repeated: a repeated POST could complete a job twice or acquire a second batch the
caller never sees. Delays grow exponentially and are drawn uniformly from [0, cap] ("full
jitter"), so many workers that failed together don't retry together.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from flowable_worker.client.errors import FlowableError, FlowableTransportError, ServerError


def is_retryable(error: FlowableError) -> bool:
    """True for failures a repeat may cure: no answer at all, or a 5xx."""
    return isinstance(error, FlowableTransportError | ServerError)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: attempt n waits uniform(0, min(max, base * 2**n))."""

    base_seconds: float
    max_seconds: float
    random_uniform: Callable[[float, float], float] = field(default=random.uniform, repr=False)

    def cap(self, attempt: int) -> float:
        """The upper bound of the wait before retry number `attempt` (0-based)."""
        if self.base_seconds <= 0:
            return 0.0
        # min() before the power would overflow for absurd attempt numbers.
        exponent = min(attempt, 62)
        return min(self.max_seconds, self.base_seconds * 2.0**exponent)

    def delay(self, attempt: int) -> float:
        """A jittered wait before retry number `attempt` (0-based)."""
        cap = self.cap(attempt)
        return self.random_uniform(0.0, cap) if cap > 0 else 0.0
