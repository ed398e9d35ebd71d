"""Handler kinds: Python (sync and async), HTTP endpoint, command; every path ends in an outcome."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from flowable_worker.handler_threads import HandlerThreads
from flowable_worker.handlers import CommandHandler, HttpHandler, PythonHandler, import_callable
from flowable_worker.job import Job
from flowable_worker.results import BpmnError, CmmnTerminate, Complete, Fail, Outcome

JOB = Job(id="j1", topic="t", worker_id="w", variables={"n": 21}, process_instance_id="p1")


@pytest.fixture
def threads() -> Iterator[HandlerThreads]:
    pool = HandlerThreads()
    yield pool
    pool.shutdown()


async def test_a_sync_handler_runs_in_a_thread_and_its_dict_completes(
    threads: HandlerThreads,
) -> None:
    seen: list[str] = []

    def handler(job: Job) -> dict[str, Any]:
        seen.append(threading.current_thread().name)
        return {"doubled": job.variables["n"] * 2}

    outcome = await PythonHandler(handler, threads=threads).handle(JOB)
    assert outcome == Complete({"doubled": 42})
    assert seen != [threading.current_thread().name]


async def test_an_async_handler_is_awaited_and_none_completes(
    threads: HandlerThreads,
) -> None:
    async def handler(job: Job) -> None:
        await asyncio.sleep(0)

    assert await PythonHandler(handler, threads=threads).handle(JOB) == Complete()


SIGNALS = [
    BpmnError("E1", {"why": "x"}),
    CmmnTerminate({"a": 1}),
    Fail("nope", "details", retries=0, retry_timeout="PT1M"),
]


@pytest.mark.parametrize("signal", SIGNALS)
async def test_a_raised_signal_is_the_outcome(threads: HandlerThreads, signal: Exception) -> None:
    def handler(job: Job) -> None:
        raise signal

    outcome = await PythonHandler(handler, threads=threads).handle(JOB)
    assert outcome == signal
    assert isinstance(outcome, Exception)
    assert outcome.__traceback__ is None  # the handler's frames are not kept until the report


@pytest.mark.parametrize("outcome", [*SIGNALS, Complete({"a": 1})])
async def test_a_returned_outcome_is_the_outcome(threads: HandlerThreads, outcome: Outcome) -> None:
    def handler(job: Job) -> Outcome:
        return outcome

    assert await PythonHandler(handler, threads=threads).handle(JOB) == outcome


async def test_a_fail_the_handler_chose_counts_as_a_signal(threads: HandlerThreads) -> None:
    def handler(job: Job) -> None:
        raise Fail("nope")

    outcome = await PythonHandler(handler, threads=threads).handle(JOB)
    assert isinstance(outcome, Fail)
    assert outcome.reason == "signal"


async def test_any_other_exception_fails_with_message_traceback_and_retry_policy(
    threads: HandlerThreads,
) -> None:
    def broken_handler(job: Job) -> None:
        raise KeyError("customer")

    outcome = await PythonHandler(
        broken_handler, threads=threads, fail_retries=2, fail_retry_timeout="PT30S"
    ).handle(JOB)
    assert isinstance(outcome, Fail)
    assert outcome.message == "KeyError: 'customer'"
    assert outcome.details is not None
    assert "Traceback" in outcome.details
    assert "broken_handler" in outcome.details
    assert (outcome.retries, outcome.retry_timeout) == (2, "PT30S")


async def test_returning_something_else_than_a_dict_fails(threads: HandlerThreads) -> None:
    outcome = await PythonHandler(lambda job: [1], threads=threads).handle(JOB)
    assert isinstance(outcome, Fail)
    assert "expected a dict" in outcome.message


def test_handlers_are_named_module_colon_function() -> None:
    assert import_callable("tests.unit.worker.handler_fixtures:double").__name__ == "double"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="must look like"):
        import_callable("no_colon")
    with pytest.raises(ValueError, match="has no attribute"):
        import_callable("tests.unit.worker.handler_fixtures:missing")


# -- HTTP ---------------------------------------------------------------------------------------


@pytest.fixture
def http_calls() -> list[dict[str, Any]]:
    return []


def _http_handler(answer: httpx.Response | Exception, calls: list[dict[str, Any]]) -> HttpHandler:
    def respond(request: httpx.Request) -> httpx.Response:
        calls.append(json.loads(request.content))
        if isinstance(answer, Exception):
            raise answer
        return answer

    return HttpHandler(
        "http://handler.test/jobs", timeout_seconds=5, max_connections=2,
        transport=httpx.MockTransport(respond),
    )


async def test_http_handler_posts_the_job_and_maps_the_answer(
    http_calls: list[dict[str, Any]],
) -> None:
    handler = _http_handler(
        httpx.Response(200, json={"result": "bpmnError", "errorCode": "NO_STOCK"}), http_calls
    )
    assert await handler.handle(JOB) == BpmnError("NO_STOCK")
    assert http_calls[0]["id"] == "j1"
    assert http_calls[0]["variables"] == {"n": 21}
    assert http_calls[0]["processInstanceId"] == "p1"
    await handler.aclose()


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (httpx.Response(503, text="down"), "answered 503"),
        (httpx.ReadTimeout("slow"), "timed out"),
        (httpx.ConnectError("refused"), "unreachable"),
        (httpx.Response(200, text="<html>"), "broke the answer protocol"),
    ],
)
async def test_http_handler_failures_fail_the_job(
    http_calls: list[dict[str, Any]], answer: httpx.Response | Exception, message: str
) -> None:
    handler = _http_handler(answer, http_calls)
    outcome = await handler.handle(JOB)
    assert isinstance(outcome, Fail)
    assert message in outcome.message
    await handler.aclose()


# -- command ------------------------------------------------------------------------------------


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


async def test_command_reads_the_job_on_stdin_and_answers_on_stdout() -> None:
    handler = CommandHandler(_python(
        "import json,sys; job=json.load(sys.stdin); "
        "print(json.dumps({'variables': {'doubled': job['variables']['n'] * 2}}))"
    ))
    assert await handler.handle(JOB) == Complete({"doubled": 42})


async def test_a_command_exiting_non_zero_fails_with_its_stderr() -> None:
    handler = CommandHandler(_python("import sys; sys.stderr.write('bad input'); sys.exit(3)"))
    outcome = await handler.handle(JOB)
    assert isinstance(outcome, Fail)
    assert outcome.message == "handler command exited with code 3"
    assert outcome.details == "bad input"


async def test_a_cancelled_command_is_killed() -> None:
    handler = CommandHandler(_python("import time; time.sleep(60)"))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(handler.handle(JOB), 0.5)


async def test_a_missing_command_fails_the_job() -> None:
    outcome = await CommandHandler(["/no/such/binary"]).handle(JOB)
    assert isinstance(outcome, Fail)
    assert "cannot start" in outcome.message
