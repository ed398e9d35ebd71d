"""Where requests go, who they say they are, and how long they may take."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import trustme

from flowable_worker import (
    ClientSettings,
    FlowableClient,
    FlowableTimeoutError,
    FlowableTransportError,
)
from tests.unit.client.conftest import ScriptedFlowable, page_json

EMPTY_PAGE = httpx.Response(200, json=page_json())


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"base_url": "http://localhost:8080"}, "http://localhost:8080/external-job-api/jobs"),
        (
            {"base_url": "http://host/flowable-rest"},
            "http://host/flowable-rest/external-job-api/jobs",
        ),
        ({"base_url": "https://host/work/"}, "https://host/work/external-job-api/jobs"),
        (
            {"base_url": "https://host/work", "external_job_api_path": "custom-api/"},
            "https://host/work/custom-api/jobs",
        ),
    ],
    ids=["spring-boot-app", "flowable-rest-app", "flowable-work", "custom-api-path"],
)
async def test_base_url_and_api_path_join_for_each_deployment_style(
    settings: dict[str, str], expected: str
) -> None:
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url).split("?")[0])
        return httpx.Response(200, json=page_json())

    async with FlowableClient(
        ClientSettings(**settings), transport=httpx.MockTransport(handle)
    ) as client:
        await client.list_jobs()

    assert seen == [expected]


async def test_username_and_password_are_sent_as_basic_auth(
    make_client: Callable[..., FlowableClient], flowable: ScriptedFlowable
) -> None:
    flowable.answer(EMPTY_PAGE)

    async with make_client(username="rest-admin", password="test") as client:
        await client.list_jobs()

    assert flowable.last.headers["authorization"] == "Basic cmVzdC1hZG1pbjp0ZXN0"


async def test_a_token_is_sent_as_bearer_auth(
    make_client: Callable[..., FlowableClient], flowable: ScriptedFlowable
) -> None:
    flowable.answer(EMPTY_PAGE)

    async with make_client(token="s3cret") as client:
        await client.list_jobs()

    assert flowable.last.headers["authorization"] == "Bearer s3cret"


async def test_without_credentials_no_authorization_header_is_sent(
    client: FlowableClient, flowable: ScriptedFlowable
) -> None:
    flowable.answer(EMPTY_PAGE)

    await client.list_jobs()

    assert "authorization" not in flowable.last.headers


async def test_every_request_carries_the_configured_timeouts(
    make_client: Callable[..., FlowableClient], flowable: ScriptedFlowable
) -> None:
    flowable.answer(EMPTY_PAGE, httpx.Response(204))

    async with make_client(timeout_seconds=7, connect_timeout_seconds=2) as client:
        await client.list_jobs()
        await client.complete_job("job-1", worker_id="w")

    for request in flowable.requests:
        assert request.extensions["timeout"] == {
            "connect": 2,
            "read": 7,
            "write": 7,
            "pool": 7,
        }


async def test_a_server_slower_than_the_timeout_raises_a_timeout_error() -> None:
    """Real sockets: a local server that accepts but never answers."""

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)
        writer.close()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = ClientSettings(
        base_url=f"http://127.0.0.1:{port}", timeout_seconds=0.2, read_retries=0
    )
    try:
        async with FlowableClient(settings) as client:
            with pytest.raises(FlowableTimeoutError):
                await client.list_jobs()
    finally:
        server.close()


async def test_a_ca_bundle_lets_the_client_trust_a_private_ca(tmp_path: Path) -> None:
    """Real TLS: a local HTTPS server with a certificate from a throwaway CA."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    body = b'{"data": [], "total": 3, "start": 0, "size": 0}'

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    try:
        settings = ClientSettings(base_url=f"https://127.0.0.1:{port}", ca_bundle=str(bundle))
        async with FlowableClient(settings) as client:
            assert await client.count_jobs() == 3
    finally:
        server.close()


async def test_without_the_ca_bundle_a_private_certificate_is_refused() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    try:
        settings = ClientSettings(base_url=f"https://127.0.0.1:{port}", read_retries=0)
        async with FlowableClient(settings) as client:
            with pytest.raises(FlowableTransportError):
                await client.count_jobs()
    finally:
        server.close()
