"""Contract: acquiring jobs (POST /acquire/jobs), on the real server and the emulator alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from flowable_worker import BadRequestError, FlowableClient
from tests.support.backend import FlowableBackend


async def test_acquire_locks_jobs_for_the_worker(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    created = await backend.create_jobs(topic, 2)
    before = datetime.now(UTC)

    jobs = await client.acquire_jobs(
        topic=topic, worker_id="worker-a", lock_duration="PT5M", number_of_tasks=5
    )

    assert sorted(j.process_instance_id or "" for j in jobs) == sorted(
        c.instance_id for c in created
    )
    for job in jobs:
        assert job.lock_owner == "worker-a"
        assert job.lock_expiration_time is not None
        expected = before + timedelta(minutes=5)
        assert abs((job.lock_expiration_time - expected).total_seconds()) < 60
        assert job.element_id == created[0].element_id
        assert job.process_definition_id == created[0].definition_id
        assert job.retries == 3


async def test_acquire_takes_at_most_number_of_tasks(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    await backend.create_jobs(topic, 5)

    first = await client.acquire_jobs(
        topic=topic, worker_id="w", lock_duration="PT5M", number_of_tasks=3
    )
    second = await client.acquire_jobs(
        topic=topic, worker_id="w", lock_duration="PT5M", number_of_tasks=3
    )
    third = await client.acquire_jobs(
        topic=topic, worker_id="w", lock_duration="PT5M", number_of_tasks=3
    )

    assert (len(first), len(second), len(third)) == (3, 2, 0)
    assert not {j.id for j in first} & {j.id for j in second}


async def test_acquire_on_an_empty_topic_returns_an_empty_list(
    client: FlowableClient, topic: str
) -> None:
    assert await client.acquire_jobs(topic=topic, worker_id="w", lock_duration="PT1M") == []


async def test_acquire_ignores_jobs_of_other_topics(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    await backend.create_jobs(topic + "-other", 1)

    assert await client.acquire_jobs(topic=topic, worker_id="w", lock_duration="PT1M") == []


async def test_acquire_returns_the_instance_variables(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    await backend.create_jobs(topic, 1, variables={"customer": "ACME", "amount": 42})

    [job] = await client.acquire_jobs(topic=topic, worker_id="w", lock_duration="PT1M")

    assert job.variables["customer"] == "ACME"
    assert job.variables["amount"] == 42


async def test_acquire_accepts_a_timedelta_lock_duration(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    await backend.create_jobs(topic, 1)

    [job] = await client.acquire_jobs(
        topic=topic, worker_id="w", lock_duration=timedelta(seconds=90)
    )

    assert job.lock_expiration_time is not None


async def test_acquire_by_scope_type_only_takes_that_scope(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    await backend.create_jobs(topic, 1, scope_type="bpmn")
    [cmmn] = await backend.create_jobs(topic, 1, scope_type="cmmn")

    jobs = await client.acquire_jobs(
        topic=topic, worker_id="w", lock_duration="PT1M", number_of_tasks=5, scope_type="cmmn"
    )

    assert [j.scope_id for j in jobs] == [cmmn.instance_id]
    assert jobs[0].scope_type == "cmmn"
    assert jobs[0].scope_definition_id == cmmn.definition_id


@pytest.mark.parametrize(
    ("body", "what"),
    [
        ({"lockDuration": "PT1M", "workerId": "w"}, "topic"),
        ({"topic": "t", "workerId": "w"}, "lockDuration"),
        ({"topic": "t", "lockDuration": "PT1M"}, "workerId"),
        ({"topic": "t", "lockDuration": "PT1M", "workerId": "w", "numberOfTasks": 0}, "number of"),
    ],
    ids=["no-topic", "no-lock-duration", "no-worker-id", "zero-tasks"],
)
async def test_acquire_rejects_an_incomplete_request_with_400(
    backend: FlowableBackend, body: dict[str, object], what: str
) -> None:
    api = backend.client_settings().external_job_api_url
    async with httpx.AsyncClient() as raw:
        response = await raw.post(f"{api}/acquire/jobs", json=body)

    assert response.status_code == 400
    error = response.json()
    assert error["message"] == "Bad request"
    assert what.lower() in error["exception"].lower()


async def test_client_maps_an_acquire_400_to_bad_request_error(
    client: FlowableClient, topic: str
) -> None:
    with pytest.raises(BadRequestError) as caught:
        await client.acquire_jobs(topic=topic, worker_id="w", lock_duration="PT1M",
                                  number_of_tasks=0)

    assert caught.value.status == 400
    assert caught.value.exception
