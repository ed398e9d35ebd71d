"""What a handler author gets: per-topic settings, typed variables, hooks, the job context,
the testing helper and `flowable-worker run-once`."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import subprocess
import sys
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from flowable_worker import BpmnError, Complete, Fail, current_job
from flowable_worker.job import Job
from flowable_worker.runtime import Worker
from flowable_worker.testing import make_job, run_handler, run_handler_sync
from flowable_worker.topic_options import TopicOptions
from tests.support.emulator import FlowableEmulator

from .conftest import eventually, serving, settings_for

REPO = Path(__file__).resolve().parents[3]


class Invoice(BaseModel):
    amount: Decimal
    customer: str


@dataclasses.dataclass
class Approval:
    approved: bool
    limit: int


# --- typed variables ---------------------------------------------------------------------------


def test_a_model_parameter_receives_the_variables_validated() -> None:
    seen: list[Invoice] = []

    def check(invoice: Invoice) -> Approval:
        seen.append(invoice)
        return Approval(approved=invoice.amount < 1000, limit=1000)

    outcome = run_handler_sync(check, {"amount": "120.50", "customer": "ACME"})
    assert seen == [Invoice(amount=Decimal("120.50"), customer="ACME")]
    assert outcome == Complete({"approved": True, "limit": 1000})


def test_a_dataclass_parameter_works_and_a_returned_model_completes() -> None:
    def rate(approval: Approval) -> Invoice:
        return Invoice(amount=Decimal(approval.limit), customer="x")

    outcome = run_handler_sync(rate, {"approved": True, "limit": 5})
    assert outcome == Complete({"amount": Decimal(5), "customer": "x"})


def test_variables_that_do_not_fit_fail_the_job_with_a_clear_message_and_no_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ran: list[Invoice] = []

    def check(invoice: Invoice) -> None:
        ran.append(invoice)

    outcome = run_handler_sync(check, {"amount": "lots"}, fail_retries=0)
    assert ran == []
    assert isinstance(outcome, Fail)
    assert outcome.message.startswith("variables do not match Invoice: ")
    assert "amount: " in outcome.message
    assert "customer: Field required" in outcome.message
    assert outcome.retries == 0
    assert "Traceback" not in caplog.text


def test_a_handler_of_the_job_still_gets_the_job() -> None:
    def plain(job: Job) -> dict[str, Any]:
        return {"id": job.id}

    assert run_handler_sync(plain, make_job(job_id="j-7")) == Complete({"id": "j-7"})


# --- error hooks -------------------------------------------------------------------------------


def test_an_error_hook_turns_an_exception_into_a_bpmn_error() -> None:
    def handler(job: Job) -> None:
        raise KeyError("customer")

    def on_error(job: Job, error: Exception) -> None:
        if isinstance(error, KeyError):
            raise BpmnError("MISSING_DATA", {"missing": str(error)})

    outcome = run_handler_sync(handler, {}, on_error=on_error)
    assert outcome == BpmnError("MISSING_DATA", {"missing": "'customer'"})


async def test_an_async_error_hook_may_return_a_retry_decision() -> None:
    async def handler(job: Job) -> None:
        raise TimeoutError("downstream slow")

    async def on_error(job: Job, error: Exception) -> Fail | None:
        return Fail("try later", retries=5, retry_timeout="PT1M")

    outcome = await run_handler(handler, {}, on_error=on_error)
    assert outcome == Fail("try later", None, 5, "PT1M", reason="signal")


def test_an_error_hook_returning_none_keeps_the_default_failure() -> None:
    def handler(job: Job) -> None:
        raise ValueError("bad input")

    outcome = run_handler_sync(handler, {}, on_error=lambda job, error: None, fail_retries=1)
    assert isinstance(outcome, Fail)
    assert outcome.message == "ValueError: bad input"
    assert outcome.retries == 1


def test_a_failing_error_hook_never_loses_the_job(caplog: pytest.LogCaptureFixture) -> None:
    def handler(job: Job) -> None:
        raise ValueError("bad input")

    def broken(job: Job, error: Exception) -> None:
        raise RuntimeError("hook bug")

    outcome = run_handler_sync(handler, {}, on_error=broken)
    assert isinstance(outcome, Fail)
    assert outcome.message == "ValueError: bad input"
    assert "error hook" in caplog.text


# --- the job context ---------------------------------------------------------------------------


def test_current_job_is_available_in_sync_and_async_handlers() -> None:
    seen: list[tuple[str, str]] = []

    def sync_handler(job: Job) -> None:
        context = current_job()
        seen.append((context.job.id, threading.current_thread().name))

    async def async_handler(job: Job) -> None:
        seen.append((current_job().job.id, "loop"))

    run_handler_sync(sync_handler, make_job(job_id="a"))
    run_handler_sync(async_handler, make_job(job_id="b"))
    assert [job_id for job_id, _ in seen] == ["a", "b"]
    assert seen[0][1] != "loop"


def test_current_job_outside_a_handler_says_so() -> None:
    with pytest.raises(LookupError, match="only available inside"):
        current_job()


def test_the_job_logger_carries_the_job(caplog: pytest.LogCaptureFixture) -> None:
    def handler(job: Job) -> None:
        current_job().log.warning("checking")

    caplog.set_level(logging.INFO)
    run_handler_sync(handler, make_job(job_id="j-9", topic="t-9"))
    [record] = [r for r in caplog.records if r.getMessage() == "checking"]
    assert (record.job_id, record.topic) == ("j-9", "t-9")  # type: ignore[attr-defined]


# --- per-topic settings and hooks in a running worker -----------------------------------------


async def test_per_topic_lock_duration_and_concurrency_reach_the_acquire(
    emulator: FlowableEmulator,
) -> None:
    for _ in range(12):
        emulator.create_job("slow-export")
        emulator.create_job("lookup")
    running = {"slow-export": 0, "lookup": 0}
    most = dict(running)
    lock = threading.Lock()

    def track(topic: str) -> Any:
        def handler(job: Job) -> None:
            with lock:
                running[topic] += 1
                most[topic] = max(most[topic], running[topic])
            threading.Event().wait(0.05)
            with lock:
                running[topic] -= 1

        return handler

    worker = Worker(settings_for(emulator, concurrency=8, lock_duration=60))
    worker.topic("slow-export", lock_duration="PT10M", concurrency=2)(track("slow-export"))
    worker.topic("lookup")(track("lookup"))
    async with serving(worker):
        async def drained() -> bool:
            return all(i.finished for i in emulator.instances())

        await eventually(drained, within=30)
    asks = emulator.requests(endpoint="acquire")
    locks = {r.body["topic"]: r.body["lockDuration"] for r in asks}
    assert locks == {"slow-export": "PT10M", "lookup": "PT1M"}
    assert max(r.body["numberOfTasks"] for r in asks if r.body["topic"] == "slow-export") <= 2
    assert most["slow-export"] <= 2
    assert worker.metrics.registry.get_sample_value("flowable_worker_capacity") == 10


async def test_per_topic_fail_retries_apply_to_that_topic_only(
    emulator: FlowableEmulator,
) -> None:
    strict = emulator.create_job("strict")
    lenient = emulator.create_job("lenient")

    def explode(job: Job) -> None:
        raise RuntimeError("no")

    worker = Worker(settings_for(emulator, fail_retries=2))
    worker.topic("strict", fail_retries=0)(explode)
    worker.topic("lenient")(explode)
    async with serving(worker):
        async def both_failed() -> bool:
            return {r.job_id for r in emulator.requests(endpoint="fail")} >= {
                strict.id, lenient.id
            }

        await eventually(both_failed, within=10)
    retries = {r.job_id: r.body["retries"] for r in emulator.requests(endpoint="fail")}
    assert retries[strict.id] == 0
    assert retries[lenient.id] == 2


def test_a_topic_timeout_not_shorter_than_its_lock_is_refused() -> None:
    options = TopicOptions(lock_duration="PT1M", handler_timeout="PT2M")
    with pytest.raises(ValueError, match="topic 'x': handler_timeout"):
        options.resolve("x", settings_for_url())


def settings_for_url() -> Any:
    from tests.support.worker_harness import worker_settings

    return worker_settings("http://127.0.0.1:9")


async def test_startup_and_shutdown_hooks_run_once_around_the_work_and_worker_hooks_apply(
    emulator: FlowableEmulator,
) -> None:
    emulator.create_job("hooked")
    order: list[str] = []
    worker = Worker(settings_for(emulator))

    @worker.on_startup
    async def open_pool() -> None:
        order.append("startup")

    @worker.on_shutdown
    def close_pool() -> None:
        order.append("shutdown")

    @worker.on_error
    def to_bpmn(job: Job, error: Exception) -> None:
        raise BpmnError("HOOKED")

    @worker.topic("hooked")
    def handler(job: Job) -> None:
        order.append("job")
        raise ValueError("boom")

    async with serving(worker):
        async def reported() -> bool:
            return bool(emulator.requests(endpoint="bpmnError"))

        await eventually(reported, within=10)
    assert order == ["startup", "job", "shutdown"]
    assert emulator.requests(endpoint="bpmnError")[0].body["errorCode"] == "HOOKED"


async def test_a_failing_startup_hook_stops_the_worker_before_any_acquire(
    emulator: FlowableEmulator,
) -> None:
    from flowable_worker.runtime import WorkerStartupError

    emulator.create_job("never")
    worker = Worker(settings_for(emulator))
    worker.add_handler("never", lambda job: None)
    worker.on_startup(lambda: 1 / 0)
    with pytest.raises(WorkerStartupError, match=r"startup hook .* failed: ZeroDivisionError"):
        await asyncio.wait_for(worker.serve(), 10)
    assert emulator.requests(endpoint="acquire") == []


# --- run-once ----------------------------------------------------------------------------------


def _run_once(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowable_worker", "run-once", *args],
        capture_output=True, text=True, timeout=60, input=stdin, cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
    )


def test_run_once_prints_what_the_worker_would_report(tmp_path: Path) -> None:
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"topic": "invoice-check", "variables": {"amount": 120}}))
    done = _run_once("--job", str(job), "--handler", "examples.handlers:check_invoice")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["result"] == "complete"
    assert {v["name"] for v in answer["variables"]} >= {"approved"}


def test_run_once_reads_typed_variables_from_standard_input() -> None:
    job = {"variables": [{"name": "amount", "type": "integer", "value": 5000}]}
    done = _run_once("--job", "-", "--handler", "examples.handlers:check_invoice",
                     stdin=json.dumps(job))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"] in {"complete", "bpmnError"}


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--job", "/nonexistent/job.json", "--handler", "examples.handlers:check_invoice"),
         "cannot read /nonexistent/job.json"),
        (("--job", "-", "--handler", "no_such_module:f"), "cannot import handler module"),
        (("--job", "-"), "no handler"),
    ],
)
def test_run_once_bad_input_exits_2_with_one_line(args: tuple[str, ...], says: str) -> None:
    done = _run_once(*args, stdin="{}")
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert says in done.stderr
