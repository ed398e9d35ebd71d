"""`EmulatedFlowable`: the emulator behind the contract suite's `FlowableBackend` protocol.

Converts Python variables with the project client's own `to_rest_variables` /
`from_rest_variables`, so a contract test sees the same round trip against the emulator as
against the real server. The engine here is in-process, so every method answers at once;
they are `async` only because the protocol is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flowable_worker import ClientSettings, from_rest_variables, to_rest_variables
from tests.support.backend import CreatedJob, FlowableBackend, ScopeType

from .emulator import FlowableEmulator


class EmulatedFlowable:
    """A `FlowableBackend` over a running `FlowableEmulator` (started and stopped by the caller)."""

    name = "emulator"

    def __init__(self, emulator: FlowableEmulator, *, element_name: str | None = None) -> None:
        self.emulator = emulator
        self._element_name = element_name

    def client_settings(self) -> ClientSettings:
        return ClientSettings(base_url=self.emulator.base_url)

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
        rest = to_rest_variables(variables) if variables else None
        created: list[CreatedJob] = []
        for _ in range(count):
            job = self.emulator.create_job(
                topic,
                element_id=element_id,
                element_name=self._element_name,
                scope_type=scope_type,
                tenant_id=tenant_id,
                variables=rest,
                exclusive=exclusive,
            )
            instance = self.emulator.instance(job.instance_id)
            created.append(
                CreatedJob(
                    instance_id=instance.id,
                    definition_id=instance.definition_id,
                    element_id=element_id,
                    scope_type=scope_type,
                    tenant_id=tenant_id,
                )
            )
        return created

    async def instance_finished(self, created: CreatedJob) -> bool:
        return self.emulator.instance(created.instance_id).finished

    async def instance_variables(self, created: CreatedJob) -> dict[str, Any]:
        return from_rest_variables(self.emulator.instance(created.instance_id).variables.values())

    async def dead_letter_job_ids(self, created: Sequence[CreatedJob]) -> list[str]:
        wanted = {c.instance_id for c in created}
        return [j.id for j in self.emulator.dead_letter_jobs() if j.instance_id in wanted]

    async def reset_expired_locks(self) -> None:
        self.emulator.reset_expired_locks()


def _conforms(backend: EmulatedFlowable) -> FlowableBackend:
    """Never called: makes mypy prove that EmulatedFlowable meets the protocol."""
    return backend
