"""Handlers the worker processes of the e2e tests run (`tests.e2e.handlers:...`).

Each run appends one line to the file named by `FWO_TEST_LOG`, so a test can count how often each
job was handled by worker processes that share no memory with it.
"""

from __future__ import annotations

import os
import time
from typing import Any

from flowable_worker.job import Job

WORK_SECONDS = float(os.environ.get("FWO_E2E_WORK_SECONDS", "0.5"))


def work_as_told(job: Job) -> dict[str, Any]:
    """Take the job's `seconds` variable (default `FWO_E2E_WORK_SECONDS`), then complete.

    Writes a `start` line first, so a run cut short (its pod stopped) still shows in the log."""
    _record(job, "start")
    time.sleep(float(job.variables.get("seconds", WORK_SECONDS)))
    _record(job)
    return {"handledBy": job.worker_id}


def _record(job: Job, what: str = "done") -> None:
    path = os.environ.get("FWO_TEST_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(f"{job.process_instance_id} {job.worker_id} {what}\n")


def work(job: Job) -> dict[str, Any]:
    """Take a while (so the backlog is visible to the operator), then complete."""
    time.sleep(WORK_SECONDS)
    _record(job)
    return {"handledBy": job.worker_id}
