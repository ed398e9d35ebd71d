"""A clock tests move by hand, so lock expiry and retry timeouts need no sleeping."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


class ManualClock:
    """Callable clock for `FlowableEmulator(clock=...)`; starts at a fixed UTC instant."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)
