"""Functions that tests name as `module:function` handlers (imported by the worker)."""

from __future__ import annotations

from typing import Any

from flowable_worker.job import Job
from flowable_worker.runtime import Worker


def double(job: Job) -> dict[str, Any]:
    return {"doubled": job.variables["n"] * 2}


registered = Worker()


@registered.topic("registered-topic")
async def registered_handler(job: Job) -> None:
    return None


NOT_A_HANDLER = 42
