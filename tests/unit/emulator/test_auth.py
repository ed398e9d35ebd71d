"""Optional authentication: Basic (or Bearer) credentials, 401 with an empty body otherwise."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.emulator import FlowableEmulator


@pytest.fixture
def secured() -> Iterator[FlowableEmulator]:
    with FlowableEmulator(context_path="/flowable-rest", username="rest-admin", password="test",
                          token="t0k", reset_interval_seconds=None) as emu:
        yield emu


@pytest.mark.parametrize("auth", [None, ("rest-admin", "wrong"), ("nobody", "test")])
def test_missing_or_wrong_credentials_get_401_with_empty_body(
        secured: FlowableEmulator, transport: httpx.HTTPTransport,
        auth: tuple[str, str] | None) -> None:
    client = httpx.Client(transport=transport, auth=auth)
    response = client.get(secured.api_url + "/jobs")
    assert response.status_code == 401
    assert response.content == b""
    assert secured.request_counts()["listJobs"] == 1


def test_right_credentials_pass(secured: FlowableEmulator,
                                transport: httpx.HTTPTransport) -> None:
    assert secured.base_url.endswith("/flowable-rest")
    basic = httpx.Client(transport=transport, auth=("rest-admin", "test"))
    assert basic.get(secured.api_url + "/jobs").status_code == 200
    bearer = httpx.Client(transport=transport, headers={"Authorization": "Bearer t0k"})
    assert bearer.get(secured.api_url + "/jobs").status_code == 200


def test_unauthorized_requests_change_nothing(secured: FlowableEmulator,
                                              transport: httpx.HTTPTransport) -> None:
    secured.create_job("topic")
    client = httpx.Client(transport=transport)
    response = client.post(secured.api_url + "/acquire/jobs",
                           json={"topic": "topic", "lockDuration": "PT1M", "workerId": "w"})
    assert response.status_code == 401
    assert secured.jobs()[0].lock_owner is None
