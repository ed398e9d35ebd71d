"""Fail: retries, exception message, dead letters and retry timeouts."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.emulator import FlowableEmulator, ManualClock

from .calls import acquire


def fail(api: httpx.Client, job_id: str, **body: Any) -> httpx.Response:
    return api.post(f"/acquire/jobs/{job_id}/fail", json={"workerId": "w1", **body})


def test_fail_without_retries_decrements_and_releases_the_job(
        emulator: FlowableEmulator, api: httpx.Client) -> None:
    emulator.create_job("topic")
    [job] = acquire(api)
    response = fail(api, job["id"], errorMessage="boom", errorDetails="trace")
    assert response.status_code == 204
    got = api.get(f"/jobs/{job['id']}").json()
    assert got["retries"] == 2
    assert got["exceptionMessage"] == "boom"
    assert got["lockOwner"] is None
    assert got["lockExpirationTime"] is None
    assert acquire(api, worker="w2")[0]["id"] == job["id"]


def test_fail_with_retries_sets_them(emulator: FlowableEmulator, api: httpx.Client) -> None:
    emulator.create_job("topic")
    [job] = acquire(api)
    fail(api, job["id"], retries=7)
    assert emulator.jobs()[0].retries == 7


def test_running_out_of_retries_dead_letters_the_job(
        emulator: FlowableEmulator, api: httpx.Client) -> None:
    created = emulator.create_job("topic")
    for _ in range(3):
        [job] = acquire(api)
        assert fail(api, job["id"], errorMessage="no").status_code == 204
    assert api.get("/jobs").json()["total"] == 0
    assert api.get(f"/jobs/{created.id}").status_code == 404
    assert acquire(api) == []
    [dead] = emulator.dead_letter_jobs()
    assert dead.id == created.id
    assert dead.exception_message == "no"
    assert not emulator.instance(created.instance_id).finished


def test_retries_zero_dead_letters_at_once(emulator: FlowableEmulator, api: httpx.Client) -> None:
    emulator.create_job("topic")
    [job] = acquire(api)
    fail(api, job["id"], retries=0)
    assert emulator.jobs() == []
    assert len(emulator.dead_letter_jobs()) == 1


def test_retry_timeout_keeps_the_job_locked_without_owner_until_a_reset(
        emulator: FlowableEmulator, api: httpx.Client, clock: ManualClock) -> None:
    emulator.create_job("topic")
    [job] = acquire(api)
    fail(api, job["id"], retryTimeout="PT10S")
    got = api.get(f"/jobs/{job['id']}").json()
    assert got["lockOwner"] is None
    assert got["lockExpirationTime"] == "2025-01-02T03:04:15Z"
    assert api.get("/jobs", params={"locked": "true"}).json()["total"] == 1
    assert acquire(api) == []
    clock.advance(5)
    emulator.reset_expired_locks()
    assert acquire(api) == []
    clock.advance(6)
    emulator.reset_expired_locks()
    assert len(acquire(api)) == 1


def test_fail_by_another_worker_is_403(emulator: FlowableEmulator, api: httpx.Client) -> None:
    emulator.create_job("topic")
    [job] = acquire(api)
    response = api.post(f"/acquire/jobs/{job['id']}/fail", json={"workerId": "other"})
    assert response.status_code == 403
    assert emulator.jobs()[0].retries == 3


def test_long_messages_are_abbreviated(emulator: FlowableEmulator, api: httpx.Client) -> None:
    emulator.create_job("topic")
    [job] = acquire(api)
    fail(api, job["id"], errorMessage="x" * 1000)
    message = emulator.jobs()[0].exception_message
    assert message is not None
    assert len(message) == 255
    assert message.endswith("...")
