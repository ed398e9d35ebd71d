"""What a handler can decide about a job, and the outcomes the runtime reports to Flowable.

Python handlers say "complete" by returning a dict (or None) and say anything else by raising one
of the three signals below; HTTP and command handlers say the same thing in JSON
(`flowable_worker.handlers.protocol`). Every handler kind ends in one `Outcome` value, so the part
that talks to Flowable (`reporting`) never knows which kind of handler produced it.

Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any


class HandlerSignal(Exception):
    """Base of the exceptions a handler raises on purpose to choose a non-complete outcome."""


class BpmnError(HandlerSignal):
    """Throw a BPMN error `code` into the process (caught by an error boundary event).

    BPMN jobs only: on a CMMN job Flowable answers 400 and the runtime fails the job instead.
    """

    def __init__(self, code: str, variables: Mapping[str, Any] | None = None) -> None:
        if not code:
            raise ValueError("BpmnError needs a non-empty error code")
        self.code = code
        self.variables = dict(variables or {})
        super().__init__(code)


class Fail(HandlerSignal):
    """Fail the job on purpose.

    `retries=None` lets Flowable decrement the job's retries by one; `retries=0` sends it to the
    dead-letter table at once. `retry_timeout` (timedelta or ISO-8601 such as `PT1M`) delays the
    next attempt.
    """

    def __init__(
        self,
        message: str,
        details: str | None = None,
        retries: int | None = None,
        retry_timeout: timedelta | str | None = None,
    ) -> None:
        self.message = message
        self.details = details
        self.retries = retries
        self.retry_timeout = retry_timeout
        super().__init__(message)


class CmmnTerminate(HandlerSignal):
    """End a CMMN job with the terminate transition (CMMN jobs only)."""

    def __init__(self, variables: Mapping[str, Any] | None = None) -> None:
        self.variables = dict(variables or {})
        super().__init__("cmmn terminate")


@dataclass(frozen=True)
class Complete:
    """Complete the job, setting `variables` on the process or case."""

    variables: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ThrowBpmnError:
    """Complete the job with a BPMN error."""

    code: str
    variables: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FailJob:
    """Fail the job; `reason` labels metrics and logs (handler, timeout, protocol, signal)."""

    message: str
    details: str | None = None
    retries: int | None = None
    retry_timeout: timedelta | str | None = None
    reason: str = "handler"


@dataclass(frozen=True)
class Terminate:
    """Complete a CMMN job with the terminate transition."""

    variables: dict[str, Any] = field(default_factory=dict)


Outcome = Complete | ThrowBpmnError | FailJob | Terminate


def outcome_of_signal(signal: HandlerSignal) -> Outcome:
    """The outcome a raised signal asks for."""
    if isinstance(signal, BpmnError):
        return ThrowBpmnError(code=signal.code, variables=signal.variables)
    if isinstance(signal, CmmnTerminate):
        return Terminate(variables=signal.variables)
    if isinstance(signal, Fail):
        return FailJob(
            message=signal.message,
            details=signal.details,
            retries=signal.retries,
            retry_timeout=signal.retry_timeout,
            reason="signal",
        )
    raise TypeError(f"unknown handler signal {type(signal).__name__}")
