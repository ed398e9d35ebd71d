"""Fault injection: each kind, its scope and budget, and that only respond-lost changes state."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.support.emulator import Fault, FaultKind, FlowableEmulator, ManualClock

ACQUIRE = {"topic": "topic", "lockDuration": "PT1M", "workerId": "w1"}


def test_latency_delays_then_answers_normally(emulator: FlowableEmulator,
                                              api: httpx.Client) -> None:
    emulator.create_job("topic")
    emulator.inject(Fault(FaultKind.LATENCY, endpoint="acquire", delay_seconds=0.2, times=1))
    started = time.monotonic()
    response = api.post("/acquire/jobs", json=ACQUIRE)
    assert time.monotonic() - started >= 0.2
    assert response.status_code == 200
    assert len(response.json()) == 1


def test_server_error_answers_with_the_body_and_changes_nothing(
        emulator: FlowableEmulator, api: httpx.Client) -> None:
    emulator.create_job("topic")
    emulator.inject(Fault(FaultKind.SERVER_ERROR, endpoint="acquire", status=503, body='{"x":1}',
                          times=1))
    response = api.post("/acquire/jobs", json=ACQUIRE)
    assert response.status_code == 503
    assert response.json() == {"x": 1}
    assert emulator.jobs()[0].lock_owner is None


def test_connection_reset_sends_no_answer_and_changes_nothing(
        emulator: FlowableEmulator, api: httpx.Client) -> None:
    emulator.create_job("topic")
    emulator.inject(Fault(FaultKind.CONNECTION_RESET, endpoint="acquire", times=1))
    with pytest.raises(httpx.TransportError):
        api.post("/acquire/jobs", json=ACQUIRE)
    assert emulator.jobs()[0].lock_owner is None
    [record] = emulator.requests(endpoint="acquire")
    assert record.status is None
    assert record.fault is FaultKind.CONNECTION_RESET


def test_malformed_json_is_a_200_that_does_not_parse(emulator: FlowableEmulator,
                                                     api: httpx.Client) -> None:
    emulator.inject(Fault(FaultKind.MALFORMED_JSON, endpoint="listJobs", times=1))
    response = api.get("/jobs")
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_unauthorized_fault_is_401_with_empty_body(emulator: FlowableEmulator,
                                                   api: httpx.Client) -> None:
    emulator.inject(Fault(FaultKind.UNAUTHORIZED, times=1))
    response = api.get("/jobs")
    assert response.status_code == 401
    assert response.content == b""
    assert api.get("/jobs").status_code == 200


def test_respond_lost_completes_but_the_answer_never_arrives(
        emulator: FlowableEmulator, api: httpx.Client) -> None:
    created = emulator.create_job("topic")
    [job] = api.post("/acquire/jobs", json=ACQUIRE).json()
    emulator.inject(Fault(FaultKind.RESPOND_LOST, endpoint="complete", times=1))
    with pytest.raises(httpx.TransportError):
        api.post(f"/acquire/jobs/{job['id']}/complete", json={"workerId": "w1"})
    assert emulator.instance(created.instance_id).finished
    retry = api.post(f"/acquire/jobs/{job['id']}/complete", json={"workerId": "w1"})
    assert retry.status_code == 404
    assert len(emulator.completions()) == 1


def test_times_limits_how_often_a_fault_fires(emulator: FlowableEmulator,
                                              api: httpx.Client) -> None:
    fault = emulator.inject(Fault(FaultKind.SERVER_ERROR, times=2))
    statuses = [api.get("/jobs").status_code for _ in range(4)]
    assert statuses == [500, 500, 200, 200]
    assert fault.hits == 2


def test_scope_by_endpoint_method_and_path_prefix(emulator: FlowableEmulator,
                                                  api: httpx.Client) -> None:
    emulator.inject(Fault(FaultKind.SERVER_ERROR, endpoint="complete"))
    emulator.inject(Fault(FaultKind.SERVER_ERROR, method="POST", path_prefix="/unacquire"))
    assert api.get("/jobs").status_code == 200
    assert api.post("/acquire/jobs", json=ACQUIRE).status_code == 200
    assert api.post("/acquire/jobs/x/complete", json={"workerId": "w"}).status_code == 500
    assert api.post("/unacquire/jobs", json={"workerId": "w"}).status_code == 500
    emulator.clear_faults()
    assert api.post("/unacquire/jobs", json={"workerId": "w"}).status_code == 204


def _pattern(seed: int, transport: httpx.HTTPTransport) -> list[int]:
    with FlowableEmulator(seed=seed, reset_interval_seconds=None) as emu:
        emu.inject(Fault(FaultKind.SERVER_ERROR, probability=0.5))
        client = httpx.Client(base_url=emu.api_url, transport=transport)
        return [client.get("/jobs").status_code for _ in range(16)]


def test_probability_is_repeatable_with_a_seed(transport: httpx.HTTPTransport) -> None:
    first = _pattern(7, transport)
    assert first == _pattern(7, transport)
    assert set(first) == {200, 500}


def test_request_log_counts_per_endpoint(emulator: FlowableEmulator, api: httpx.Client) -> None:
    api.get("/jobs")
    api.get("/jobs/x")
    api.post("/acquire/jobs", json=ACQUIRE)
    counts = emulator.request_counts()
    assert (counts["listJobs"], counts["getJob"], counts["acquire"]) == (1, 1, 1)
    [acquire_record] = emulator.requests(endpoint="acquire")
    assert acquire_record.body == ACQUIRE
    assert acquire_record.status == 200


def test_periodic_reset_releases_expired_locks(transport: httpx.HTTPTransport) -> None:
    with FlowableEmulator(reset_interval_seconds=0.05) as emu:
        emu.create_job("topic")
        client = httpx.Client(base_url=emu.api_url, transport=transport)
        client.post("/acquire/jobs", json={**ACQUIRE, "lockDuration": "PT0.1S"})
        deadline = time.monotonic() + 3
        while emu.jobs()[0].lock_owner is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert emu.jobs()[0].lock_owner is None


def test_stopped_emulator_refuses_connections(clock: ManualClock) -> None:
    emu = FlowableEmulator(clock=clock, reset_interval_seconds=None).start()
    url = emu.api_url
    assert httpx.get(url + "/jobs").status_code == 200
    emu.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/jobs")
