"""GET /jobs and /jobs/{id}: every filter, paging, sorting, exact totals."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.emulator import FlowableEmulator, Job, ManualClock

from .calls import acquire


def ids(api: httpx.Client, **params: Any) -> set[str]:
    response = api.get("/jobs", params={"size": 100, **params})
    assert response.status_code == 200, response.text
    return {j["id"] for j in response.json()["data"]}


@pytest.fixture
def mix(emulator: FlowableEmulator, api: httpx.Client) -> dict[str, Job]:
    """A bpmn job locked by w1, a failed bpmn job in tenant "acme-eu", a cmmn job in "other"."""
    locked = emulator.create_job("topic", element_id="taskA", element_name="Task A")
    acquire(api, worker="w1")
    failed = emulator.create_job("topic2", element_id="taskB", tenant_id="acme-eu")
    [job] = acquire(api, topic="topic2")
    api.post(f"/acquire/jobs/{job['id']}/fail", json={"workerId": "w1", "errorMessage": "bad"})
    case = emulator.create_job("topic3", scope_type="cmmn", tenant_id="other")
    return {"locked": locked, "failed": failed, "case": case}


def test_response_shape_and_defaults(mix: dict[str, Job], api: httpx.Client) -> None:
    body = api.get("/jobs").json()
    assert set(body) == {"data", "total", "start", "sort", "order", "size"}
    assert (body["total"], body["start"], body["sort"], body["order"], body["size"]) == (
        3, 0, "id", "asc", 3)
    assert [j["id"] for j in body["data"]] == sorted(j["id"] for j in body["data"])


@pytest.mark.parametrize(("params", "expected"), [
    ({"locked": "true"}, {"locked"}),
    ({"unlocked": "true"}, {"failed", "case"}),
    ({"locked": "false"}, {"locked", "failed", "case"}),
    ({"withException": "true"}, {"failed"}),
    ({"exceptionMessage": "bad"}, {"failed"}),
    ({"tenantId": "acme-eu"}, {"failed"}),
    ({"tenantIdLike": "acme%"}, {"failed"}),
    ({"tenantIdLike": "%th%"}, {"case"}),
    ({"tenantIdLike": "othe_"}, {"case"}),
    ({"withoutTenantId": "true"}, {"locked"}),
    ({"elementId": "taskA"}, {"locked"}),
    ({"elementName": "Task A"}, {"locked"}),
    ({"scopeType": "cmmn"}, {"case"}),
    ({"withoutScopeType": "true"}, {"locked", "failed"}),
    ({"withoutScopeId": "true"}, {"locked", "failed"}),
    ({"withoutProcessInstanceId": "true"}, {"case"}),
])
def test_filters(mix: dict[str, Job], api: httpx.Client, params: dict[str, str],
                 expected: set[str]) -> None:
    assert ids(api, **params) == {mix[name].id for name in expected}


def test_id_filters(mix: dict[str, Job], api: httpx.Client) -> None:
    locked, case = mix["locked"], mix["case"]
    assert ids(api, id=locked.id) == {locked.id}
    assert ids(api, processInstanceId=locked.instance_id) == {locked.id}
    assert ids(api, executionId=str(locked.execution_id)) == {locked.id}
    assert ids(api, processDefinitionId=str(locked.process_definition_id)) == {locked.id}
    assert ids(api, scopeId=case.instance_id) == {case.id}
    assert ids(api, subScopeId=str(case.sub_scope_id)) == {case.id}
    assert ids(api, scopeDefinitionId=str(case.scope_definition_id)) == {case.id}


def test_paging_keeps_an_exact_total_and_size_counts_rows(
        emulator: FlowableEmulator, api: httpx.Client) -> None:
    for _ in range(25):
        emulator.create_job("topic")
    first = api.get("/jobs").json()
    assert (first["total"], first["size"], len(first["data"])) == (25, 10, 10)
    last = api.get("/jobs", params={"start": 20, "size": 10}).json()
    assert (last["total"], last["start"], last["size"]) == (25, 20, 5)
    one = api.get("/jobs", params={"unlocked": "true", "size": 1}).json()
    assert (one["total"], one["size"]) == (25, 1)


def test_sort_and_order(emulator: FlowableEmulator, api: httpx.Client,
                        clock: ManualClock) -> None:
    created = []
    for _ in range(3):
        created.append(emulator.create_job("topic").id)
        clock.advance(1)
    body = api.get("/jobs", params={"sort": "createTime", "order": "desc"}).json()
    assert [j["id"] for j in body["data"]] == created[::-1]
    assert (body["sort"], body["order"]) == ("createTime", "desc")


@pytest.mark.parametrize("params", [{"sort": "topic"}, {"order": "up"}, {"locked": "maybe"},
                                    {"size": "ten"}])
def test_invalid_parameters_are_400(api: httpx.Client, params: dict[str, str]) -> None:
    response = api.get("/jobs", params=params)
    assert response.status_code == 400
    assert response.json()["message"] == "Bad request"


def test_get_one_job(emulator: FlowableEmulator, api: httpx.Client) -> None:
    job = emulator.create_job("topic")
    body = api.get(f"/jobs/{job.id}").json()
    assert body["id"] == job.id
    assert "variables" not in body
    missing = api.get("/jobs/missing")
    assert missing.status_code == 404
    assert missing.json() == {"message": "Not found",
                              "exception": "Could not find external worker job with id 'missing'."}


def test_unknown_path_is_404_and_wrong_method_405(api: httpx.Client) -> None:
    assert api.get("/nothing").status_code == 404
    assert api.get("/acquire/jobs").status_code == 405
