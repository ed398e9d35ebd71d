"""Worker suites: the real Flowable (session-wide, from tests/conftest.py) and fault-injecting
emulators (one per test, so a test's faults and jobs never meet another test's).

Workers run either in-process (`serving`) or as real `flowable-worker` processes (`WorkerProcess`)
for the tests that signal or kill them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from flowable_worker.config import WorkerSettings
from flowable_worker.runtime import Worker
from tests.support.emulator import FlowableEmulator

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fault_emulator() -> Iterator[FlowableEmulator]:
    """A fresh emulator per test, resetting expired locks every 0.2 s."""
    with FlowableEmulator(reset_interval_seconds=0.2, seed=7) as emulated:
        yield emulated


@pytest.fixture
def topic() -> str:
    """A topic no other test uses (the real server lives for the whole session)."""
    return f"wt-{uuid.uuid4().hex[:10]}"


def worker_settings(base_url: str, **overrides: Any) -> WorkerSettings:
    """Settings for a test worker: fast polling, short timeouts, no probe server."""
    values: dict[str, Any] = {
        "flowable_url": base_url,
        "worker_id": f"test-{uuid.uuid4().hex[:8]}",
        "metrics_port": 0,
        "poll_interval_min": 0.02,
        "poll_interval_max": 0.2,
        "error_backoff_max": 0.3,
        "request_timeout": 2,
        "grace_period": 10,
        "log_format": "text",
    }
    values.update(overrides)
    return WorkerSettings(**values)


@contextlib.asynccontextmanager
async def serving(worker: Worker) -> AsyncIterator[asyncio.Task[None]]:
    """Run `worker.serve()` as a task; stop it gracefully on exit."""
    started = asyncio.Event()
    task = asyncio.create_task(worker.serve(ready=started.set))
    await asyncio.wait_for(started.wait(), 10)
    try:
        yield task
    finally:
        worker.stop()
        await asyncio.wait_for(task, 60)


async def eventually(
    condition: Callable[[], Awaitable[bool]], *, within: float = 30.0, interval: float = 0.1
) -> None:
    """Return once `condition()` holds; AssertionError after `within` seconds."""
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition still false after {within:.1f}s")
        await asyncio.sleep(interval)


class WorkerProcess:
    """A `flowable-worker` CLI process (python -m flowable_worker) with its own environment."""

    def __init__(self, env: Mapping[str, str], *, log_path: Path) -> None:
        self.log_path = log_path
        full_env = {
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            "FLOWABLE_WORKER_METRICS_PORT": "0",
            "FLOWABLE_WORKER_LOG_FORMAT": "text",
            **env,
        }
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flowable_worker"],
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO_ROOT,
        )

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self._log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._log.close()
