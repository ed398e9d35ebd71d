"""Reporting outcomes: bounded retries, a lost answer is not a second completion, 400 -> fail."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx

from flowable_worker import ClientSettings, FlowableClient
from flowable_worker.job import Job
from flowable_worker.metrics import TopicMetrics, WorkerMetrics
from flowable_worker.reporting import Reporter, ReportPolicy
from flowable_worker.results import BpmnError, Complete, Fail

JOB = Job(id="j1", topic="t", worker_id="w")
NOT_FOUND = httpx.Response(404, json={"message": "Not found", "exception": "Could not find"})
FORBIDDEN = httpx.Response(
    403, json={"message": "Forbidden", "exception": "w does not hold a lock on the requested job"}
)


async def _no_sleep(_: float) -> None:
    return None


def _reporter(
    answers: list[httpx.Response | Exception], seen: list[httpx.Request]
) -> tuple[Reporter, TopicMetrics]:
    def respond(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    client = FlowableClient(
        ClientSettings(base_url="http://flowable.test"), transport=httpx.MockTransport(respond)
    )
    reporter = Reporter(client, worker_id="w", policy=ReportPolicy(attempts=4), sleep=_no_sleep)
    return reporter, TopicMetrics(WorkerMetrics(), "t")


def _paths(seen: list[httpx.Request]) -> list[str]:
    return [r.url.path.removeprefix("/external-job-api") for r in seen]


def _value(metrics: TopicMetrics, getter: Callable[[TopicMetrics], object]) -> float:
    return float(getter(metrics)._value.get())  # type: ignore[attr-defined]


async def test_a_complete_is_sent_once_when_it_succeeds() -> None:
    seen: list[httpx.Request] = []
    reporter, metrics = _reporter([httpx.Response(204)], seen)
    assert await reporter.report(JOB, Complete({"a": 1}), metrics) == "done"
    assert _paths(seen) == ["/acquire/jobs/j1/complete"]
    assert json.loads(seen[0].content)["workerId"] == "w"
    assert _value(metrics, lambda m: m.completed) == 1


async def test_a_lost_answer_then_404_counts_as_done_not_as_a_second_complete() -> None:
    seen: list[httpx.Request] = []
    reporter, metrics = _reporter([httpx.RemoteProtocolError("reset"), NOT_FOUND], seen)
    assert await reporter.report(JOB, Complete(), metrics) == "done"
    assert len(seen) == 2
    assert _value(metrics, lambda m: m.completed) == 1


async def test_5xx_is_retried_until_it_works() -> None:
    seen: list[httpx.Request] = []
    reporter, metrics = _reporter(
        [httpx.Response(500), httpx.Response(503), httpx.Response(204)], seen
    )
    assert await reporter.report(JOB, Complete(), metrics) == "done"
    assert len(seen) == 3


async def test_retries_are_bounded() -> None:
    seen: list[httpx.Request] = []
    reporter, metrics = _reporter([httpx.Response(500)] * 4, seen)
    assert await reporter.report(JOB, Complete(), metrics) == "gave_up"
    assert len(seen) == 4
    assert _value(metrics, lambda m: m.completed) == 0


async def test_retries_stop_when_the_lock_is_over() -> None:
    seen: list[httpx.Request] = []
    reporter, metrics = _reporter([httpx.Response(500)] * 4, seen)
    assert await reporter.report(JOB, Complete(), metrics, lock_deadline=0.0) == "gave_up"
    assert len(seen) == 1


async def test_a_first_403_means_the_lock_was_lost() -> None:
    seen: list[httpx.Request] = []
    reporter, metrics = _reporter([FORBIDDEN], seen)
    assert await reporter.report(JOB, Complete(), metrics) == "lost"
    assert _value(metrics, lambda m: m.lost) == 1


async def test_a_refused_bpmn_error_becomes_a_failed_attempt() -> None:
    seen: list[httpx.Request] = []
    reporter, metrics = _reporter(
        [httpx.Response(400, json={"message": "Bad request", "exception": "not a bpmn job"}),
         httpx.Response(204)],
        seen,
    )
    assert await reporter.report(JOB, BpmnError("E1"), metrics) == "done"
    assert _paths(seen) == ["/acquire/jobs/j1/bpmnError", "/acquire/jobs/j1/fail"]
    assert "not a bpmn job" in json.loads(seen[1].content)["errorMessage"]


async def test_variables_flowable_cannot_store_fail_the_job() -> None:
    seen: list[httpx.Request] = []
    reporter, metrics = _reporter([httpx.Response(204)], seen)
    assert await reporter.report(JOB, Complete({"x": object()}), metrics) == "done"
    assert _paths(seen) == ["/acquire/jobs/j1/fail"]


async def test_fail_sends_message_details_retries_and_timeout() -> None:
    seen: list[httpx.Request] = []
    reporter, metrics = _reporter([httpx.Response(204)], seen)
    outcome = Fail("boom", "trace", retries=1, retry_timeout="PT10S")
    assert await reporter.report(JOB, outcome, metrics) == "done"
    assert json.loads(seen[0].content) == {
        "workerId": "w", "errorMessage": "boom", "errorDetails": "trace", "retries": 1,
        "retryTimeout": "PT10S",
    }


async def test_by_default_a_result_is_retried_until_the_lock_ends_not_for_a_fixed_count() -> None:
    # An engine restart outlasts any small fixed count: 20 failures in a row, then it is back.
    seen: list[httpx.Request] = []
    down: list[httpx.Response | Exception] = [httpx.ConnectError("refused")] * 20
    answers = [*down, httpx.Response(204)]

    def respond(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    client = FlowableClient(
        ClientSettings(base_url="http://flowable.test"), transport=httpx.MockTransport(respond)
    )
    reporter = Reporter(client, worker_id="w", sleep=sleep, clock=lambda: now[0])
    metrics = TopicMetrics(WorkerMetrics(), "t")
    assert await reporter.report(JOB, Complete(), metrics, lock_deadline=300.0) == "done"
    assert len(seen) == 21
    assert now[0] < 300.0


async def test_retries_stop_before_the_lock_ends() -> None:
    seen: list[httpx.Request] = []
    now = [0.0]

    def respond(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        raise httpx.ConnectError("refused")

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    client = FlowableClient(
        ClientSettings(base_url="http://flowable.test"), transport=httpx.MockTransport(respond)
    )
    reporter = Reporter(client, worker_id="w", sleep=sleep, clock=lambda: now[0])
    metrics = TopicMetrics(WorkerMetrics(), "t")
    assert await reporter.report(JOB, Complete(), metrics, lock_deadline=30.0) == "gave_up"
    assert now[0] < 30.0
    assert len(seen) > 8  # more than the old fixed count, and still inside the lock
