"""Fixtures: a started emulator with a hand-moved clock and no background reset, and a client."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.emulator import FlowableEmulator, ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def emulator(clock: ManualClock) -> Iterator[FlowableEmulator]:
    with FlowableEmulator(clock=clock, reset_interval_seconds=None) as emu:
        yield emu


@pytest.fixture(scope="session")
def transport() -> Iterator[httpx.HTTPTransport]:
    """One transport for the session: building httpx's TLS context costs ~70 ms per client."""
    with httpx.HTTPTransport() as shared:
        yield shared


@pytest.fixture
def api(emulator: FlowableEmulator, transport: httpx.HTTPTransport) -> httpx.Client:
    """A client on the emulator's API root (not closed: that would close the shared transport;
    the emulator's stop() drops its connections)."""
    return httpx.Client(base_url=emulator.api_url, timeout=5, transport=transport)

