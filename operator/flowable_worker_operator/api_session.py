"""kopf's HTTP session to the API server, with a bound on the requests it has in flight.

kopf talks to the API server through one aiohttp session of its own, whose connector has no limit
(`TCPConnector(limit=0)`): a request that finds no idle connection opens a new one, and every
connection opened is kept for reuse. That is harmless for a handful of objects. When 10,000
pools are created, kopf adds its finalizer to each (a PATCH) and posts their Events, thousands of
requests at once, and it opened about 1,100 TLS connections. Each carries asyncio's 256 KB read
buffer (`asyncio.sslproto.SSLProtocol.max_size`), so those buffers were 290 MB of the 800 MB the
operator had at that moment (docs/benchmarks.md, "The creation's peak"),
and what such a peak leaves behind stays part-used in the allocator's arenas for good.

So the operator logs in itself (`login`, a `kopf.on.login` handler): the same credentials kopf's
own fallback would find (`kopf.login_via_client`: the pod's service account, else the
kubeconfig), in a session of the same kind, plus one client middleware (`bounded`) that lets at
most `REQUESTS_IN_FLIGHT` requests wait for their response headers at once. A watch holds its slot
only until its headers arrive, so the long-lived streams (one per watched resource and namespace)
never use up the bound; the connections open are then about the requests in flight plus the
streams, whatever the number of pools. The bound is not a connector limit for that reason: a
connector limit counts the streams too, and an operator watching many namespaces would wait
forever for a connection.

kopf closes the session when it logs in again (a 401, expired credentials), and the next login
makes a new one.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import kopf

__all__ = ["REQUESTS_IN_FLIGHT", "bounded", "login", "session_for"]

REQUESTS_IN_FLIGHT = 16
"""Requests of kopf's that may wait for their response at once; the rest queue for a slot. A
PATCH or an Event takes a few milliseconds of the API server, so 16 in flight is some thousand a
second, more than kopf ever has to send, and 16 read buffers are 4 MB."""


def bounded(limit: int) -> aiohttp.ClientMiddlewareType:
    """A client middleware that lets at most `limit` requests wait for their response at once.

    The slot is released when the response's headers are in: a response body (a watch's stream)
    is read after, outside the bound."""
    slots = asyncio.Semaphore(limit)

    async def middleware(
        request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        async with slots:
            return await handler(request)

    return middleware


def session_for(info: kopf.ConnectionInfo, limit: int = REQUESTS_IN_FLIGHT) -> kopf.AiohttpSession:
    """kopf's session for these credentials, as kopf itself would make it, but bounded."""
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ssl=info.as_ssl_context()),
        headers=info.as_http_headers(),
        proxy=info.proxy_url,
        trust_env=bool(info.trust_env),
        middlewares=(bounded(limit),),
    )
    return kopf.AiohttpSession(
        server=info.server,
        priority=info.priority,
        default_namespace=info.default_namespace,
        expiration=info.expiration,
        aiohttp_session=session,
    )


async def login(
    *, logger: kopf.Logger, settings: kopf.OperatorSettings, **_: Any
) -> kopf.AiohttpSession:
    """kopf's login: the credentials kopf's fallback finds, in a bounded session."""
    info = kopf.login_via_client(logger=logger, settings=settings)
    if info is None:  # the kubernetes package is missing: it is a dependency of the operator
        raise kopf.LoginError("the kubernetes package is not importable")
    return session_for(info)
