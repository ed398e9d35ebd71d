"""The job a handler is running, reachable from anywhere in its call stack: `current_job()`.

A handler's signature stays `handler(job)` (or a typed-variables model, see
`handlers/python.py`), yet code deep inside it often wants the job's id for a log line, the lock's
expiry to budget a call, or the worker's id. The runtime sets a `JobContext` in a context variable
for each job before its handler starts; sync handlers see it too, because their thread runs in a
copy of the job task's context.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime

from flowable_worker.job import Job

_CURRENT: ContextVar[JobContext | None] = ContextVar("flowable_worker_job", default=None)
_HANDLER_LOG = logging.getLogger("flowable_worker.handler")


@dataclass(frozen=True)
class JobContext:
    """What a running handler may want to know about its job and worker."""

    job: Job
    topic: str
    worker_id: str
    log: logging.LoggerAdapter[logging.Logger]
    """A logger whose lines carry `job_id`, `topic` and `worker_id` (JSON keys in JSON logs)."""

    @property
    def lock_expires_at(self) -> datetime | None:
        """When Flowable hands the job to another worker unless it is reported before."""
        return self.job.lock_expiration_time

    @property
    def retries_left(self) -> int | None:
        """Flowable's retry counter for the job: a failure leaves one less (unless the retry
        policy sets it); 0 after a failure means the dead-letter table. Flowable does not say how
        many attempts came before, so no attempt number is offered."""
        return self.job.retries


def job_context(job: Job) -> JobContext:
    """The context of `job`, with its bound logger."""
    extra = {"job_id": job.id, "topic": job.topic, "worker_id": job.worker_id}
    return JobContext(
        job=job,
        topic=job.topic,
        worker_id=job.worker_id,
        log=logging.LoggerAdapter(_HANDLER_LOG, extra),
    )


def current_job() -> JobContext:
    """The context of the job whose handler is running; LookupError outside a handler."""
    context = _CURRENT.get()
    if context is None:
        raise LookupError("current_job() is only available inside a job's handler")
    return context


def enter_job(job: Job) -> None:
    """Make `job` the current one for this task (the runtime calls it once per job task)."""
    _CURRENT.set(job_context(job))
