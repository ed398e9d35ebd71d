"""The one interface every handler kind meets: an awaitable from a job to an outcome.

The runtime never knows whether a job goes to Python code, an HTTP endpoint or a command: it
awaits `handle(job)` under a timeout and reports the outcome it gets. `close()` releases what a
handler holds (an HTTP connection pool, a thread pool) at shutdown.
"""

from __future__ import annotations

from typing import Protocol

from flowable_worker.job import Job
from flowable_worker.results import Outcome


class Handler(Protocol):
    """Turns one job into one outcome; must not raise for anything a job's content can cause."""

    async def handle(self, job: Job) -> Outcome:
        """Run the job and say what to report to Flowable."""
        ...

    async def aclose(self) -> None:
        """Release resources; called once when the worker stops."""
        ...
