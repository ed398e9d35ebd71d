"""The rows the emulated engine keeps: jobs, their one-task instances, and what each instance got.

A `Job` holds the same columns Flowable's `ACT_RU_EXTERNAL_JOB` exposes through the REST API, plus
the topic (which the API never shows) and the id of the instance it belongs to. Like Flowable, a
BPMN job has no `scopeType` (only CMMN jobs carry one) and a job without a tenant has tenant id
`""`. `to_rest` renders the exact JSON object the REST API returns for a job.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from .isotime import format_instant

Kind = Literal["bpmn", "cmmn"]
Outcome = Literal["complete", "bpmnError", "cmmnTerminate"]


@dataclass
class Job:
    """One external-worker job row (mutable inside the store; callers get copies)."""

    id: str
    correlation_id: str
    kind: Kind
    topic: str
    instance_id: str
    element_id: str
    element_name: str | None
    create_time: datetime
    process_instance_id: str | None = None
    process_definition_id: str | None = None
    execution_id: str | None = None
    scope_id: str | None = None
    sub_scope_id: str | None = None
    scope_definition_id: str | None = None
    scope_type: str | None = None
    retries: int = 3
    exception_message: str | None = None
    exception_details: str | None = None
    due_date: datetime | None = None
    tenant_id: str = ""
    lock_owner: str | None = None
    lock_expiration_time: datetime | None = None
    exclusive: bool = True  # `flowable:exclusive` of the task; Flowable's default is true

    @property
    def locked(self) -> bool:
        """Flowable's `locked=true`: a lock expiry is set, whether or not an owner is."""
        return self.lock_expiration_time is not None

    def copy(self) -> Job:
        return copy.copy(self)

    def to_rest(self, api_url: str) -> dict[str, Any]:
        """The job as `GET /jobs/{id}` returns it; `api_url` is `<base>/external-job-api`."""
        return {
            "id": self.id,
            "url": f"{api_url}/jobs/{self.id}",
            "correlationId": self.correlation_id,
            "processInstanceId": self.process_instance_id,
            "processDefinitionId": self.process_definition_id,
            "executionId": self.execution_id,
            "scopeId": self.scope_id,
            "subScopeId": self.sub_scope_id,
            "scopeDefinitionId": self.scope_definition_id,
            "scopeType": self.scope_type,
            "elementId": self.element_id,
            "elementName": self.element_name,
            "retries": self.retries,
            "exceptionMessage": self.exception_message,
            "dueDate": format_instant(self.due_date),
            "createTime": format_instant(self.create_time),
            "tenantId": self.tenant_id,
            "lockOwner": self.lock_owner,
            "lockExpirationTime": format_instant(self.lock_expiration_time),
        }


@dataclass
class Instance:
    """The emulated one-task process or case instance a job belongs to.

    It finishes when its job is completed, completed with a BPMN error or terminated; a failed
    job that runs out of retries leaves it running with a dead-letter job, as in Flowable.
    """

    id: str
    kind: Kind
    definition_id: str
    element_id: str
    topic: str
    tenant_id: str | None
    job_id: str
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    finished: bool = False
    outcome: Outcome | None = None
    scope_lock_expiration_time: datetime | None = None
    """Set while an exclusive BPMN job of this instance is acquired: the engine locks the whole
    process instance until the job's lock would expire. Complete and fail release it; unacquire
    does not (observed on Flowable 7.2, see docs/flowable-server.md)."""

    def copy(self) -> Instance:
        return copy.deepcopy(self)


@dataclass(frozen=True)
class Completion:
    """One successful complete / bpmnError / cmmnTerminate call: what the instance received."""

    job_id: str
    instance_id: str
    outcome: Outcome
    worker_id: str
    variables: tuple[dict[str, Any], ...]
    error_code: str | None
    at: datetime
