"""Session-wide Flowable backends shared by the contract, worker and e2e suites.

The real server is expensive to start (a Spring Boot app), so one instance serves the whole pytest
session; tests isolate themselves by using topics and definitions of their own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from localstack.flowable_server import FlowableServer, start_flowable_server
from tests.support.emulator import FlowableEmulator
from tests.support.emulator.backend import EmulatedFlowable
from tests.support.real_flowable import RealFlowable

# The local Kubernetes control plane's fixtures (cluster, podrunner, api_client, namespace), and
# the fault ledger (`@pytest.mark.fault`, the `fault_ledger` fixture, the closing faults line).
pytest_plugins = ("tests.support.k8s_fixtures", "tests.support.fault_ledger")


@pytest.fixture(scope="session")
def flowable_server() -> Iterator[FlowableServer]:
    """A real Flowable 7.2 (Spring Boot + H2), built once with Maven and cached; never skipped."""
    with start_flowable_server() as server:
        yield server


@pytest.fixture(scope="session")
def real_flowable(flowable_server: FlowableServer) -> RealFlowable:
    return RealFlowable.for_server(flowable_server)


@pytest.fixture(scope="session")
def emulator() -> Iterator[FlowableEmulator]:
    """One emulator for the session; fault-injection tests clear their faults when done."""
    with FlowableEmulator() as running:
        yield running


@pytest.fixture(scope="session")
def emulated_flowable(emulator: FlowableEmulator) -> EmulatedFlowable:
    return EmulatedFlowable(emulator)
