"""Every endpoint sends the method, path and body Flowable's external-worker API expects."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from flowable_worker import AcquiredJob, FlowableClient, TypedValue
from tests.unit.client.conftest import API, ScriptedFlowable, job_json, page_json

NO_CONTENT = httpx.Response(204)


async def test_acquire_posts_topic_worker_lock_and_batch_size(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    flowable.answer(httpx.Response(200, json=[]))

    await client.acquire_jobs(
        topic="invoice", worker_id="w1", lock_duration="PT5M", number_of_tasks=10
    )

    assert flowable.last.method == "POST"
    assert str(flowable.last.url) == f"{API}/acquire/jobs"
    assert flowable.last_json() == {
        "topic": "invoice",
        "workerId": "w1",
        "lockDuration": "PT5M",
        "numberOfTasks": 10,
    }


async def test_acquire_sends_server_retries_and_scope_type_only_when_given(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    flowable.answer(httpx.Response(200, json=[]))

    await client.acquire_jobs(
        topic="t", worker_id="w", lock_duration="PT1M", number_of_retries=7, scope_type="cmmn"
    )

    assert flowable.last_json() == {
        "topic": "t",
        "workerId": "w",
        "lockDuration": "PT1M",
        "numberOfTasks": 1,
        "numberOfRetries": 7,
        "scopeType": "cmmn",
    }


async def test_acquire_writes_a_timedelta_lock_as_iso_duration(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    flowable.answer(httpx.Response(200, json=[]))

    await client.acquire_jobs(topic="t", worker_id="w", lock_duration=timedelta(minutes=5))

    assert flowable.last_json()["lockDuration"] == "PT5M"


async def test_acquire_returns_jobs_with_converted_variables(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    variables = [
        {"name": "amount", "type": "integer", "value": 42},
        {"name": "customer", "type": "string", "value": "acme"},
    ]
    flowable.answer(httpx.Response(200, json=[job_json(variables=variables)]))

    [job] = await client.acquire_jobs(topic="t", worker_id="w1", lock_duration="PT5M")

    assert isinstance(job, AcquiredJob)
    assert job.variables == {"amount": 42, "customer": "acme"}
    assert [v.name for v in job.raw_variables] == ["amount", "customer"]
    assert job.lock_owner == "w1"


async def test_complete_posts_worker_and_typed_variables(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    flowable.answer(NO_CONTENT)

    await client.complete_job("job-1", worker_id="w1", variables={"ok": True})

    assert flowable.last.method == "POST"
    assert str(flowable.last.url) == f"{API}/acquire/jobs/job-1/complete"
    assert flowable.last_json() == {
        "workerId": "w1",
        "variables": [{"name": "ok", "type": "boolean", "value": True}],
    }


async def test_complete_without_variables_sends_only_the_worker(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    flowable.answer(NO_CONTENT)

    await client.complete_job("job-1", worker_id="w1")

    assert flowable.last_json() == {"workerId": "w1"}


async def test_bpmn_error_posts_error_code_and_variables(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    flowable.answer(NO_CONTENT)

    await client.bpmn_error("job-1", worker_id="w1", error_code="E1", variables={"why": "no"})

    assert str(flowable.last.url) == f"{API}/acquire/jobs/job-1/bpmnError"
    assert flowable.last_json() == {
        "workerId": "w1",
        "errorCode": "E1",
        "variables": [{"name": "why", "type": "string", "value": "no"}],
    }


async def test_cmmn_terminate_posts_worker_and_variables(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    flowable.answer(NO_CONTENT)

    await client.cmmn_terminate("job-1", worker_id="w1", variables={"n": TypedValue(3, "short")})

    assert str(flowable.last.url) == f"{API}/acquire/jobs/job-1/cmmnTerminate"
    assert flowable.last_json() == {
        "workerId": "w1",
        "variables": [{"name": "n", "type": "short", "value": 3}],
    }


async def test_fail_posts_message_details_retries_and_iso_retry_timeout(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    flowable.answer(NO_CONTENT)

    await client.fail_job(
        "job-1",
        worker_id="w1",
        error_message="boom",
        error_details="trace",
        retries=2,
        retry_timeout=timedelta(seconds=30),
    )

    assert str(flowable.last.url) == f"{API}/acquire/jobs/job-1/fail"
    assert flowable.last_json() == {
        "workerId": "w1",
        "errorMessage": "boom",
        "errorDetails": "trace",
        "retries": 2,
        "retryTimeout": "PT30S",
    }


async def test_fail_leaves_out_retries_so_the_server_decrements_them(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    flowable.answer(NO_CONTENT)

    await client.fail_job("job-1", worker_id="w1", error_message="boom")

    assert flowable.last_json() == {"workerId": "w1", "errorMessage": "boom"}


async def test_fail_passes_a_retry_timeout_string_through(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    flowable.answer(NO_CONTENT)

    await client.fail_job("job-1", worker_id="w1", retry_timeout="PT10M")

    assert flowable.last_json()["retryTimeout"] == "PT10M"


async def test_unacquire_all_posts_worker_and_tenant(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    flowable.answer(NO_CONTENT, NO_CONTENT)

    await client.unacquire_jobs(worker_id="w1")
    first = flowable.last_json()
    await client.unacquire_jobs(worker_id="w1", tenant_id="acme")

    assert flowable.last.method == "POST"
    assert str(flowable.last.url) == f"{API}/unacquire/jobs"
    assert first == {"workerId": "w1"}
    assert flowable.last_json() == {"workerId": "w1", "tenantId": "acme"}


async def test_unacquire_all_accepts_a_200_with_an_empty_object(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    flowable.answer(httpx.Response(200, json={}))

    await client.unacquire_jobs(worker_id="w1")


async def test_unacquire_one_posts_worker_to_the_jobs_path(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    flowable.answer(NO_CONTENT)

    await client.unacquire_job("job-1", worker_id="w1")

    assert str(flowable.last.url) == f"{API}/unacquire/jobs/job-1"
    assert flowable.last_json() == {"workerId": "w1"}


async def test_job_ids_are_quoted_so_they_cannot_change_the_path(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    flowable.answer(NO_CONTENT)

    await client.complete_job("a/../b", worker_id="w1")

    assert flowable.last.url.raw_path == b"/external-job-api/acquire/jobs/a%2F..%2Fb/complete"


async def test_get_job_reads_one_job(client: FlowableClient, flowable: ScriptedFlowable) -> None:
    flowable.answer(httpx.Response(200, json=job_json()))

    job = await client.get_job("job-1")

    assert flowable.last.method == "GET"
    assert str(flowable.last.url) == f"{API}/jobs/job-1"
    assert (job.id, job.element_id, job.retries) == ("job-1", "checkTask", 3)


async def test_list_jobs_sends_filters_in_camel_case_and_paging(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    flowable.answer(httpx.Response(200, json=page_json(job_json(), total=12)))

    page = await client.list_jobs(
        unlocked=True,
        element_id="checkTask",
        process_definition_id="invoice:1:4",
        start=0,
        size=10,
        sort="id",
        order="asc",
    )

    assert flowable.last.method == "GET"
    assert flowable.last.url.path == "/external-job-api/jobs"
    assert dict(flowable.last.url.params) == {
        "unlocked": "true",
        "elementId": "checkTask",
        "processDefinitionId": "invoice:1:4",
        "start": "0",
        "size": "10",
        "sort": "id",
        "order": "asc",
    }
    assert (page.total, page.size, page.sort, page.order) == (12, 1, "id", "asc")
    assert page.data[0].id == "job-1"


async def test_list_jobs_knows_every_rest_filter_name(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    flowable.answer(httpx.Response(200, json=page_json()))

    await client.list_jobs(
        id="j",
        process_instance_id="pi",
        without_process_instance_id=True,
        execution_id="ex",
        process_definition_id="pd",
        scope_id="s",
        without_scope_id=True,
        sub_scope_id="ss",
        scope_definition_id="sd",
        scope_type="cmmn",
        element_id="e",
        element_name="E",
        with_exception=True,
        exception_message="m",
        tenant_id="t",
        tenant_id_like="t%",
        without_tenant_id=True,
        locked=True,
        unlocked=True,
        without_scope_type=True,
    )

    assert set(flowable.last.url.params) == {
        "id", "processInstanceId", "withoutProcessInstanceId", "executionId",
        "processDefinitionId", "scopeId", "withoutScopeId", "subScopeId", "scopeDefinitionId",
        "scopeType", "elementId", "elementName", "withException", "exceptionMessage", "tenantId",
        "tenantIdLike", "withoutTenantId", "locked", "unlocked", "withoutScopeType",
    }  # fmt: skip


async def test_false_and_none_filters_are_not_sent(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    flowable.answer(httpx.Response(200, json=page_json()))

    await client.list_jobs(locked=False, unlocked=None, element_id=None, tenant_id="acme")

    assert dict(flowable.last.url.params) == {"tenantId": "acme"}


async def test_count_jobs_asks_for_one_row_and_returns_the_total(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    flowable.answer(httpx.Response(200, json=page_json(job_json(), total=57)))

    count = await client.count_jobs(locked=True, process_definition_id="invoice:1:4")

    assert count == 57
    assert dict(flowable.last.url.params) == {
        "locked": "true",
        "processDefinitionId": "invoice:1:4",
        "size": "1",
    }


async def test_every_request_asks_for_json(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    flowable.answer(httpx.Response(200, json=page_json()))

    await client.list_jobs()

    assert flowable.last.headers["accept"] == "application/json"


async def test_an_unknown_filter_name_fails_before_any_request(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    with pytest.raises(TypeError, match="topic"):
        await client.list_jobs(topic="invoice")  # type: ignore[call-arg]

    assert flowable.requests == []
