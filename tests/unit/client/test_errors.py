"""Flowable's error answers and httpx failures become the client's one error hierarchy."""

from __future__ import annotations

import httpx
import pytest

from flowable_worker import (
    BadRequestError,
    FlowableClient,
    FlowableError,
    FlowableHTTPError,
    FlowableTimeoutError,
    FlowableTransportError,
    ForbiddenError,
    InvalidResponseError,
    JobNotFoundError,
    LockNotHeldError,
    ServerError,
    UnauthorizedError,
)
from tests.unit.client.conftest import ScriptedFlowable, job_json

LOCK_LOST = {"message": "Forbidden", "exception": "w1 does not hold a lock on the requested job"}


async def _complete(client: FlowableClient) -> None:
    await client.complete_job("job-1", worker_id="w1")


async def test_400_is_a_bad_request_carrying_flowables_message_and_exception(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    body = {"message": "Bad request", "exception": "workerId is required"}
    flowable.answer(httpx.Response(400, json=body))

    with pytest.raises(BadRequestError) as caught:
        await _complete(client)

    assert caught.value.status == 400
    assert caught.value.message == "Bad request"
    assert caught.value.exception == "workerId is required"
    assert "workerId is required" in str(caught.value)


async def test_401_with_an_empty_body_is_unauthorized(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    flowable.answer(httpx.Response(401))

    with pytest.raises(UnauthorizedError) as caught:
        await _complete(client)

    assert (caught.value.status, caught.value.message, caught.value.body) == (401, None, "")


async def test_403_saying_the_lock_is_not_held_is_lock_not_held(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    flowable.answer(httpx.Response(403, json=LOCK_LOST))

    with pytest.raises(LockNotHeldError) as caught:
        await _complete(client)

    assert caught.value.exception == LOCK_LOST["exception"]


async def test_lock_not_held_is_also_a_forbidden_error(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    flowable.answer(httpx.Response(403, json=LOCK_LOST))

    with pytest.raises(ForbiddenError):
        await _complete(client)


async def test_other_403_is_a_plain_forbidden_error(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    flowable.answer(httpx.Response(403, json={"message": "Forbidden", "exception": "no access"}))

    with pytest.raises(ForbiddenError) as caught:
        await _complete(client)

    assert not isinstance(caught.value, LockNotHeldError)


async def test_404_is_job_not_found(client: FlowableClient, flowable: ScriptedFlowable) -> None:
    body = {"message": "Not found", "exception": "Could not find external worker job with id 'x'."}
    flowable.answer(httpx.Response(404, json=body))

    with pytest.raises(JobNotFoundError) as caught:
        await _complete(client)

    assert caught.value.status == 404


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_is_a_server_error(
    client: FlowableClient, flowable: ScriptedFlowable, status: int
) -> None:
    flowable.answer(httpx.Response(status, json={"message": "Internal server error"}))

    with pytest.raises(ServerError) as caught:
        await _complete(client)

    assert caught.value.status == status


async def test_an_unlisted_status_is_a_plain_http_error(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    flowable.answer(httpx.Response(409, json={"message": "Conflict"}))

    with pytest.raises(FlowableHTTPError) as caught:
        await _complete(client)

    assert type(caught.value) is FlowableHTTPError
    assert caught.value.status == 409


async def test_a_redirect_is_an_http_error_not_followed(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    flowable.answer(httpx.Response(302, headers={"Location": "http://login.test/"}))

    with pytest.raises(FlowableHTTPError) as caught:
        await _complete(client)

    assert caught.value.status == 302
    assert len(flowable.requests) == 1


async def test_a_non_json_error_body_is_kept_as_text(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    flowable.answer(httpx.Response(502, text="<html>Bad Gateway</html>"))

    with pytest.raises(ServerError) as caught:
        await client.unacquire_jobs(worker_id="w1")

    assert caught.value.message is None
    assert caught.value.exception is None
    assert caught.value.body == "<html>Bad Gateway</html>"


async def test_a_json_error_body_of_another_shape_is_tolerated(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    flowable.answer(httpx.Response(400, json=["unexpected"]))

    with pytest.raises(BadRequestError) as caught:
        await _complete(client)

    assert (caught.value.message, caught.value.exception) == (None, None)


async def test_http_errors_name_the_request(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    flowable.answer(httpx.Response(404))

    with pytest.raises(JobNotFoundError) as caught:
        await _complete(client)

    assert caught.value.method == "POST"
    assert caught.value.url.endswith("/acquire/jobs/job-1/complete")


async def test_a_timeout_is_a_flowable_timeout_error(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    flowable.answer(httpx.ReadTimeout("read timed out"))

    with pytest.raises(FlowableTimeoutError):
        await _complete(client)


async def test_a_timeout_is_also_a_transport_error(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    flowable.answer(httpx.ConnectTimeout("connect timed out"))

    with pytest.raises(FlowableTransportError):
        await _complete(client)


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("connection refused"),
        httpx.ReadError("connection reset"),
        httpx.RemoteProtocolError("server disconnected"),
    ],
)
async def test_connection_failures_are_transport_errors_not_timeouts(
    client: FlowableClient, flowable: ScriptedFlowable, failure: Exception
) -> None:
    flowable.answer(failure)

    with pytest.raises(FlowableTransportError) as caught:
        await _complete(client)

    assert not isinstance(caught.value, FlowableTimeoutError)
    assert caught.value.__cause__ is failure


async def test_a_2xx_answer_that_is_not_json_is_an_invalid_response(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    flowable.answer(httpx.Response(200, text="<html>login</html>"))

    with pytest.raises(InvalidResponseError):
        await client.acquire_jobs(topic="t", worker_id="w", lock_duration="PT1M")


async def test_a_2xx_answer_of_the_wrong_shape_is_an_invalid_response(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    flowable.answer(httpx.Response(200, json={"data": "not a list"}))

    with pytest.raises(InvalidResponseError):
        await client.acquire_jobs(topic="t", worker_id="w", lock_duration="PT1M")


async def test_a_job_without_an_id_is_an_invalid_response(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    flowable.answer(httpx.Response(200, json=job_json(id=None)))

    with pytest.raises(InvalidResponseError):
        await client.get_job("job-1")


async def test_a_page_without_a_total_is_an_invalid_response(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    flowable.answer(httpx.Response(200, json={"data": []}))

    with pytest.raises(InvalidResponseError):
        await client.count_jobs(unlocked=True)


async def test_an_unparseable_date_is_an_invalid_response(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    flowable.answer(httpx.Response(200, json=job_json(createTime="yesterday")))

    with pytest.raises(InvalidResponseError):
        await client.get_job("job-1")


@pytest.mark.parametrize(
    "answer",
    [httpx.Response(400), httpx.ConnectError("refused"), httpx.Response(200, text="?")],
    ids=["http-error", "transport-error", "invalid-response"],
)
async def test_every_client_error_is_a_flowable_error(
    client: FlowableClient, flowable: ScriptedFlowable, answer: httpx.Response | Exception
) -> None:
    flowable.answer(answer)

    with pytest.raises(FlowableError):
        await client.acquire_jobs(topic="t", worker_id="w", lock_duration="PT1M")
