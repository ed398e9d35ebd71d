"""The contract suite runs every test twice: against a real Flowable (`real`) and the emulator.

The real server is the reference. Where the two disagree, the emulator is fixed, never the test.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from flowable_worker import FlowableClient
from tests.support.backend import FlowableBackend


@pytest.fixture(params=["real", "emulator"])
def backend(request: pytest.FixtureRequest) -> FlowableBackend:
    """Each contract test runs once per backend; the pytest ids are `real` and `emulator`."""
    fixture = {"real": "real_flowable", "emulator": "emulated_flowable"}[request.param]
    found: FlowableBackend = request.getfixturevalue(fixture)
    return found


@pytest.fixture
async def client(backend: FlowableBackend) -> AsyncIterator[FlowableClient]:
    async with FlowableClient(backend.client_settings()) as flowable:
        yield flowable


@pytest.fixture
def topic() -> str:
    """A topic no other test uses: the backends live for the whole session."""
    return f"topic-{uuid.uuid4().hex[:12]}"
