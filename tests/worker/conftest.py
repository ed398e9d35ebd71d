"""Worker suites: the real Flowable (session-wide, from tests/conftest.py) and fault-injecting
emulators (one per test, so a test's faults and jobs never meet another test's).

Workers run either in-process (`serving`) or as real `flowable-worker` processes (`WorkerProcess`)
for the tests that signal or kill them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.support.emulator import FlowableEmulator
from tests.support.waiting import eventually
from tests.support.worker_harness import serving, worker_settings

__all__ = ["WorkerProcess", "eventually", "serving", "worker_settings"]

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
