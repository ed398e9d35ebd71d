"""The lean HTTP/1.1 transport: framing, keep-alive, closed connections, timeouts, bad answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from flowable_worker.transport import LeanTransport

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Serve = Callable[[Handler], Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> str:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


def _client(base_url: str, **timeouts: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        transport=LeanTransport(max_connections=4),
        timeout=httpx.Timeout(timeouts.get("read", 5.0)),
    )


async def test_content_length_answers_reuse_one_connection(serve: Serve) -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                request = await _read_request(reader)
            except asyncio.IncompleteReadError:
                return
            body = b'{"echo": %d}' % len(request)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()

    url = await serve(handler)
    async with _client(url) as client:
        for _ in range(3):
            response = await client.post("/x", json={"a": 1})
            assert response.status_code == 200
            assert "echo" in response.json()
    assert connections == 1


async def test_chunked_answers_and_204(serve: Serve) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await _read_request(reader)
        if b"/chunked" in request:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"5\r\n[1,2,\r\n2\r\n3]\r\n0\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()
        await _read_request(reader)  # keep-alive: the next request on the same connection
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()

    url = await serve(handler)
    async with _client(url) as client:
        assert (await client.get("/chunked")).json() == [1, 2, 3]
        assert (await client.post("/again")).status_code == 204


async def test_a_connection_closed_by_the_server_is_not_reused(serve: Serve) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()  # idle keep-alive connection dropped by the server

    url = await serve(handler)
    async with _client(url) as client:
        assert (await client.get("/1")).text == "ok"
        await asyncio.sleep(0.05)
        assert (await client.get("/2")).text == "ok"


async def test_a_reset_before_the_answer_is_a_protocol_error(serve: Serve) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.close()

    url = await serve(handler)
    async with _client(url) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post("/x", json={})


async def test_a_slow_answer_is_a_read_timeout(serve: Serve) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(2)

    url = await serve(handler)
    async with _client(url, read=0.2) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get("/slow")


async def test_garbage_is_a_protocol_error(serve: Serve) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()

    url = await serve(handler)
    async with _client(url) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get("/x")


async def test_connection_refused_is_a_connect_error() -> None:
    async with _client("http://127.0.0.1:9") as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/x")
