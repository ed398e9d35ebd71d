"""The handler both pools of ``bench/vs_keda.py`` run (``bench.vs_keda_handler:work``).

Kept apart from the benchmark so a worker process imports nothing but this. Each run appends a
``start`` line when the handler is entered (the job was acquired a moment before: the worker
acquires only for a free slot) and a ``done`` line when it returns, with the wall-clock time, to
the file named by ``FWO_BENCH_LOG``. From these the benchmark tells how long each job waited, and
which jobs were cut short (a ``start`` with no ``done`` by that worker) or run twice.
"""

from __future__ import annotations

import os
import time
from typing import Any

from flowable_worker.job import Job


def work(job: Job) -> dict[str, Any]:
    """Sleep for the job's ``seconds`` variable (the trace's handler duration), then complete."""
    _record(job, "start")
    time.sleep(float(job.variables.get("seconds", 1.0)))
    _record(job, "done")
    return {"handledBy": job.worker_id}


def _record(job: Job, what: str) -> None:
    path = os.environ.get("FWO_BENCH_LOG")
    if path:
        # One short write per line in append mode: lines of concurrent workers do not interleave.
        with open(path, "a", encoding="utf-8") as log:
            log.write(f"{job.process_instance_id} {job.worker_id} {what} {time.time():.3f}\n")
