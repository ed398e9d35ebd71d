"""A proxy in the environment is honoured (issue 8): the lean transport would silently go around it.

The worker picks httpx's transport when HTTP(S)_PROXY/ALL_PROXY applies to the Flowable URL, keeps
the lean one when NO_PROXY exempts the Flowable host, and says which one runs in its start-up log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from flowable_worker.job import Job
from flowable_worker.runtime import Worker
from flowable_worker.transport import choose_transport, proxy_variable_for
from tests.support.emulator import FlowableEmulator
from tests.support.worker_harness import worker_settings

from .conftest import eventually, serving, settings_for

_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def _no_proxy_from_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.mark.parametrize(
    ("url", "environ", "expected"),
    [
        ("http://flowable:8080", {}, None),
        ("http://flowable:8080", {"HTTP_PROXY": "http://p:3128"}, "HTTP_PROXY"),
        ("http://flowable:8080", {"HTTPS_PROXY": "http://p:3128"}, None),
        ("https://flowable", {"https_proxy": "http://p", "HTTPS_PROXY": "http://q"}, "https_proxy"),
        ("https://flowable", {"ALL_PROXY": "http://p:3128"}, "ALL_PROXY"),
        ("http://flowable:8080", {"HTTP_PROXY": "http://p", "NO_PROXY": "flowable"}, None),
        ("http://f.ns.svc:8080", {"HTTP_PROXY": "http://p", "NO_PROXY": "localhost,.svc"}, None),
        ("http://f.ns.svc:8080", {"HTTP_PROXY": "http://p", "no_proxy": "svc"}, None),
        ("http://flowable:8080", {"HTTP_PROXY": "http://p", "NO_PROXY": "*"}, None),
        ("http://flowable:8080", {"HTTP_PROXY": "http://p", "NO_PROXY": "flowable:8080"}, None),
        ("http://flowable:8080", {"HTTP_PROXY": "http://p", "NO_PROXY": "flowable:9"},
         "HTTP_PROXY"),
        ("http://otherflowable", {"HTTP_PROXY": "http://p", "NO_PROXY": "flowable"},
         "HTTP_PROXY"),
        ("http://127.0.0.1:1", {"HTTP_PROXY": "http://p", "NO_PROXY": "127.0.0.1"}, None),
    ],
)
def test_which_proxy_variable_applies(
    url: str, environ: dict[str, str], expected: str | None
) -> None:
    assert proxy_variable_for(url, environ) == expected


def test_the_choice_names_the_variable_never_the_proxy_url() -> None:
    choice = choose_transport("lean", "http://f", {"HTTP_PROXY": "http://u:secret@proxy:3128"})
    assert choice.kind == "httpx"
    assert "HTTP_PROXY" in str(choice)
    assert "secret" not in str(choice)
    assert choose_transport("httpx", "http://f", {}).kind == "httpx"
    assert choose_transport("lean", "http://f", {}).kind == "lean"


@pytest.fixture
async def fake_proxy() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A forward proxy that records each request line and answers every request with `[]`."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                seen.append(head.split(b"\r\n", 1)[0])
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 2\r\n\r\n[]")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        server.close()
        await server.wait_closed()


async def test_a_worker_reaches_flowable_through_the_proxy_in_its_environment(
    fake_proxy: tuple[str, list[bytes]], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy_url, seen = fake_proxy
    monkeypatch.setenv("HTTP_PROXY", proxy_url)
    # Only the proxy can reach this "Flowable": nothing listens on port 9 of 127.0.0.2.
    worker = Worker(worker_settings("http://127.0.0.2:9", topics=("t",)))
    worker.add_handler("t", lambda job: None)
    caplog.set_level(logging.INFO, logger="flowable_worker.runtime")
    async with serving(worker):
        async def asked_through_the_proxy() -> bool:
            return any(b"http://127.0.0.2:9/external-job-api/acquire/jobs" in s for s in seen)

        await eventually(asked_through_the_proxy, within=5)
    started = next(r.getMessage() for r in caplog.records if " started: " in r.getMessage())
    assert "transport httpx (HTTP_PROXY applies to the Flowable URL)" in started


async def test_no_proxy_keeps_the_lean_transport_for_the_flowable_host(
    fake_proxy: tuple[str, list[bytes]], monkeypatch: pytest.MonkeyPatch,
    emulator: FlowableEmulator, caplog: pytest.LogCaptureFixture,
) -> None:
    proxy_url, seen = fake_proxy
    monkeypatch.setenv("HTTP_PROXY", proxy_url)
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    created = emulator.create_job("t")
    worker = Worker(settings_for(emulator, topics=("t",)))
    worker.add_handler("t", _complete)
    caplog.set_level(logging.INFO, logger="flowable_worker.runtime")
    async with serving(worker):
        async def completed() -> bool:
            return any(c.job_id == created.id for c in emulator.completions())

        await eventually(completed, within=5)
    assert seen == []
    started = next(r.getMessage() for r in caplog.records if " started: " in r.getMessage())
    assert "transport lean" in started


def _complete(job: Job) -> dict[str, object]:
    return {"done": True}
