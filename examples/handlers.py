"""Example handlers for `flowable-worker` (see the README's main-job command).

Run with `PYTHONPATH=examples FLOWABLE_WORKER_HANDLER=handlers:check_invoice flowable-worker`.
"""

from __future__ import annotations

import os
import time

from flowable_worker import BpmnError, Job


def check_invoice(job: Job) -> dict[str, object]:
    """Approve invoices up to 1000; larger ones end the task with the BPMN error TOO_BIG."""
    amount = job.variables.get("amount", 0)
    if not isinstance(amount, int | float):
        raise ValueError(f"amount must be a number, got {amount!r}")
    if amount > 1000:
        raise BpmnError("TOO_BIG", {"limit": 1000})
    return {"approved": True}


def check_invoice_slowly(job: Job) -> dict[str, object]:
    """`check_invoice` taking `DEMO_WORK_SECONDS` (default 0.5 s) per invoice, as real work does.

    `make demo` uses it so that a backlog lasts long enough to watch the operator scale.
    """
    time.sleep(float(os.environ.get("DEMO_WORK_SECONDS", "0.5")))
    return check_invoice(job)
