"""kopf's session to the API server: requests in flight bounded, watch streams outside the bound,
and kopf's own credentials in it. Against a real aiohttp server on loopback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import kopf
import pytest
from aiohttp import web
from kopf._core.intents.causes import Activity
from kubernetes import client as k8s_client
from kubernetes.config import kube_config

from flowable_worker_operator import api_session, handlers

LIMIT = 4


class Server:
    """Counts the requests it is answering at once; `/slow` answers after a pause, `/watch`
    sends its headers and then a line a second until the client goes."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0
        self.authorization: list[str | None] = []
        self.peers: set[object] = set()

    async def slow(self, request: web.Request) -> web.Response:
        self.authorization.append(request.headers.get("Authorization"))
        self.peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await asyncio.sleep(0.05)
        finally:
            self.now -= 1
        return web.json_response({"ok": True})

    async def watch(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        while True:
            await response.write(b'{"type": "BOOKMARK"}\n')
            await asyncio.sleep(1)


@pytest.fixture
async def server() -> AsyncIterator[tuple[Server, str]]:
    state = Server()
    app = web.Application()
    app.router.add_get("/slow", state.slow)
    app.router.add_get("/watch", state.watch)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield state, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def _many(session: aiohttp.ClientSession, url: str, count: int) -> None:
    async def one() -> None:
        async with session.get(url + "/slow") as response:
            assert response.status == 200
            await response.read()

    await asyncio.gather(*(one() for _ in range(count)))


async def test_without_the_bound_the_server_sees_every_request_at_once(
    server: tuple[Server, str],
) -> None:
    # What kopf's own session does (limit=0): the bound below is what makes the difference.
    state, url = server
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await _many(session, url, 40)
    assert state.most > LIMIT * 2
    assert len(state.peers) > LIMIT * 2


async def test_at_most_the_bound_waits_for_an_answer(server: tuple[Server, str]) -> None:
    state, url = server
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), middlewares=(api_session.bounded(LIMIT),)
    ) as session:
        await _many(session, url, 40)
    assert state.most == LIMIT
    # Every request answered over the bound's connections, not one connection a request.
    assert len(state.authorization) == 40
    assert len(state.peers) <= LIMIT


async def test_open_streams_do_not_hold_a_slot(server: tuple[Server, str]) -> None:
    # More watch streams than slots, all open, and a request still gets through: the slot is
    # given back when the headers are in.
    _, url = server
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), middlewares=(api_session.bounded(2),)
    ) as session:
        streams = [await session.get(url + "/watch") for _ in range(5)]
        try:
            for stream in streams:
                assert await asyncio.wait_for(stream.content.readline(), 5) == (
                    b'{"type": "BOOKMARK"}\n'
                )
            await asyncio.wait_for(_many(session, url, 3), 5)
        finally:
            for stream in streams:
                stream.close()


async def test_the_session_carries_the_credentials(server: tuple[Server, str]) -> None:
    state, url = server
    info = kopf.ConnectionInfo(server=url, token="t0ken", default_namespace="team-a", priority=7)
    context = api_session.session_for(info, limit=LIMIT)
    assert (context.server, context.default_namespace, context.priority) == (url, "team-a", 7)
    async with context.aiohttp_session as session:
        await _many(session, url, 10)
    assert state.authorization == ["Bearer t0ken"] * 10
    assert state.most <= LIMIT


async def test_login_reads_kopfs_credentials_from_the_kubeconfig(
    server: tuple[Server, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, url = server
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "{url}"}}}}]
users: [{{name: u, user: {{token: from-kubeconfig}}}}]
contexts: [{{name: x, context: {{cluster: c, user: u}}}}]
current-context: x
"""
    )
    # What $KUBECONFIG sets, as the client read it at import.
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    for name in ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
        monkeypatch.delenv(name, raising=False)
    saved = k8s_client.Configuration.get_default_copy()
    try:
        context = await api_session.login(
            logger=logging.getLogger("test"), settings=kopf.OperatorSettings()
        )
    finally:
        k8s_client.Configuration.set_default(saved)
    assert context.server == url
    async with context.aiohttp_session as session:
        await _many(session, url, 1)
    assert state.authorization == ["Bearer from-kubeconfig"]


def test_the_operator_logs_in_through_it() -> None:
    # Registered with kopf: without a login handler of ours, kopf's fallback (unbounded) is used.
    registry = kopf.get_default_registry()
    logins = [
        handler.fn
        for handler in registry._activities.get_all_handlers()
        if handler.activity == Activity.AUTHENTICATION
        and not handler._fallback
    ]
    assert logins == [handlers._login]
