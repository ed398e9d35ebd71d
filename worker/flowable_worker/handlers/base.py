"""The one interface every handler kind meets: an awaitable from a job to an outcome.

The runtime never knows whether a job goes to Python code, an HTTP endpoint or a command: it
awaits `handle(job)` under a timeout and reports the outcome it gets. `close()` releases what a
handler holds (an HTTP connection pool, a thread pool) at shutdown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from flowable_worker.job import Job
from flowable_worker.results import Fail, Outcome

ErrorHook = Callable[[Job, Exception], Any]
"""Called with the job and the exception its Python handler raised; returns None for the default
(fail with the retry policy), or raises or returns an outcome (`BpmnError`, `Fail`,
`CmmnTerminate`, `Complete`) to decide instead. May be async. Registered per topic
(`@worker.topic(..., on_error=...)`) or for the whole worker (`@worker.on_error`)."""


@dataclass(frozen=True)
class RetryPolicy:
    """What a handler's failure asks of Flowable: `--fail-retries`, `--fail-retry-timeout`.

    Every handler kind fails jobs under the same configured policy, so it lives here once.
    """

    retries: int | None = None
    retry_timeout: timedelta | str | None = None

    def fail(self, message: str, *, details: str | None = None, reason: str = "handler") -> Fail:
        """A `Fail` outcome under this policy."""
        return Fail(
            message=message,
            details=details,
            retries=self.retries,
            retry_timeout=self.retry_timeout,
            reason=reason,
        )


class Handler(Protocol):
    """Turns one job into one outcome; must not raise for anything a job's content can cause."""

    async def handle(self, job: Job) -> Outcome:
        """Run the job and say what to report to Flowable."""
        ...

    async def aclose(self) -> None:
        """Release resources; called once when the worker stops."""
        ...
