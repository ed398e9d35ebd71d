"""Tests of the example handlers, written as a user would test theirs: no Flowable server needed.

`flowable_worker.testing` runs a handler through the worker's own result mapping, so each test
sees exactly what the worker would report. Run with `pytest examples` (`make test-unit` does).
"""

from __future__ import annotations

import pytest

from flowable_worker import BpmnError, Complete, Fail
from flowable_worker.testing import make_job, run_handler_sync

from .handlers import check_invoice


def test_an_invoice_up_to_the_limit_is_approved() -> None:
    assert run_handler_sync(check_invoice, {"amount": 1000}) == Complete({"approved": True})


def test_a_larger_invoice_ends_the_task_with_too_big() -> None:
    outcome = run_handler_sync(check_invoice, make_job({"amount": 1001}, topic="invoice-check"))
    assert outcome == BpmnError("TOO_BIG", {"limit": 1000})


@pytest.mark.parametrize("amount", ["12", None, [1]])
def test_an_amount_that_is_not_a_number_fails_the_job_with_the_retry_policy(
    amount: object,
) -> None:
    outcome = run_handler_sync(check_invoice, {"amount": amount}, fail_retries=0)
    assert isinstance(outcome, Fail)
    assert outcome.message.startswith("ValueError: amount must be a number")
    assert outcome.retries == 0
