"""Complete, bpmnError and cmmnTerminate: owner checks, scope checks, what the instance gets."""

from __future__ import annotations

import httpx
import pytest

from tests.support.emulator import FlowableEmulator, ManualClock

from .calls import acquire


def test_complete_by_the_owner_finishes_the_instance_and_merges_variables(
        emulator: FlowableEmulator, api: httpx.Client) -> None:
    created = emulator.create_job("topic", variables=[
        {"name": "a", "type": "integer", "value": 1},
        {"name": "b", "type": "string", "value": "x"}])
    [job] = acquire(api)
    response = api.post(f"/acquire/jobs/{job['id']}/complete", json={
        "workerId": "w1", "variables": [{"name": "b", "type": "string", "value": "y"},
                                        {"name": "c", "type": "boolean", "value": True}]})
    assert response.status_code == 204
    assert response.content == b""
    instance = emulator.instance(created.instance_id)
    assert instance.finished
    assert instance.outcome == "complete"
    assert list(instance.variables.values()) == [
        {"name": "a", "type": "integer", "value": 1}, {"name": "b", "type": "string", "value": "y"},
        {"name": "c", "type": "boolean", "value": True}]
    [completion] = emulator.completions(instance_id=created.instance_id)
    assert completion.worker_id == "w1"
    assert completion.outcome == "complete"
    assert completion.variables == ({"name": "b", "type": "string", "value": "y"},
                                    {"name": "c", "type": "boolean", "value": True})
    assert emulator.jobs() == []


def test_completing_twice_is_404_and_records_one_completion(
        emulator: FlowableEmulator, api: httpx.Client) -> None:
    emulator.create_job("topic")
    [job] = acquire(api)
    assert api.post(f"/acquire/jobs/{job['id']}/complete", json={"workerId": "w1"}).status_code \
        == 204
    again = api.post(f"/acquire/jobs/{job['id']}/complete", json={"workerId": "w1"})
    assert again.status_code == 404
    assert again.json() == {"message": "Not found", "exception":
                            f"Could not find external worker job with id '{job['id']}'."}
    assert len(emulator.completions()) == 1


def test_another_worker_gets_403(emulator: FlowableEmulator, api: httpx.Client) -> None:
    emulator.create_job("topic")
    [job] = acquire(api, worker="w1")
    response = api.post(f"/acquire/jobs/{job['id']}/complete", json={"workerId": "w2"})
    assert response.status_code == 403
    assert response.json() == {"message": "Forbidden",
                               "exception": "w2 does not hold a lock on the requested job"}
    assert emulator.completions() == []


def test_an_unlocked_job_cannot_be_completed(emulator: FlowableEmulator, api: httpx.Client) -> None:
    job = emulator.create_job("topic")
    assert api.post(f"/acquire/jobs/{job.id}/complete", json={"workerId": "w1"}).status_code \
        == 403


def test_missing_worker_id_is_400(emulator: FlowableEmulator, api: httpx.Client) -> None:
    job = emulator.create_job("topic")
    response = api.post(f"/acquire/jobs/{job.id}/complete", json={})
    assert response.status_code == 400
    assert response.json() == {"message": "Bad request", "exception": "workerId is required"}


def test_an_expired_lock_is_completable_until_a_reset_then_403(
        emulator: FlowableEmulator, api: httpx.Client, clock: ManualClock) -> None:
    emulator.create_job("topic")
    emulator.create_job("topic")
    first, second = acquire(api, n=2, lock="PT1S")
    clock.advance(10)
    assert api.post(f"/acquire/jobs/{first['id']}/complete", json={"workerId": "w1"}) \
        .status_code == 204
    assert emulator.reset_expired_locks() == 1
    assert api.post(f"/acquire/jobs/{second['id']}/complete", json={"workerId": "w1"}) \
        .status_code == 403


def test_unsupported_variable_type_is_400_and_changes_nothing(
        emulator: FlowableEmulator, api: httpx.Client) -> None:
    emulator.create_job("topic")
    [job] = acquire(api)
    response = api.post(f"/acquire/jobs/{job['id']}/complete", json={
        "workerId": "w1", "variables": [{"name": "x", "type": "serializable", "value": "?"}]})
    assert response.status_code == 400
    assert response.json()["exception"] == "Variable 'x' has unsupported type: 'serializable'."
    assert len(emulator.jobs()) == 1
    assert emulator.completions() == []


def test_untyped_variables_get_the_type_jackson_gives_them(
        emulator: FlowableEmulator, api: httpx.Client) -> None:
    created = emulator.create_job("topic")
    [job] = acquire(api)
    api.post(f"/acquire/jobs/{job['id']}/complete", json={"workerId": "w1", "variables": [
        {"name": "i", "value": 1}, {"name": "l", "value": 2**40}, {"name": "d", "value": 1.5},
        {"name": "s", "value": "x"}, {"name": "b", "value": False}]})
    types = {v["name"]: v["type"] for v in emulator.instance(created.instance_id)
             .variables.values()}
    assert types == {"i": "integer", "l": "long", "d": "double", "s": "string", "b": "boolean"}


def test_bpmn_error_records_the_error_code(emulator: FlowableEmulator, api: httpx.Client) -> None:
    created = emulator.create_job("topic")
    [job] = acquire(api)
    response = api.post(f"/acquire/jobs/{job['id']}/bpmnError",
                        json={"workerId": "w1", "errorCode": "E42"})
    assert response.status_code == 204
    [completion] = emulator.completions()
    assert completion.outcome == "bpmnError"
    assert completion.error_code == "E42"
    assert emulator.instance(created.instance_id).finished


def test_cmmn_terminate_finishes_a_case(emulator: FlowableEmulator, api: httpx.Client) -> None:
    created = emulator.create_job("topic", scope_type="cmmn")
    [job] = acquire(api)
    assert api.post(f"/acquire/jobs/{job['id']}/cmmnTerminate", json={"workerId": "w1"}) \
        .status_code == 204
    assert emulator.instance(created.instance_id).outcome == "cmmnTerminate"


@pytest.mark.parametrize(("scope_type", "action"),
                         [("cmmn", "bpmnError"), ("bpmn", "cmmnTerminate")])
def test_wrong_scope_for_the_action_is_400_and_keeps_the_job(
        emulator: FlowableEmulator, api: httpx.Client, scope_type: str, action: str) -> None:
    emulator.create_job("topic", scope_type="cmmn" if scope_type == "cmmn" else "bpmn")
    [job] = acquire(api)
    response = api.post(f"/acquire/jobs/{job['id']}/{action}", json={"workerId": "w1"})
    assert response.status_code == 400
    assert f"Job with id '{job['id']}'" in response.json()["exception"]
    assert len(emulator.jobs()) == 1


def test_a_cmmn_job_can_be_completed(emulator: FlowableEmulator, api: httpx.Client) -> None:
    emulator.create_job("topic", scope_type="cmmn")
    [job] = acquire(api)
    assert api.post(f"/acquire/jobs/{job['id']}/complete", json={"workerId": "w1"}) \
        .status_code == 204
