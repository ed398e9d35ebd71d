"""Acquire: locking, job fields, variables, validation, as a real Flowable 7.2 answers."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
import pytest

from tests.support.emulator import FlowableEmulator, ManualClock

from .calls import acquire

ISO_MILLIS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z")


def test_acquired_bpmn_job_has_process_ids_no_scope_type_and_a_lock(
        emulator: FlowableEmulator, api: httpx.Client, clock: ManualClock) -> None:
    created = emulator.create_job("topic", tenant_id="acme")
    [job] = acquire(api, worker="w1", lock="PT5M")
    assert job["id"] == created.id
    assert job["url"] == f"{emulator.api_url}/jobs/{created.id}"
    assert job["processInstanceId"] == created.instance_id
    assert job["processDefinitionId"].startswith("proc_topic:1:")
    assert job["executionId"]
    assert job["executionId"] != job["processInstanceId"]
    assert job["scopeType"] is None
    assert job["scopeId"] is None
    assert job["elementId"] == "externalTask"
    assert job["retries"] == 3
    assert job["tenantId"] == "acme"
    assert job["lockOwner"] == "w1"
    assert job["createTime"] == "2025-01-02T03:04:05Z"
    assert job["lockExpirationTime"] == "2025-01-02T03:09:05Z"
    assert ISO_MILLIS.fullmatch(job["createTime"])


def test_cmmn_job_carries_scope_ids_and_scope_type(
        emulator: FlowableEmulator, api: httpx.Client) -> None:
    created = emulator.create_job("topic", scope_type="cmmn")
    [job] = acquire(api)
    assert job["scopeType"] == "cmmn"
    assert job["scopeId"] == created.instance_id
    assert job["subScopeId"]
    assert job["scopeDefinitionId"].startswith("case_topic:1:")
    assert job["processInstanceId"] is None
    assert job["executionId"] is None


def test_jobs_of_one_topic_share_a_definition_but_not_instances(
        emulator: FlowableEmulator) -> None:
    a, b = emulator.create_job("t"), emulator.create_job("t")
    other = emulator.create_job("u")
    assert a.process_definition_id == b.process_definition_id != other.process_definition_id
    assert a.instance_id != b.instance_id


def test_milliseconds_appear_when_not_zero(
        emulator: FlowableEmulator, api: httpx.Client, clock: ManualClock) -> None:
    clock.advance(0.25)
    emulator.create_job("topic")
    [job] = acquire(api, lock="PT0.5S")
    assert job["createTime"] == "2025-01-02T03:04:05.250Z"
    assert job["lockExpirationTime"] == "2025-01-02T03:04:05.750Z"


def test_instance_variables_come_with_the_acquired_job(
        emulator: FlowableEmulator, api: httpx.Client) -> None:
    emulator.create_job("topic", variables=[
        {"name": "amount", "type": "integer", "value": 5},
        {"name": "note", "type": "string", "value": None}])
    [job] = acquire(api)
    assert job["variables"] == [{"name": "amount", "type": "integer", "value": 5},
                                {"name": "note", "value": None}]


def test_acquire_takes_at_most_number_of_tasks_and_only_the_topic(
        emulator: FlowableEmulator, api: httpx.Client) -> None:
    for _ in range(3):
        emulator.create_job("topic")
    emulator.create_job("other")
    assert len(acquire(api, n=2)) == 2
    assert len(acquire(api, n=5)) == 1
    assert acquire(api, n=5) == []


def test_a_locked_job_is_not_acquired_again_even_after_its_lock_expired(
        emulator: FlowableEmulator, api: httpx.Client, clock: ManualClock) -> None:
    emulator.create_job("topic")
    assert len(acquire(api, worker="w1", lock="PT1S")) == 1
    clock.advance(5)
    assert acquire(api, worker="w2") == []
    emulator.reset_expired_locks()
    [job] = acquire(api, worker="w2")
    assert job["lockOwner"] == "w2"


def test_scope_type_filter_separates_bpmn_and_cmmn(
        emulator: FlowableEmulator, api: httpx.Client) -> None:
    bpmn = emulator.create_job("topic")
    cmmn = emulator.create_job("topic", scope_type="cmmn")
    assert [j["id"] for j in acquire(api, n=5, scopeType="cmmn")] == [cmmn.id]
    assert [j["id"] for j in acquire(api, n=5, scopeType="bpmn")] == [bpmn.id]


def test_number_of_retries_zero_acquires_nothing(
        emulator: FlowableEmulator, api: httpx.Client) -> None:
    emulator.create_job("topic")
    assert acquire(api, numberOfRetries=0) == []


def test_lock_duration_is_java_duration_with_days_and_fractions(
        emulator: FlowableEmulator, api: httpx.Client) -> None:
    emulator.create_job("topic")
    [job] = acquire(api, lock="P1DT1.5S")
    assert job["lockExpirationTime"] == "2025-01-03T03:04:06.500Z"
    [stored] = emulator.jobs()
    assert stored.lock_expiration_time is not None
    assert stored.lock_expiration_time - stored.create_time == timedelta(days=1, seconds=1.5)


@pytest.mark.parametrize(("body", "message"), [
    ({"lockDuration": "PT1M", "workerId": "w"}, "topic is required"),
    ({"topic": "", "lockDuration": "PT1M", "workerId": "w"}, "topic is required"),
    ({"topic": "t", "workerId": "w"}, "lockDuration is required"),
    ({"topic": "t", "lockDuration": "PT1M"}, "workerId is required"),
    ({"topic": "t", "lockDuration": "PT1M", "workerId": ""}, "workerId is required"),
    ({"topic": "t", "lockDuration": "PT1M", "workerId": "w", "numberOfTasks": 0},
     "requested number of jobs must not be smaller than 1"),
])
def test_invalid_acquire_is_400_with_flowable_body(
        api: httpx.Client, body: dict[str, object], message: str) -> None:
    response = api.post("/acquire/jobs", json=body)
    assert response.status_code == 400
    assert response.json() == {"message": "Bad request", "exception": message}


def test_unparsable_lock_duration_is_400(api: httpx.Client) -> None:
    response = api.post("/acquire/jobs",
                        json={"topic": "t", "lockDuration": "5 minutes", "workerId": "w"})
    assert response.status_code == 400
    assert response.json()["message"] == "Bad request"


def test_acquire_without_a_body_is_400(api: httpx.Client) -> None:
    assert api.post("/acquire/jobs").status_code == 400
