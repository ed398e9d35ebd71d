"""The four things a handler can decide about a job: one class each, and what each asks of Flowable.

A Python handler completes a job by returning a dict, a model, a dataclass, None or `Complete`, and
chooses another outcome by raising (or returning) `BpmnError`, `Fail` or `CmmnTerminate`; HTTP and
command handlers say the same in JSON (`handlers/protocol.py`). Every handler kind ends in one
`Outcome`, so the part that talks to Flowable (`reporting`) never knows which kind produced it.

One class per outcome, and each class is the one place that knows its request: `call` names it
(the REST call, the JSON protocol's `result` word, the `call` label of report errors), `label` is
its `outcome` label on the handler-duration metric, `send` hands it to the client and `count`
counts it once Flowable took it. Nothing here does I/O of its own.

Three older names of the same outcomes (`ThrowBpmnError`, `FailJob`, `Terminate`: the values the
raised signals used to be turned into) still import from here with a DeprecationWarning, so code
written against them keeps running; they are the classes below.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from flowable_worker.client import FlowableClient
    from flowable_worker.metrics import TopicMetrics

__all__ = ["BpmnError", "CmmnTerminate", "Complete", "Fail", "HandlerSignal", "Outcome"]


class Complete:
    """Complete the job, setting `variables` on the process or case.

    Returned, never raised: returning a dict (or None) says the same; `Complete` is what a test
    compares a handler's outcome with.
    """

    call: ClassVar[str] = "complete"
    label: ClassVar[str] = "complete"

    def __init__(self, variables: Mapping[str, Any] | None = None) -> None:
        self.variables = dict(variables or {})

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Complete)
        return self.variables == other.variables

    def __hash__(self) -> int:
        return hash(type(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(variables={self.variables!r})"

    async def send(self, client: FlowableClient, job_id: str, worker_id: str) -> None:
        """Ask Flowable to complete the job."""
        await client.complete_job(job_id, worker_id=worker_id, variables=self.variables or None)

    def count(self, metrics: TopicMetrics) -> None:
        """Count the job as completed."""
        metrics.completed.inc()


class HandlerSignal(Exception):
    """Base of the outcomes a handler may raise as well as return: the job does not complete.

    Raising lets code deep inside a handler decide; returning reads better at the handler's end.
    Two signals are equal when they ask Flowable for the same thing.
    """

    call: ClassVar[str]
    label: ClassVar[str]

    def _key(self) -> tuple[object, ...]:
        """What makes two signals of one class the same request."""
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, HandlerSignal)
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash((type(self), str(self)))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields())
        return f"{type(self).__name__}({fields})"

    def _fields(self) -> tuple[str, ...]:
        return ()


class BpmnError(HandlerSignal):
    """Throw a BPMN error `code` into the process (caught by an error boundary event).

    BPMN jobs only: on a CMMN job Flowable answers 400 and the runtime fails the job instead.
    """

    call: ClassVar[str] = "bpmnError"
    label: ClassVar[str] = "bpmn_error"

    def __init__(self, code: str, variables: Mapping[str, Any] | None = None) -> None:
        if not code:
            raise ValueError("BpmnError needs a non-empty error code")
        self.code = code
        self.variables = dict(variables or {})
        super().__init__(code)

    def _key(self) -> tuple[object, ...]:
        return (self.code, self.variables)

    def _fields(self) -> tuple[str, ...]:
        return ("code", "variables")

    async def send(self, client: FlowableClient, job_id: str, worker_id: str) -> None:
        """Ask Flowable to end the job with this BPMN error."""
        await client.bpmn_error(
            job_id, worker_id=worker_id, error_code=self.code, variables=self.variables or None
        )

    def count(self, metrics: TopicMetrics) -> None:
        """Count the job as ended with a BPMN error."""
        metrics.bpmn_errors.inc()


class Fail(HandlerSignal):
    """Fail the job on purpose.

    `retries=None` lets Flowable decrement the job's retries by one; `retries=0` sends it to the
    dead-letter table at once. `retry_timeout` (timedelta or ISO-8601 such as `PT1M`) delays the
    next attempt. `reason` says why for metrics and logs (`signal`: the handler chose it; the
    runtime sets `handler`, `timeout`, `rejected`); it is no part of the request, so two fails
    that differ only in it are equal.
    """

    call: ClassVar[str] = "fail"
    label: ClassVar[str] = "fail"

    def __init__(
        self,
        message: str,
        details: str | None = None,
        retries: int | None = None,
        retry_timeout: timedelta | str | None = None,
        *,
        reason: str = "signal",
    ) -> None:
        self.message = message
        self.details = details
        self.retries = retries
        self.retry_timeout = retry_timeout
        self.reason = reason
        super().__init__(message)

    def _key(self) -> tuple[object, ...]:
        return (self.message, self.details, self.retries, self.retry_timeout)

    def _fields(self) -> tuple[str, ...]:
        return ("message", "details", "retries", "retry_timeout", "reason")

    async def send(self, client: FlowableClient, job_id: str, worker_id: str) -> None:
        """Ask Flowable to fail the job under this retry policy."""
        await client.fail_job(
            job_id,
            worker_id=worker_id,
            error_message=self.message,
            error_details=self.details,
            retries=self.retries,
            retry_timeout=self.retry_timeout,
        )

    def count(self, metrics: TopicMetrics) -> None:
        """Count the job as failed, by reason."""
        metrics.failed(self.reason)


class CmmnTerminate(HandlerSignal):
    """End a CMMN job with the terminate transition (CMMN jobs only)."""

    call: ClassVar[str] = "cmmnTerminate"
    label: ClassVar[str] = "cmmn_terminate"

    def __init__(self, variables: Mapping[str, Any] | None = None) -> None:
        self.variables = dict(variables or {})
        super().__init__("cmmn terminate")

    def _key(self) -> tuple[object, ...]:
        return (self.variables,)

    def _fields(self) -> tuple[str, ...]:
        return ("variables",)

    async def send(self, client: FlowableClient, job_id: str, worker_id: str) -> None:
        """Ask Flowable to terminate the CMMN job."""
        await client.cmmn_terminate(job_id, worker_id=worker_id, variables=self.variables or None)

    def count(self, metrics: TopicMetrics) -> None:
        """Count the job as terminated."""
        metrics.cmmn_terminated.inc()


Outcome = Complete | BpmnError | Fail | CmmnTerminate
"""What a handler decided, as the runtime reports it."""


def as_outcome(value: object) -> Outcome | None:
    """`value` when it is one of the outcomes, else None (a handler's return value, a hook's)."""
    if isinstance(value, Complete | BpmnError | Fail | CmmnTerminate):
        return value
    return None


_DEPRECATED = {"ThrowBpmnError": "BpmnError", "FailJob": "Fail", "Terminate": "CmmnTerminate"}


def __getattr__(name: str) -> object:
    """The deprecated names: the same classes, with a warning that names the one to use."""
    current = _DEPRECATED.get(name)
    if current is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"flowable_worker.results.{name} is deprecated: use flowable_worker.{current}",
        DeprecationWarning,
        stacklevel=2,
    )
    return globals()[current]
