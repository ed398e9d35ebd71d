"""The job object every handler receives: one acquired job, its variables as Python values.

Handlers see this instead of the client's `AcquiredJob` so the wire model can change without
breaking user code, and so HTTP and command handlers get one documented JSON shape
(`to_json`). The JSON form keeps Flowable's typed variables too (`rawVariables`), because JSON
alone cannot tell a date from a string.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowable_worker.client import AcquiredJob


@dataclass(frozen=True)
class Job:
    """One acquired job as a handler sees it."""

    id: str
    topic: str
    worker_id: str
    variables: dict[str, Any] = field(default_factory=dict)
    scope_type: str | None = None
    process_instance_id: str | None = None
    process_definition_id: str | None = None
    execution_id: str | None = None
    scope_id: str | None = None
    sub_scope_id: str | None = None
    scope_definition_id: str | None = None
    element_id: str | None = None
    element_name: str | None = None
    correlation_id: str | None = None
    tenant_id: str | None = None
    retries: int | None = None
    lock_expiration_time: datetime | None = None
    raw_variables: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_acquired(cls, acquired: AcquiredJob, *, topic: str, worker_id: str) -> Job:
        """Build the handler's view of a job the client acquired."""
        return cls(
            id=acquired.id,
            topic=topic,
            worker_id=worker_id,
            variables=dict(acquired.variables),
            scope_type=acquired.scope_type,
            process_instance_id=acquired.process_instance_id,
            process_definition_id=acquired.process_definition_id,
            execution_id=acquired.execution_id,
            scope_id=acquired.scope_id,
            sub_scope_id=acquired.sub_scope_id,
            scope_definition_id=acquired.scope_definition_id,
            element_id=acquired.element_id,
            element_name=acquired.element_name,
            correlation_id=acquired.correlation_id,
            tenant_id=acquired.tenant_id,
            retries=acquired.retries,
            lock_expiration_time=acquired.lock_expiration_time,
            raw_variables=[v.model_dump(mode="json") for v in acquired.raw_variables],
        )

    def to_json(self) -> dict[str, Any]:
        """The documented JSON shape sent to HTTP and command handlers (docs/worker.md)."""
        return {
            "id": self.id,
            "topic": self.topic,
            "workerId": self.worker_id,
            "scopeType": self.scope_type,
            "processInstanceId": self.process_instance_id,
            "processDefinitionId": self.process_definition_id,
            "executionId": self.execution_id,
            "scopeId": self.scope_id,
            "subScopeId": self.sub_scope_id,
            "scopeDefinitionId": self.scope_definition_id,
            "elementId": self.element_id,
            "elementName": self.element_name,
            "correlationId": self.correlation_id,
            "tenantId": self.tenant_id,
            "retries": self.retries,
            "lockExpirationTime": _json_value(self.lock_expiration_time),
            "variables": {name: _json_value(value) for name, value in self.variables.items()},
            "rawVariables": self.raw_variables,
        }

    def to_json_bytes(self) -> bytes:
        """`to_json()` encoded as UTF-8 JSON."""
        return json.dumps(self.to_json(), separators=(",", ":"), default=str).encode()


def _json_value(value: Any) -> Any:
    """Python variable values as plain JSON: dates as ISO-8601 text, decimals as text."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    return value
