"""Testing a handler without a Flowable server: build a job, run the handler, read the result.

```python
from flowable_worker import Complete
from flowable_worker.testing import make_job, run_handler_sync

def test_small_invoices_are_approved():
    outcome = run_handler_sync(check, make_job({"amount": 120}))
    assert outcome == Complete({"approved": True})
```

`run_handler` goes through the same `PythonHandler` the worker uses, so a test sees exactly what
the worker would report: `Complete` with the variables a dict, model or dataclass completes with,
the `BpmnError`, `Fail` or `CmmnTerminate` the handler raised or returned, an exception as a `Fail`
(message, traceback, retry policy) or whatever the error hook decides, a variables model that does
not fit as the failure the worker would send. Only the network is left out.
`flowable-worker run-once --job job.json` does the same from a shell (docs/worker.md, "Testing your
handler").
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from flowable_worker.context import enter_job
from flowable_worker.handler_threads import HandlerThreads
from flowable_worker.handlers.base import ErrorHook
from flowable_worker.handlers.python import HandlerFunction, PythonHandler
from flowable_worker.job import Job
from flowable_worker.results import Outcome

__all__ = ["make_job", "run_handler", "run_handler_sync"]


def make_job(
    variables: Mapping[str, Any] | None = None,
    *,
    topic: str = "test-topic",
    job_id: str = "test-job",
    worker_id: str = "test-worker",
    **fields: Any,
) -> Job:
    """A `Job` as a handler would receive it; `fields` set any other `Job` field
    (`process_instance_id=...`, `retries=...`, `tenant_id=...`)."""
    return Job(
        id=job_id,
        topic=topic,
        worker_id=worker_id,
        variables=dict(variables or {}),
        **fields,
    )


async def run_handler(
    function: HandlerFunction,
    job: Job | Mapping[str, Any],
    *,
    fail_retries: int | None = None,
    fail_retry_timeout: timedelta | str | None = None,
    on_error: ErrorHook | None = None,
    handler_timeout: float | None = None,
) -> Outcome:
    """Run `function` for `job` (or for a job with these variables) as the worker would.

    `handler_timeout` (seconds) bounds the run like `--handler-timeout`; a handler past it
    raises TimeoutError here, where the worker would fail the job.
    """
    if not isinstance(job, Job):
        job = make_job(job)
    threads = HandlerThreads(name="flowable-test-handler")
    handler = PythonHandler(
        function,
        threads=threads,
        fail_retries=fail_retries,
        fail_retry_timeout=fail_retry_timeout,
        on_error=on_error,
    )

    async def run() -> Outcome:
        enter_job(job)  # current_job() works inside the handler, as in the worker
        async with asyncio.timeout(handler_timeout):
            return await handler.handle(job)

    try:
        return await asyncio.create_task(run())  # its own context, as a job task has
    finally:
        threads.shutdown()


def run_handler_sync(
    function: HandlerFunction,
    job: Job | Mapping[str, Any],
    **options: Any,
) -> Outcome:
    """`run_handler` for tests that are not async (it runs its own event loop)."""
    return asyncio.run(run_handler(function, job, **options))
