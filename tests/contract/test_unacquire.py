"""Contract: giving jobs back (unacquire all of a worker's jobs, or one).

Flowable 7.2 surprise, pinned here: acquiring an *exclusive* BPMN job (the default) also locks its
process instance until the job's lock would expire, and unacquire releases the job but not that
instance lock. Until then the job can't be acquired, and an acquire batch that picks it comes back
empty as a whole. Non-exclusive tasks and CMMN jobs are free again at once.
"""

from __future__ import annotations

import asyncio

import pytest

from flowable_worker import FlowableClient, JobNotFoundError, LockNotHeldError
from tests.support.backend import FlowableBackend


async def test_unacquire_all_releases_every_job_of_that_worker_only(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    await backend.create_jobs(topic, 3, exclusive=False)
    mine = await client.acquire_jobs(topic=topic, worker_id="leaving", lock_duration="PT5M",
                                     number_of_tasks=2)
    [theirs] = await client.acquire_jobs(topic=topic, worker_id="staying", lock_duration="PT5M")

    await client.unacquire_jobs(worker_id="leaving")

    for job in mine:
        released = await client.get_job(job.id)
        assert released.lock_owner is None
        assert released.lock_expiration_time is None
    assert (await client.get_job(theirs.id)).lock_owner == "staying"
    again = await client.acquire_jobs(topic=topic, worker_id="next", lock_duration="PT5M",
                                      number_of_tasks=5)
    assert {j.id for j in again} == {j.id for j in mine}


async def test_an_unacquired_exclusive_job_waits_out_its_original_lock(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    await backend.create_jobs(topic, 1)
    [job] = await client.acquire_jobs(topic=topic, worker_id="w", lock_duration="PT2S")

    await client.unacquire_jobs(worker_id="w")

    assert (await client.get_job(job.id)).lock_owner is None
    assert await client.acquire_jobs(topic=topic, worker_id="w2", lock_duration="PT1M") == []
    await asyncio.sleep(2.5)
    [again] = await client.acquire_jobs(topic=topic, worker_id="w2", lock_duration="PT1M")
    assert again.id == job.id


async def test_an_unacquired_exclusive_job_empties_the_whole_acquire_batch(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    await backend.create_jobs(topic, 2)
    [job] = await client.acquire_jobs(topic=topic, worker_id="w", lock_duration="PT30S")
    await client.unacquire_job(job.id, worker_id="w")

    batch = await client.acquire_jobs(topic=topic, worker_id="w2", lock_duration="PT1M",
                                      number_of_tasks=5)

    assert batch == []
    assert await client.count_jobs(process_definition_id=job.process_definition_id,
                                   unlocked=True) == 2


async def test_a_failed_exclusive_job_is_acquirable_at_once(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    await backend.create_jobs(topic, 1)
    [job] = await client.acquire_jobs(topic=topic, worker_id="w", lock_duration="PT30S")

    await client.fail_job(job.id, worker_id="w", error_message="released", retries=job.retries)

    [again] = await client.acquire_jobs(topic=topic, worker_id="w2", lock_duration="PT1M")
    assert again.id == job.id
    assert again.retries == job.retries


async def test_an_unacquired_cmmn_job_is_acquirable_at_once(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    await backend.create_jobs(topic, 1, scope_type="cmmn")
    [job] = await client.acquire_jobs(topic=topic, worker_id="w", lock_duration="PT30S")

    await client.unacquire_jobs(worker_id="w")

    [again] = await client.acquire_jobs(topic=topic, worker_id="w2", lock_duration="PT1M")
    assert again.id == job.id


async def test_unacquire_all_for_a_worker_without_jobs_succeeds(client: FlowableClient) -> None:
    await client.unacquire_jobs(worker_id="holds-nothing")


async def test_unacquire_one_releases_that_job(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    await backend.create_jobs(topic, 2, exclusive=False)
    first, second = await client.acquire_jobs(topic=topic, worker_id="w", lock_duration="PT5M",
                                              number_of_tasks=2)

    await client.unacquire_job(first.id, worker_id="w")

    assert (await client.get_job(first.id)).lock_owner is None
    assert (await client.get_job(second.id)).lock_owner == "w"


async def test_unacquire_one_by_another_worker_is_forbidden(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    await backend.create_jobs(topic, 1)
    [job] = await client.acquire_jobs(topic=topic, worker_id="owner", lock_duration="PT5M")

    with pytest.raises(LockNotHeldError) as caught:
        await client.unacquire_job(job.id, worker_id="intruder")

    assert caught.value.status == 403
    assert (await client.get_job(job.id)).lock_owner == "owner"


async def test_unacquire_one_unknown_job_answers_not_found(client: FlowableClient) -> None:
    with pytest.raises(JobNotFoundError) as caught:
        await client.unacquire_job("no-such-job", worker_id="w")

    assert caught.value.status == 404
