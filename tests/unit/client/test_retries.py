"""Reads are retried with jittered backoff; writes never are."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from flowable_worker import FlowableClient, FlowableTransportError, JobNotFoundError, ServerError
from flowable_worker.client.backoff import Backoff
from tests.unit.client.conftest import ScriptedFlowable, SleepRecorder, job_json, page_json

BUSY = httpx.Response(503, json={"message": "busy"})


async def test_a_get_is_retried_after_a_5xx_and_then_succeeds(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    flowable.answer(BUSY, httpx.Response(200, json=job_json()))

    job = await client.get_job("job-1")

    assert job.id == "job-1"
    assert len(flowable.requests) == 2


async def test_a_get_is_retried_after_a_transport_error_and_then_succeeds(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    flowable.answer(
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.Response(200, json=page_json(total=4)),
    )

    assert await client.count_jobs(unlocked=True) == 4
    assert len(flowable.requests) == 3


async def test_a_get_gives_up_after_the_configured_extra_attempts(
    make_client: Callable[..., FlowableClient], flowable: ScriptedFlowable
) -> None:
    flowable.answer(BUSY, BUSY, BUSY)

    async with make_client(read_retries=2) as client:
        with pytest.raises(ServerError):
            await client.get_job("job-1")

    assert len(flowable.requests) == 3


async def test_zero_read_retries_means_one_attempt(
    make_client: Callable[..., FlowableClient], flowable: ScriptedFlowable
) -> None:
    flowable.answer(httpx.ConnectError("refused"))

    async with make_client(read_retries=0) as client:
        with pytest.raises(FlowableTransportError):
            await client.list_jobs()

    assert len(flowable.requests) == 1


async def test_a_get_is_not_retried_after_a_4xx(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    flowable.answer(httpx.Response(404))

    with pytest.raises(JobNotFoundError):
        await client.get_job("job-1")

    assert len(flowable.requests) == 1


@pytest.mark.parametrize("failure", [BUSY, httpx.ConnectError("refused"), httpx.ReadTimeout("x")])
async def test_a_post_is_never_retried(
    client: FlowableClient, flowable: ScriptedFlowable, failure: httpx.Response | Exception
) -> None:
    flowable.answer(failure, httpx.Response(200, json=[]))

    with pytest.raises((ServerError, FlowableTransportError)):
        await client.acquire_jobs(topic="t", worker_id="w", lock_duration="PT1M")

    assert len(flowable.requests) == 1


async def test_retries_wait_with_growing_jittered_backoff(
    make_client: Callable[..., FlowableClient],
    flowable: ScriptedFlowable,
    sleeps: SleepRecorder,
) -> None:
    flowable.answer(BUSY, BUSY, BUSY, httpx.Response(200, json=job_json()))

    async with make_client(retry_backoff_seconds=0.2, retry_backoff_max_seconds=0.5) as client:
        await client.get_job("job-1")

    caps = [0.2, 0.4, 0.5]
    assert len(sleeps.waits) == 3
    assert all(0 <= wait <= cap for wait, cap in zip(sleeps.waits, caps, strict=True))


def test_backoff_caps_double_until_the_maximum() -> None:
    backoff = Backoff(initial=0.2, maximum=5)

    assert [backoff.cap(n) for n in range(7)] == [0.2, 0.4, 0.8, 1.6, 3.2, 5, 5]


def test_backoff_draws_the_wait_uniformly_below_the_cap() -> None:
    drawn: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        drawn.append((low, high))
        return high / 2

    backoff = Backoff(initial=1, maximum=10, uniform=uniform)

    assert backoff.delay(2) == 2
    assert drawn == [(0.0, 4)]


def test_backoff_survives_absurd_attempt_numbers() -> None:
    assert Backoff(initial=0.2, maximum=5).cap(10_000) == 5


def test_zero_base_backoff_never_waits() -> None:
    assert Backoff(initial=0, maximum=5).delay(3) == 0
