"""Fixtures for worker unit tests: an in-process emulated Flowable and a worker running on it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from flowable_worker.config import WorkerSettings
from flowable_worker.runtime import Worker
from tests.support.emulator import FlowableEmulator


@pytest.fixture
def emulator() -> Iterator[FlowableEmulator]:
    with FlowableEmulator(reset_interval_seconds=None) as emulated:
        yield emulated


def settings_for(emulator: FlowableEmulator, **overrides: Any) -> WorkerSettings:
    """Fast-polling settings for tests (no probe server unless asked)."""
    values: dict[str, Any] = {
        "flowable_url": emulator.base_url,
        "worker_id": "test-worker",
        "metrics_port": 0,
        "poll_interval_min": 0.02,
        "poll_interval_max": 0.1,
        "error_backoff_max": 0.2,
        "request_timeout": 2,
        "grace_period": 5,
        "log_format": "text",
    }
    values.update(overrides)
    return WorkerSettings(**values)


@contextlib.asynccontextmanager
async def serving(worker: Worker) -> AsyncIterator[asyncio.Task[None]]:
    """Run `worker.serve()` in a task; on exit stop it and wait for the graceful shutdown."""
    started = asyncio.Event()
    task = asyncio.create_task(worker.serve(ready=started.set))
    await asyncio.wait_for(started.wait(), 10)
    try:
        yield task
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)


async def eventually(
    condition: Callable[[], Awaitable[bool]], *, within: float = 20.0, interval: float = 0.02
) -> None:
    """Return once `condition()` holds; AssertionError after `within` seconds."""
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition still false after {within:.1f}s")
        await asyncio.sleep(interval)
