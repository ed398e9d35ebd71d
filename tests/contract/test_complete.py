"""Contract: finishing an acquired job (complete, bpmnError, cmmnTerminate); lock-owner checks."""

from __future__ import annotations

import asyncio

import pytest

from flowable_worker import (
    BadRequestError,
    FlowableClient,
    JobNotFoundError,
    LockNotHeldError,
)
from tests.support.backend import FlowableBackend
from tests.support.waiting import eventually


async def test_complete_ends_the_task_and_sets_variables(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    [created] = await backend.create_jobs(topic, 1)
    [job] = await client.acquire_jobs(topic=topic, worker_id="w", lock_duration="PT1M")

    await client.complete_job(job.id, worker_id="w", variables={"approved": True, "score": 7})

    await eventually(lambda: backend.instance_finished(created))
    variables = await backend.instance_variables(created)
    assert variables["approved"] is True
    assert variables["score"] == 7


async def test_complete_removes_the_job(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    await backend.create_jobs(topic, 1)
    [job] = await client.acquire_jobs(topic=topic, worker_id="w", lock_duration="PT1M")

    await client.complete_job(job.id, worker_id="w")

    with pytest.raises(JobNotFoundError):
        await client.get_job(job.id)


async def test_complete_by_another_worker_is_refused_as_lock_not_held(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    await backend.create_jobs(topic, 1)
    [job] = await client.acquire_jobs(topic=topic, worker_id="owner", lock_duration="PT1M")

    with pytest.raises(LockNotHeldError) as caught:
        await client.complete_job(job.id, worker_id="intruder")

    assert caught.value.status == 403
    assert "does not hold a lock" in (caught.value.exception or "")
    assert (await client.get_job(job.id)).lock_owner == "owner"


async def test_complete_of_an_unacquired_job_is_refused(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    [created] = await backend.create_jobs(topic, 1)
    page = await client.list_jobs(process_instance_id=created.instance_id)

    with pytest.raises(LockNotHeldError):
        await client.complete_job(page.data[0].id, worker_id="w")


async def test_completing_twice_answers_not_found(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    await backend.create_jobs(topic, 1)
    [job] = await client.acquire_jobs(topic=topic, worker_id="w", lock_duration="PT1M")
    await client.complete_job(job.id, worker_id="w")

    with pytest.raises(JobNotFoundError) as caught:
        await client.complete_job(job.id, worker_id="w")

    assert caught.value.status == 404
    assert job.id in (caught.value.exception or "")


async def test_complete_of_an_unknown_job_answers_not_found(client: FlowableClient) -> None:
    with pytest.raises(JobNotFoundError):
        await client.complete_job("no-such-job", worker_id="w")


async def test_bpmn_error_ends_the_task_through_the_error_path(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    [created] = await backend.create_jobs(topic, 1)
    [job] = await client.acquire_jobs(topic=topic, worker_id="w", lock_duration="PT1M")

    await client.bpmn_error(job.id, worker_id="w", error_code="REJECTED",
                            variables={"reason": "too big"})

    await eventually(lambda: backend.instance_finished(created))
    assert (await backend.instance_variables(created))["reason"] == "too big"


async def test_bpmn_error_on_a_cmmn_job_is_a_bad_request(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    await backend.create_jobs(topic, 1, scope_type="cmmn")
    [job] = await client.acquire_jobs(topic=topic, worker_id="w", lock_duration="PT1M")

    with pytest.raises(BadRequestError):
        await client.bpmn_error(job.id, worker_id="w", error_code="E")


async def test_cmmn_terminate_ends_the_case_task(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    [created] = await backend.create_jobs(topic, 1, scope_type="cmmn")
    [job] = await client.acquire_jobs(topic=topic, worker_id="w", lock_duration="PT1M")

    await client.cmmn_terminate(job.id, worker_id="w", variables={"terminated": "yes"})

    with pytest.raises(JobNotFoundError):
        await client.get_job(job.id)
    await eventually(lambda: backend.instance_finished(created))


async def test_cmmn_terminate_on_a_bpmn_job_is_a_bad_request(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    await backend.create_jobs(topic, 1)
    [job] = await client.acquire_jobs(topic=topic, worker_id="w", lock_duration="PT1M")

    with pytest.raises(BadRequestError):
        await client.cmmn_terminate(job.id, worker_id="w")


async def test_complete_finishes_a_cmmn_task(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    [created] = await backend.create_jobs(topic, 1, scope_type="cmmn")
    [job] = await client.acquire_jobs(topic=topic, worker_id="w", lock_duration="PT1M")

    await client.complete_job(job.id, worker_id="w", variables={"done": 1})

    await eventually(lambda: backend.instance_finished(created))
    assert (await backend.instance_variables(created))["done"] == 1


async def test_an_expired_lock_is_reset_and_the_job_goes_to_another_worker(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    await backend.create_jobs(topic, 1)
    [job] = await client.acquire_jobs(topic=topic, worker_id="slow", lock_duration="PT1S")

    await asyncio.sleep(1.5)  # the lock expires ...
    await backend.reset_expired_locks()  # ... and the engine's reset thread clears it
    [again] = await client.acquire_jobs(topic=topic, worker_id="fast", lock_duration="PT1M")

    assert again.id == job.id
    with pytest.raises(LockNotHeldError):
        await client.complete_job(job.id, worker_id="slow")
    await client.complete_job(job.id, worker_id="fast")
