"""Running a `flowable_worker.Worker` inside a test: settings for fast polling, start and stop.

Shared by the worker's unit tests (on the emulator) and its real-server and fault suites, so
every suite starts, waits for and drains a worker the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

from flowable_worker.config import WorkerSettings
from flowable_worker.runtime import Worker


def worker_settings(base_url: str, **overrides: Any) -> WorkerSettings:
    """A test worker's settings: fast polling, short timeouts, no probe server, a unique id."""
    values: dict[str, Any] = {
        "flowable_url": base_url,
        "worker_id": f"test-{uuid.uuid4().hex[:8]}",
        "metrics_port": 0,
        "poll_interval_min": 0.02,
        "poll_interval_max": 0.1,
        "error_backoff_max": 0.3,
        "request_timeout": 2,
        "grace_period": 10,
        "log_format": "text",
    }
    values.update(overrides)
    return WorkerSettings(**values)


@contextlib.asynccontextmanager
async def serving(worker: Worker) -> AsyncIterator[asyncio.Task[None]]:
    """Run `worker.serve()` as a task; on exit stop it and wait for the graceful shutdown."""
    started = asyncio.Event()
    task = asyncio.create_task(worker.serve(ready=started.set))
    await asyncio.wait_for(started.wait(), 10)
    try:
        yield task
    finally:
        worker.stop()
        await asyncio.wait_for(task, 60)
