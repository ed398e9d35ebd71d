"""Small helpers shared by the cluster tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def eventually(
    condition: Callable[[], object], *, timeout: float = 30.0, interval: float = 0.2
) -> Any:
    """Poll ``condition`` until it returns something truthy and return that; fail on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition still false after {timeout:.0f}s: {result!r}")
        time.sleep(interval)
