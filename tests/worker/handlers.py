"""Handlers the worker tests run, by name (`tests.worker.handlers:...`), in-process or in a CLI.

Each decides from the job's variables, so one deployed model can exercise every result kind.
Side effects go to a file named by `FWO_TEST_LOG` (one line per handler run), so a test can count
how often a job was handled by worker processes it does not share memory with.
"""

from __future__ import annotations

import os
import time
from typing import Any

from flowable_worker.job import Job
from flowable_worker.results import BpmnError, CmmnTerminate, Fail


def _record(job: Job, what: str) -> None:
    path = os.environ.get("FWO_TEST_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(f"{job.id} {job.process_instance_id or job.scope_id} {what}\n")


def by_kind(job: Job) -> dict[str, Any] | None:
    """`kind` variable picks the result: complete, bpmnError, fail, terminate, raise, hang."""
    kind = job.variables.get("kind", "complete")
    if kind == "complete":
        return {"handledBy": job.worker_id, "doubled": job.variables.get("n", 0) * 2}
    if kind == "bpmnError":
        raise BpmnError("REJECTED", {"reason": "too big"})
    if kind == "fail":
        raise Fail("not today", "details here", retries=0)
    if kind == "terminate":
        raise CmmnTerminate({"terminatedBy": job.worker_id})
    if kind == "raise":
        raise ValueError(f"bad input {job.variables.get('n')}")
    if kind == "hang":
        time.sleep(60)
    return None


def slow(job: Job) -> dict[str, Any]:
    """Takes `FWO_TEST_SLOW` seconds (default 0.5), then completes naming the worker."""
    _record(job, "start")
    time.sleep(float(os.environ.get("FWO_TEST_SLOW", "0.5")))
    _record(job, "end")
    return {"handledBy": job.worker_id}


async def noop(job: Job) -> None:
    """Completes at once (benchmarks)."""
    return None


def hang_recorded(job: Job) -> None:
    """Records its start, then blocks far longer than any test waits (a hung sync handler)."""
    _record(job, "start")
    time.sleep(600)
