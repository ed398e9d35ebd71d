"""`invoices.handlers:check`: the handler deploy/examples/python-handler.yaml names.

Approves an invoice up to 1000; a larger one, or one whose `iban` variable is not a valid IBAN
(checked with python-stdnum, the dependency in requirements.txt), ends the task with a BPMN
error that the process models as a rejection. `INVOICES_WORK_SECONDS` (default 0) makes each
check take that long, as real work would: the image tests use it to have jobs in flight when a
container is stopped.
"""

from __future__ import annotations

import os
import time

from stdnum import iban

from flowable_worker import BpmnError, Job

LIMIT = 1000


def check(job: Job) -> dict[str, object]:
    """Approve, or raise BPMN error TOO_BIG (amount over LIMIT) or BAD_IBAN."""
    time.sleep(float(os.environ.get("INVOICES_WORK_SECONDS", "0")))
    amount = job.variables.get("amount", 0)
    if not isinstance(amount, int | float):
        raise ValueError(f"amount must be a number, got {amount!r}")
    account = job.variables.get("iban")
    if account is not None and not iban.is_valid(str(account)):
        raise BpmnError("BAD_IBAN", {"iban": str(account)})
    if amount > LIMIT:
        raise BpmnError("TOO_BIG", {"limit": LIMIT})
    return {"approved": True, "checkedBy": os.environ.get("HOSTNAME", "")}
