"""Unacquire: release all of a worker's locks (optionally per tenant) or one lock."""

from __future__ import annotations

import httpx

from tests.support.emulator import FlowableEmulator, ManualClock

from .calls import acquire


def test_unacquire_all_releases_only_that_workers_jobs(
        emulator: FlowableEmulator, api: httpx.Client) -> None:
    for _ in range(3):
        emulator.create_job("topic")
    acquire(api, worker="w1", n=2)
    acquire(api, worker="w2", n=1)
    assert api.post("/unacquire/jobs", json={"workerId": "w1"}).status_code == 204
    owners = sorted(str(j.lock_owner) for j in emulator.jobs())
    assert owners == ["None", "None", "w2"]


def test_unacquire_all_with_a_tenant_releases_that_tenants_jobs(
        emulator: FlowableEmulator, api: httpx.Client) -> None:
    emulator.create_job("topic", tenant_id="a")
    acquire(api)
    assert api.post("/unacquire/jobs", json={"workerId": "w1", "tenantId": "a"}).status_code == 204
    assert emulator.jobs()[0].lock_owner is None


def test_unacquire_all_with_a_tenant_refuses_a_worker_holding_other_tenants_jobs(
        emulator: FlowableEmulator, api: httpx.Client) -> None:
    emulator.create_job("topic", tenant_id="a")
    emulator.create_job("topic", tenant_id="b")
    acquire(api, n=2)
    response = api.post("/unacquire/jobs", json={"workerId": "w1", "tenantId": "a"})
    assert response.status_code == 400
    assert "different tenant" in response.json()["exception"]
    assert {j.tenant_id: j.lock_owner for j in emulator.jobs()} == {"a": "w1", "b": "w1"}


def test_unacquire_all_requires_a_worker(api: httpx.Client) -> None:
    response = api.post("/unacquire/jobs", json={})
    assert response.status_code == 400
    assert response.json() == {"message": "Bad request", "exception": "worker id is required"}


def test_unacquire_one_makes_a_non_exclusive_job_acquirable_again(
        emulator: FlowableEmulator, api: httpx.Client) -> None:
    emulator.create_job("topic", exclusive=False)
    [job] = acquire(api)
    assert api.post(f"/unacquire/jobs/{job['id']}", json={"workerId": "w1"}).status_code == 204
    assert acquire(api, worker="w2")[0]["id"] == job["id"]


def test_an_unacquired_exclusive_job_is_blocked_until_its_first_lock_would_expire(
        emulator: FlowableEmulator, clock: ManualClock, api: httpx.Client) -> None:
    emulator.create_job("topic")
    emulator.create_job("topic")
    [job] = acquire(api, lock="PT10S")
    api.post(f"/unacquire/jobs/{job['id']}", json={"workerId": "w1"})
    assert acquire(api, worker="w2", n=5) == []  # the blocked job empties the whole batch
    clock.advance(11)
    assert len(acquire(api, worker="w2", n=5)) == 2


def test_unacquire_one_by_a_non_owner_is_403(
        emulator: FlowableEmulator, api: httpx.Client) -> None:
    emulator.create_job("topic")
    [job] = acquire(api)
    response = api.post(f"/unacquire/jobs/{job['id']}", json={"workerId": "w2"})
    assert response.status_code == 403
    assert response.json()["exception"] == "w2 does not hold a lock on the requested job"
    assert emulator.jobs()[0].lock_owner == "w1"


def test_unacquire_one_missing_is_404(api: httpx.Client) -> None:
    response = api.post("/unacquire/jobs/nope", json={"workerId": "w1"})
    assert response.status_code == 404
    assert response.json()["exception"] == "Could not find external worker job with id 'nope'."
