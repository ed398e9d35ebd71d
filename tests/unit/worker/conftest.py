"""Fixtures for worker unit tests: an in-process emulated Flowable and a worker running on it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from flowable_worker.config import WorkerSettings
from tests.support.emulator import FlowableEmulator
from tests.support.waiting import eventually
from tests.support.worker_harness import serving, worker_settings

__all__ = ["eventually", "serving", "settings_for"]


@pytest.fixture
def emulator() -> Iterator[FlowableEmulator]:
    with FlowableEmulator(reset_interval_seconds=None) as emulated:
        yield emulated


def settings_for(emulator: FlowableEmulator, **overrides: Any) -> WorkerSettings:
    """Fast-polling settings for a worker on this test's emulator (no probe server)."""
    return worker_settings(emulator.base_url, **overrides)
