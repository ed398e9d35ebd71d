"""Unacquire: release all of a worker's locks (optionally per tenant) or one lock."""

from __future__ import annotations

import httpx

from tests.support.emulator import FlowableEmulator

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


def test_unacquire_all_with_tenant_releases_that_tenant_only(
        emulator: FlowableEmulator, api: httpx.Client) -> None:
    emulator.create_job("topic", tenant_id="a")
    emulator.create_job("topic", tenant_id="b")
    acquire(api, n=2)
    api.post("/unacquire/jobs", json={"workerId": "w1", "tenantId": "a"})
    assert {j.tenant_id: j.lock_owner for j in emulator.jobs()} == {"a": None, "b": "w1"}


def test_unacquire_all_requires_a_worker(api: httpx.Client) -> None:
    response = api.post("/unacquire/jobs", json={})
    assert response.status_code == 400
    assert response.json() == {"message": "Bad request", "exception": "worker id is required"}


def test_unacquire_one_makes_it_acquirable_again(
        emulator: FlowableEmulator, api: httpx.Client) -> None:
    emulator.create_job("topic")
    [job] = acquire(api)
    assert api.post(f"/unacquire/jobs/{job['id']}", json={"workerId": "w1"}).status_code == 204
    assert acquire(api, worker="w2")[0]["id"] == job["id"]


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
