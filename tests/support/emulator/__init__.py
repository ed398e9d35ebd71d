"""An in-process Flowable 7.2 external-worker REST API for tests.

`FlowableEmulator` serves `<base_url>/external-job-api` on 127.0.0.1 with Flowable's semantics
(locks, owners, retries, dead letters, queries, error bodies) plus fault injection; the contract
suite runs the same tests against it and a real Flowable, so where they disagree the real server
wins and this package changes. `EmulatedFlowable` (in `backend`) adapts it to the contract
suite's `FlowableBackend` protocol; import it from `tests.support.emulator.backend` so that this
package stays importable without the worker package.
"""

from .clock import ManualClock
from .emulator import FlowableEmulator
from .faults import Fault, FaultInjector, FaultKind
from .model import Completion, Instance, Job
from .requestlog import RequestRecord
from .server import API_ROOT, ENDPOINTS

__all__ = [
    "API_ROOT",
    "ENDPOINTS",
    "Completion",
    "Fault",
    "FaultInjector",
    "FaultKind",
    "FlowableEmulator",
    "Instance",
    "Job",
    "ManualClock",
    "RequestRecord",
]
