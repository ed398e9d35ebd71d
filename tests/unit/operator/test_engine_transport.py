"""The operator's engine transport against a real HTTP server on loopback: keep-alive, the three
ways a body ends, answers streamed so that `responses.BoundedTransport` refuses a huge one without
reading it, connections never reused half-read or after the server closed them, and failures as
httpx's exceptions (which the Flowable client maps)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import trustme

from flowable_worker import ClientSettings, FlowableClient, FlowableTransportError
from flowable_worker_operator import engines
from flowable_worker_operator.backlog import BacklogProber, Selector
from flowable_worker_operator.engine_transport import (
    IDLE_EXPIRY_SECONDS,
    StreamingTransport,
    engine_transport,
)
from flowable_worker_operator.engines import Engine, resolve_engine
from flowable_worker_operator.responses import BoundedTransport, ResponseRefused, bounded_transport
from flowable_worker_operator.spec import EngineSpec
from tests.support.emulator import FlowableEmulator
from tests.unit.operator.test_engine_mtls import Secrets, _spec, _tls_secret

Answer = Callable[[bytes, asyncio.StreamWriter], Awaitable[bool]]
"""Writes the answer to one request head; False closes the connection afterwards."""


@dataclass
class Server:
    """A loopback HTTP/1.1 server answering each request with `answer`; counts connections."""

    answer: Answer
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    port: int = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.requests.append(head)
                keep = await self.answer(head, writer)
                await writer.drain()
                if not keep:
                    break
        writer.close()


@contextlib.asynccontextmanager
async def serving(answer: Answer) -> AsyncIterator[Server]:
    server = Server(answer)
    listening = await asyncio.start_server(server._serve, "127.0.0.1", 0)
    server.port = listening.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listening.close()


def ok(body: bytes = b'{"total": 3}', *extra: bytes) -> Answer:
    async def answer(_head: bytes, writer: asyncio.StreamWriter) -> bool:
        headers = b"".join(h + b"\r\n" for h in extra)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n" % (len(body), headers))
        writer.write(body)
        return b"Connection: close" not in extra

    return answer


async def get(
    transport: httpx.AsyncBaseTransport, port: int, path: str = "/jobs"
) -> httpx.Response:
    """One GET through `transport`, which stays open (a client closes its transport)."""
    request = httpx.Request("GET", f"http://127.0.0.1:{port}{path}")
    request.extensions["timeout"] = httpx.Timeout(2.0).as_dict()
    response = await transport.handle_async_request(request)
    try:
        await response.aread()
    finally:
        await response.aclose()
    return response


async def test_requests_share_one_kept_alive_connection() -> None:
    async with serving(ok()) as server:
        transport = StreamingTransport(max_connections=4)
        async with httpx.AsyncClient(
            transport=transport, base_url=f"http://127.0.0.1:{server.port}"
        ) as http:
            answers = [await http.get(f"/jobs?start={i}") for i in range(5)]
        assert [a.json() for a in answers] == [{"total": 3}] * 5
        assert server.connections == 1
        assert server.requests[2].startswith(b"GET /jobs?start=2 HTTP/1.1\r\n")


async def test_a_connection_the_server_closes_is_not_reused() -> None:
    async with serving(ok(b"{}", b"Connection: close")) as server:
        transport = StreamingTransport(max_connections=4)
        for _ in range(3):
            assert (await get(transport, server.port)).json() == {}
        assert server.connections == 3


async def test_a_connection_idle_past_the_expiry_is_not_reused() -> None:
    now = [0.0]
    async with serving(ok()) as server:
        transport = StreamingTransport(max_connections=4, clock=lambda: now[0])
        await get(transport, server.port)
        now[0] += IDLE_EXPIRY_SECONDS + 1
        await get(transport, server.port)
        assert server.connections == 2


async def test_chunked_and_until_close_bodies_are_read_whole() -> None:
    async def chunked(_head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(b'4\r\n{"to\r\n7;ext=1\r\ntal": 9\r\n1\r\n}\r\n0\r\n\r\n')
        return True

    async def until_close(_head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b'HTTP/1.0 200 OK\r\n\r\n{"total": 2}')
        return False

    async with serving(chunked) as server:
        transport = StreamingTransport(max_connections=1)
        assert (await get(transport, server.port)).json() == {"total": 9}
        assert (await get(transport, server.port)).json() == {"total": 9}
        assert server.connections == 1
    async with serving(until_close) as server:
        transport = StreamingTransport(max_connections=1)
        assert (await get(transport, server.port)).json() == {"total": 2}
        assert (await get(transport, server.port)).json() == {"total": 2}
        assert server.connections == 2


async def test_an_endless_answer_is_refused_at_the_limit_and_its_connection_dropped() -> None:
    sent = [0]

    async def endless(head: bytes, writer: asyncio.StreamWriter) -> bool:
        if b"small" in head:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            return True
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            for _ in range(10_000):
                writer.write(b"10000\r\n" + b"x" * 0x10000 + b"\r\n")
                sent[0] += 0x10000
                await writer.drain()
        return False

    async with serving(endless) as server:
        limit = 256 * 1024
        transport = BoundedTransport(StreamingTransport(max_connections=1), limit=limit)
        with pytest.raises(ResponseRefused):
            await get(transport, server.port, "/big")
        # The one slot is free again, and the next request gets a fresh connection.
        assert (await get(transport, server.port, "/small")).json() == {}
        assert server.connections == 2
        assert sent[0] < 100 * 0x10000  # the server was stopped long before its 10,000 chunks


async def test_an_announced_huge_answer_is_refused_before_its_body_is_read() -> None:
    async def huge(_head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\nxx")
        await asyncio.sleep(30)  # a reader waiting for the body would hang here
        return False

    async with serving(huge) as server:
        transport = BoundedTransport(StreamingTransport(max_connections=1))
        with pytest.raises(ResponseRefused):
            await asyncio.wait_for(get(transport, server.port), timeout=5)


async def test_failures_are_httpx_exceptions() -> None:
    async def silent(_head: bytes, _writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(30)
        return False

    async def garbage(_head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"SMTP ready\r\n\r\n")
        return False

    async def cut(_head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"tot')
        return False

    transport = StreamingTransport(max_connections=2)
    async with serving(silent) as server:
        request = httpx.Request("GET", f"http://127.0.0.1:{server.port}/")
        request.extensions["timeout"] = httpx.Timeout(0.2).as_dict()
        with pytest.raises(httpx.ReadTimeout):
            await transport.handle_async_request(request)
    for answer in (garbage, cut):
        async with serving(answer) as server:
            with pytest.raises(httpx.RemoteProtocolError):
                await get(transport, server.port)
    async with serving(ok()) as server:
        port = server.port
    with pytest.raises(httpx.ConnectError):
        await get(transport, port)  # nobody listens there any more


async def test_a_header_with_a_newline_is_refused_before_anything_is_sent() -> None:
    async with serving(ok()) as server:
        transport = StreamingTransport(max_connections=1)
        async with httpx.AsyncClient(transport=transport) as http:
            with pytest.raises(httpx.LocalProtocolError, match="Authorization"):
                await http.get(
                    f"http://127.0.0.1:{server.port}/",
                    headers={"Authorization": "Bearer abc\nX-Injected: 1"},
                )
        assert server.requests == []


async def test_the_flowable_client_counts_through_it() -> None:
    async def jobs(head: bytes, writer: asyncio.StreamWriter) -> bool:
        total = 5 if b"unlocked=true" in head else 2
        return await ok(b'{"data": [], "total": %d, "start": 0, "size": 1}' % total)(head, writer)

    async with serving(jobs) as server:
        engine = Engine(client=ClientSettings(base_url=f"http://127.0.0.1:{server.port}"))
        prober = BacklogProber(max_age=0)
        try:
            result = await prober.backlog(engine, "t", [Selector("check", "p:1:1")])
        finally:
            await prober.aclose()
        assert (result.backlog.unlocked, result.backlog.locked) == (5, 2)
        assert server.connections <= 2
        settings = ClientSettings(base_url=f"http://127.0.0.1:{server.port}")
        transport = engine_transport(settings)
        assert transport is not None
        async with FlowableClient(settings, transport=transport) as client:
            assert await client.count_jobs(element_id="check", unlocked=True) == 5


def test_a_proxy_in_the_environment_leaves_the_engine_to_httpx(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = ClientSettings(base_url="http://flowable.example:8080")
    assert isinstance(engine_transport(settings), StreamingTransport)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    assert engine_transport(settings) is None
    monkeypatch.setenv("NO_PROXY", "flowable.example")
    assert isinstance(engine_transport(settings), StreamingTransport)


# --- TLS: the cases of test_engine_mtls.py (a private CA, an emulator asking for a client
# certificate), through this transport.


@pytest.fixture
def ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> trustme.CA:
    monkeypatch.setattr(engines, "_CLIENT_CERT_DIR", tmp_path / "client-certs")
    monkeypatch.setattr(engines, "_CA_DIR", tmp_path / "ca")
    return trustme.CA()


@pytest.fixture
def mtls_emulator(ca: trustme.CA) -> Iterator[FlowableEmulator]:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    ca.configure_trust(server)
    server.verify_mode = ssl.CERT_REQUIRED
    with FlowableEmulator(reset_interval_seconds=None, tls=server) as emulated:
        emulated.create_job("probe")
        yield emulated


async def test_over_tls_the_probe_shows_the_client_certificate(
    ca: trustme.CA, mtls_emulator: FlowableEmulator
) -> None:
    engine = resolve_engine(
        Secrets({"mtls": _tls_secret(ca)}), "billing", _spec(url=mtls_emulator.base_url)
    )
    prober = BacklogProber(max_age=0)
    try:
        result = await prober.backlog(engine, "probe", [Selector("probe", "p:1:1")])
    finally:
        await prober.aclose()
    assert result.backlog.unlocked + result.backlog.locked >= 0
    settings = engine.client
    transport = engine_transport(settings)
    assert isinstance(transport, StreamingTransport)
    async with FlowableClient(settings, transport=bounded_transport(settings, transport)) as client:
        assert await client.count_jobs() == 1


async def test_over_tls_without_the_certificate_the_probe_fails_as_a_transport_error(
    ca: trustme.CA, mtls_emulator: FlowableEmulator
) -> None:
    spec = EngineSpec.model_validate(
        {"url": mtls_emulator.base_url, "tls": {"caSecretRef": {"name": "mtls"}}}
    )
    settings = resolve_engine(Secrets({"mtls": _tls_secret(ca)}), "billing", spec).client
    settings = settings.model_copy(update={"read_retries": 0})
    transport = bounded_transport(settings, engine_transport(settings))
    async with FlowableClient(settings, transport=transport) as client:
        with pytest.raises(FlowableTransportError):
            await client.count_jobs()
    transport = bounded_transport(settings, engine_transport(settings))
    async with httpx.AsyncClient(transport=transport) as http:
        with pytest.raises(httpx.TransportError):
            await http.get(mtls_emulator.base_url + "/process-api/repository/process-definitions")


async def test_over_tls_an_unknown_server_certificate_is_refused(
    mtls_emulator: FlowableEmulator,
) -> None:
    settings = ClientSettings(base_url=mtls_emulator.base_url, read_retries=0)  # system trust
    transport = bounded_transport(settings, engine_transport(settings))
    async with FlowableClient(settings, transport=transport) as client:
        with pytest.raises(FlowableTransportError):
            await client.count_jobs()
