"""A result Flowable refuses (or the client can't send) is failed under the configured retry policy.

Issue 9: with `--fail-retries 0` a job whose variables Flowable could not store was still handed
out three times, because the fail that replaced the refused complete let Flowable decrement the
retries instead of applying `--fail-retries` / `--fail-retry-timeout`.
"""

from __future__ import annotations

import json
from datetime import timedelta

import httpx

from flowable_worker import ClientSettings, FlowableClient
from flowable_worker.job import Job
from flowable_worker.metrics import TopicMetrics, WorkerMetrics
from flowable_worker.reporting import Reporter, ReportPolicy
from flowable_worker.results import BpmnError, Complete
from flowable_worker.runtime import Worker
from tests.support.emulator import FlowableEmulator

from .conftest import eventually, serving, settings_for

JOB = Job(id="j1", topic="t", worker_id="w")


async def _no_sleep(_: float) -> None:
    return None


def _recording_reporter(
    answers: list[httpx.Response],
    seen: list[httpx.Request],
    *,
    fail_retries: int | None = None,
    fail_retry_timeout: timedelta | None = None,
) -> Reporter:
    def respond(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0)

    client = FlowableClient(
        ClientSettings(base_url="http://flowable.test"), transport=httpx.MockTransport(respond)
    )
    return Reporter(
        client, worker_id="w", policy=ReportPolicy(attempts=2), sleep=_no_sleep,
        fail_retries=fail_retries, fail_retry_timeout=fail_retry_timeout,
    )


async def test_a_refused_complete_is_failed_with_the_configured_retries_and_timeout() -> None:
    seen: list[httpx.Request] = []
    refused = httpx.Response(400, json={"message": "Bad request", "exception": "cannot store x"})
    reporter = _recording_reporter(
        [refused, httpx.Response(204)], seen,
        fail_retries=0, fail_retry_timeout=timedelta(seconds=30),
    )
    metrics = TopicMetrics(WorkerMetrics(), "t")
    assert await reporter.report(JOB, Complete({"x": 1}), metrics) == "done"
    fail = json.loads(seen[1].content)
    assert seen[1].url.path.endswith("/j1/fail")
    assert fail["retries"] == 0
    assert fail["retryTimeout"] == "PT30S"


async def test_variables_the_client_cannot_convert_are_failed_with_the_configured_retries() -> None:
    seen: list[httpx.Request] = []
    reporter = _recording_reporter([httpx.Response(204)], seen, fail_retries=2)
    metrics = TopicMetrics(WorkerMetrics(), "t")
    assert await reporter.report(JOB, Complete({"x": {1, 2}}), metrics) == "done"
    [fail_request] = seen
    assert json.loads(fail_request.content)["retries"] == 2


async def test_fail_retries_zero_dead_letters_a_job_whose_variables_cannot_be_stored(
    emulator: FlowableEmulator,
) -> None:
    # One job whose variables the client refuses, one whose BPMN error Flowable refuses (a BPMN
    # error on a CMMN job is a 400): with --fail-retries 0 each is failed once, then dead.
    unstorable = emulator.create_job("odd")
    misdirected = emulator.create_job("odd", scope_type="cmmn")
    worker = Worker(settings_for(emulator, topics=("odd",), fail_retries=0))

    def handler(job: Job) -> dict[str, object]:
        if job.id == misdirected.id:
            raise BpmnError("NOPE")
        return {"tags": {"a", "b"}}  # a set: no Flowable type

    worker.add_handler("odd", handler)
    async with serving(worker):
        async def both_dead() -> bool:
            dead = {j.id for j in emulator.dead_letter_jobs()}
            return {unstorable.id, misdirected.id} <= dead

        await eventually(both_dead, within=10)
    assert len(emulator.requests(endpoint="fail")) == 2
