"""Contract: failing a job: retries, dead-lettering, retryTimeout and lock-owner checks."""

from __future__ import annotations

from datetime import timedelta

import pytest

from flowable_worker import FlowableClient, JobNotFoundError, LockNotHeldError
from tests.support.backend import FlowableBackend


async def test_fail_without_retries_decrements_them_and_releases_the_job(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    await backend.create_jobs(topic, 1)
    [job] = await client.acquire_jobs(topic=topic, worker_id="w", lock_duration="PT1M")

    await client.fail_job(job.id, worker_id="w", error_message="boom", error_details="trace")

    after = await client.get_job(job.id)
    assert after.retries == 2
    assert after.lock_owner is None
    assert after.lock_expiration_time is None
    assert after.exception_message == "boom"
    [again] = await client.acquire_jobs(topic=topic, worker_id="w2", lock_duration="PT1M")
    assert again.id == job.id


async def test_fail_with_explicit_retries_sets_them(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    await backend.create_jobs(topic, 1)
    [job] = await client.acquire_jobs(topic=topic, worker_id="w", lock_duration="PT1M")

    await client.fail_job(job.id, worker_id="w", error_message="boom", retries=7)

    assert (await client.get_job(job.id)).retries == 7


async def test_fail_with_zero_retries_moves_the_job_to_the_dead_letters(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    [created] = await backend.create_jobs(topic, 1)
    [job] = await client.acquire_jobs(topic=topic, worker_id="w", lock_duration="PT1M")

    await client.fail_job(job.id, worker_id="w", error_message="fatal", retries=0)

    with pytest.raises(JobNotFoundError):
        await client.get_job(job.id)
    assert await client.count_jobs(process_instance_id=created.instance_id) == 0
    assert await client.acquire_jobs(topic=topic, worker_id="w", lock_duration="PT1M") == []
    assert await backend.dead_letter_job_ids([created]) == [job.id]


async def test_failing_the_last_retry_dead_letters_the_job(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    [created] = await backend.create_jobs(topic, 1)
    for _ in range(3):
        [job] = await client.acquire_jobs(topic=topic, worker_id="w", lock_duration="PT1M")
        await client.fail_job(job.id, worker_id="w", error_message="again")

    assert await client.count_jobs(process_instance_id=created.instance_id) == 0
    assert await backend.dead_letter_job_ids([created]) == [job.id]


async def test_fail_with_retry_timeout_keeps_the_job_locked_without_owner(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    [created] = await backend.create_jobs(topic, 1)
    [job] = await client.acquire_jobs(topic=topic, worker_id="w", lock_duration="PT1M")

    await client.fail_job(job.id, worker_id="w", error_message="later",
                          retry_timeout=timedelta(minutes=10))

    after = await client.get_job(job.id)
    assert after.lock_owner is None
    assert after.lock_expiration_time is not None
    assert await client.count_jobs(process_instance_id=created.instance_id, locked=True) == 1
    assert await client.count_jobs(process_instance_id=created.instance_id, unlocked=True) == 0
    assert await client.acquire_jobs(topic=topic, worker_id="w", lock_duration="PT1M") == []


async def test_fail_by_another_worker_is_refused(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    await backend.create_jobs(topic, 1)
    [job] = await client.acquire_jobs(topic=topic, worker_id="owner", lock_duration="PT1M")

    with pytest.raises(LockNotHeldError):
        await client.fail_job(job.id, worker_id="intruder", error_message="x")

    assert (await client.get_job(job.id)).retries == 3


async def test_fail_of_an_unknown_job_answers_not_found(client: FlowableClient) -> None:
    with pytest.raises(JobNotFoundError):
        await client.fail_job("no-such-job", worker_id="w", error_message="x")
