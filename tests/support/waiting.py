"""Polling for an eventual condition: the real engine finishes work asynchronously.

A completed external-worker job only schedules the continuation, which the engine's async
executor runs a moment later, so "the instance ended" is observed by polling with a deadline,
never by sleeping a fixed time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def eventually(
    condition: Callable[[], Awaitable[bool]], *, within: float = 20.0, interval: float = 0.1
) -> None:
    """Return once `condition()` is true; fail the test with AssertionError after `within` s."""
    deadline = time.monotonic() + within
    while True:
        if await condition():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition still false after {within:.0f}s")
        await asyncio.sleep(interval)


def poll_until(
    condition: Callable[[], object], *, timeout: float = 30.0, interval: float = 0.2
) -> Any:
    """Blocking form for synchronous tests (Kubernetes API calls): poll ``condition`` until it
    returns something truthy and return that; fail with AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition still false after {timeout:.0f}s: {result!r}")
        time.sleep(interval)
