"""What a contract test needs from "a Flowable": the real server or the emulator.

The contract suite (`tests/contract`) is written once against this protocol and runs against both
implementations, `RealFlowable` (tests/support/real_flowable.py, over a real Flowable 7.2 that
`localstack/flowable_server.py` starts) and `EmulatedFlowable` (tests/support/emulator/,
in-process). Everything here is test set-up and inspection: the behaviour under test always goes
through `flowable_worker.client`.

Job creation differs by nature: on the real server a job exists only because a process or case
instance reached an external-worker task, so `create_jobs` deploys (once per topic) a one-task
model and starts instances; the emulator creates the rows directly but reports the same shape of
ids, so tests never branch on the backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from flowable_worker import ClientSettings
from localstack.flowable_server import ScopeType as ScopeType  # the backends' one scope type


@dataclass(frozen=True)
class CreatedJob:
    """Where one external-worker job came from (the job id itself is learned by acquire or list)."""

    instance_id: str  # process instance id (bpmn) or case instance id (cmmn)
    definition_id: str  # processDefinitionId (bpmn) or scopeDefinitionId (cmmn)
    element_id: str  # the external-worker task's id in the model
    scope_type: ScopeType
    tenant_id: str | None = None


class FlowableBackend(Protocol):
    """A Flowable that tests can populate and inspect; `name` is the pytest id (real/emulator)."""

    name: str

    def client_settings(self) -> ClientSettings:
        """Settings for `flowable_worker.FlowableClient` pointing at this backend."""
        ...

    async def create_jobs(
        self,
        topic: str,
        count: int = 1,
        *,
        variables: Mapping[str, Any] | None = None,
        scope_type: ScopeType = "bpmn",
        tenant_id: str | None = None,
        element_id: str = "externalTask",
        exclusive: bool = True,
    ) -> list[CreatedJob]:
        """Create `count` jobs on `topic`, each in its own instance, carrying `variables`.

        `exclusive` is the BPMN task's `flowable:exclusive` (Flowable's default: true), which
        decides whether acquiring the job also locks its process instance.

        `variables` are Python values (or `flowable_worker.TypedValue`) converted with the client's
        own variable conversion. Returns once the jobs exist and are acquirable.
        """
        ...

    async def instance_finished(self, created: CreatedJob) -> bool:
        """True when the instance has ended (it continued past the external-worker task)."""
        ...

    async def instance_variables(self, created: CreatedJob) -> dict[str, Any]:
        """The instance's variables as Python values (history for the real server)."""
        ...

    async def dead_letter_job_ids(self, created: Sequence[CreatedJob]) -> list[str]:
        """Ids of dead-letter jobs belonging to these instances."""
        ...

    async def reset_expired_locks(self) -> None:
        """Wait until the engine's expired-lock reset has run (real) or run it now (emulator)."""
        ...
