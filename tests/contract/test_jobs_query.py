"""Contract: GET /jobs filters, paging and exact totals; GET /jobs/{id}.

Both backends are shared by the whole session, so every query is narrowed to the definitions or
instances a test created itself.
"""

from __future__ import annotations

import pytest

from flowable_worker import BadRequestError, FlowableClient, JobNotFoundError
from tests.support.backend import FlowableBackend


async def test_unlocked_and_locked_split_a_definitions_jobs(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    created = await backend.create_jobs(topic, 5)
    definition = created[0].definition_id
    await client.acquire_jobs(topic=topic, worker_id="w", lock_duration="PT5M", number_of_tasks=2)

    unlocked = await client.list_jobs(process_definition_id=definition, unlocked=True, size=10)
    locked = await client.list_jobs(process_definition_id=definition, locked=True, size=10)

    assert (unlocked.total, locked.total) == (3, 2)
    assert all(j.lock_owner is None for j in unlocked.data)
    assert all(j.lock_owner == "w" for j in locked.data)
    assert await client.count_jobs(process_definition_id=definition) == 5


async def test_element_id_filter_selects_that_tasks_jobs(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    [a] = await backend.create_jobs(topic, 1, element_id="checkTask")
    [b] = await backend.create_jobs(topic + "-b", 1, element_id="otherTask")

    page = await client.list_jobs(element_id="checkTask", process_definition_id=a.definition_id)
    other = await client.list_jobs(element_id="checkTask", process_definition_id=b.definition_id)

    assert [j.process_instance_id for j in page.data] == [a.instance_id]
    assert page.data[0].element_id == "checkTask"
    assert other.total == 0


async def test_scope_definition_id_filter_counts_case_jobs(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    created = await backend.create_jobs(topic, 2, scope_type="cmmn")

    page = await client.list_jobs(scope_definition_id=created[0].definition_id)

    assert page.total == 2
    assert {j.scope_id for j in page.data} == {c.instance_id for c in created}
    assert all(j.scope_type == "cmmn" and j.process_instance_id is None for j in page.data)


async def test_tenant_id_filter(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    [t] = await backend.create_jobs(topic, 1, tenant_id="acme")

    assert await client.count_jobs(tenant_id="acme", process_definition_id=t.definition_id) == 1
    assert await client.count_jobs(tenant_id="other", process_definition_id=t.definition_id) == 0
    [job] = (await client.list_jobs(process_instance_id=t.instance_id)).data
    assert job.tenant_id == "acme"


async def test_unacquire_scoped_to_another_tenant_is_refused(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    await backend.create_jobs(topic, 1, tenant_id="acme")
    [job] = await client.acquire_jobs(topic=topic, worker_id=topic, lock_duration="PT5M")

    with pytest.raises(BadRequestError) as caught:
        await client.unacquire_jobs(worker_id=topic, tenant_id="other")
    assert "different tenant" in (caught.value.exception or "")
    assert (await client.get_job(job.id)).lock_owner == topic
    await client.unacquire_jobs(worker_id=topic, tenant_id="acme")
    assert (await client.get_job(job.id)).lock_owner is None


async def test_paging_returns_slices_with_an_exact_total(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    created = await backend.create_jobs(topic, 5)
    definition = created[0].definition_id

    first = await client.list_jobs(process_definition_id=definition, start=0, size=2)
    last = await client.list_jobs(process_definition_id=definition, start=4, size=2)
    everything = await client.list_jobs(process_definition_id=definition, size=100)

    assert (first.total, len(first.data), first.start, first.size) == (5, 2, 0, 2)
    assert (last.total, len(last.data), last.start, last.size) == (5, 1, 4, 1)
    ids = [j.id for j in everything.data]
    assert len(set(ids)) == 5
    assert set(ids) >= {j.id for j in first.data} | {j.id for j in last.data}


async def test_default_page_size_is_ten(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    created = await backend.create_jobs(topic, 12)

    page = await client.list_jobs(process_definition_id=created[0].definition_id)

    assert (page.total, len(page.data)) == (12, 10)


async def test_sort_and_order(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    created = await backend.create_jobs(topic, 4)
    definition = created[0].definition_id

    ascending = await client.list_jobs(process_definition_id=definition, sort="id", order="asc")
    descending = await client.list_jobs(process_definition_id=definition, sort="id", order="desc")

    assert [j.id for j in ascending.data] == sorted(j.id for j in ascending.data)
    assert [j.id for j in descending.data] == list(reversed([j.id for j in ascending.data]))


async def test_count_of_a_definition_without_jobs_is_zero(client: FlowableClient) -> None:
    assert await client.count_jobs(process_definition_id="missing:1:1") == 0


async def test_get_job_returns_every_field(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    [created] = await backend.create_jobs(topic, 1, element_id="fieldTask")
    [listed] = (await client.list_jobs(process_instance_id=created.instance_id)).data

    job = await client.get_job(listed.id)

    assert job.id == listed.id
    assert job.url
    assert job.url.endswith(job.id)
    assert job.process_instance_id == created.instance_id
    assert job.process_definition_id == created.definition_id
    assert job.execution_id
    assert job.element_id == "fieldTask"
    assert job.retries == 3
    assert job.create_time is not None
    assert job.lock_owner is None


async def test_get_unknown_job_answers_not_found(client: FlowableClient) -> None:
    with pytest.raises(JobNotFoundError) as caught:
        await client.get_job("no-such-job")

    assert caught.value.status == 404
