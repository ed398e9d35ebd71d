"""What the operator takes from the engine's answers: a bounded read, and never the body's words.

A pool's author chooses `engine.url` and the API paths, and the operator fetches them from inside
the cluster. Whatever answers must not become a way to read other services through the pool:
its status, conditions and Events are readable by anyone with `view` on the namespace. Two rules:

* **No response text in status or Events.** A failed request is described by `describe`: the
  HTTP status code and its standard reason phrase, or the kind of network failure, and a fixed
  sentence. The body (and an invalid answer's excerpt) goes to the operator's log at debug level.
* **A bounded read.** `BoundedTransport` refuses an answer larger than `MAX_RESPONSE_BYTES`: at
  once when its `Content-Length` says so, else as soon as that many bytes have arrived, never
  reading the rest. It asks for an uncompressed answer and refuses a compressed one, because a
  small gzip body can decode to gigabytes. Each refusal counts in
  `flowable_pool_responses_refused_total`.
"""

from __future__ import annotations

import ssl
import urllib.request
from collections.abc import AsyncIterator
from http import HTTPStatus
from typing import Literal

import httpx

from flowable_worker import ClientSettings
from flowable_worker.client.errors import (
    FlowableHTTPError,
    FlowableTimeoutError,
    FlowableTransportError,
    InvalidResponseError,
)
from flowable_worker_operator import metrics

__all__ = [
    "MAX_RESPONSE_BYTES",
    "BoundedTransport",
    "ResponseRefused",
    "bounded_transport",
    "describe",
]

MAX_RESPONSE_BYTES = 4 * 1024 * 1024
"""The largest answer the operator reads. A count is a few hundred bytes, a page of 500 locked
jobs or of 100 definitions well under a MiB; a model's XML is the largest thing it reads."""

RefusalReason = Literal["too_large", "compressed"]


class ResponseRefused(Exception):
    """An answer the operator would not read; the message is ours, never the server's."""

    def __init__(self, reason: RefusalReason, message: str) -> None:
        self.reason = reason
        super().__init__(message)


def describe(error: BaseException) -> str:
    """A fixed description of a failed request to the engine, safe for status and Events.

    Status code and reason phrase, or the kind of network failure: nothing the server wrote.
    """
    if isinstance(error, ResponseRefused):
        return str(error)
    if isinstance(error, FlowableHTTPError):
        return _status_text(error.status)
    if isinstance(error, httpx.HTTPStatusError):
        return _status_text(error.response.status_code)
    if isinstance(error, InvalidResponseError):
        return "the answer is not the JSON the API promises"
    cause = error.__cause__ if isinstance(error, FlowableTransportError) else error
    kind = type(cause).__name__ if cause is not None else type(error).__name__
    if isinstance(error, FlowableTimeoutError | httpx.TimeoutException):
        return f"no answer in time ({kind})"
    if isinstance(error, FlowableTransportError | httpx.HTTPError):
        return f"no answer ({kind})"
    return f"failed ({type(error).__name__})"


def _status_text(code: int) -> str:
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = "(non-standard status)"
    return f"HTTP {code} {phrase}"


class _BoundedStream(httpx.AsyncByteStream):
    """The inner body, stopped with `ResponseRefused` once more than `limit` bytes arrived."""

    def __init__(self, inner: httpx.AsyncByteStream, limit: int) -> None:
        self._inner = inner
        self._limit = limit

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self._inner:
            seen += len(chunk)
            if seen > self._limit:
                raise _refused("too_large", f"the answer exceeds {_size(self._limit)}; not read")
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class BoundedTransport(httpx.AsyncBaseTransport):
    """Wraps a transport so that no answer is read beyond `limit` bytes, nor compressed."""

    def __init__(self, inner: httpx.AsyncBaseTransport, *, limit: int = MAX_RESPONSE_BYTES) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1 byte")
        self._inner = inner
        self._limit = limit

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.headers["Accept-Encoding"] = "identity"
        try:
            response = await self._inner.handle_async_request(request)
        except ssl.SSLError as error:
            # httpx lets a TLS alert read after the handshake escape unmapped: under TLS 1.3 an
            # engine refusing the operator's client certificate says so only on the first read.
            reason = error.reason or type(error).__name__
            raise httpx.ConnectError(f"TLS refused: {reason}", request=request) from None
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        declared = response.headers.get("Content-Length", "").strip()
        refusal: ResponseRefused | None = None
        if encoding not in ("", "identity"):
            refusal = _refused("compressed", "the answer is compressed although none was asked")
        elif declared.isdigit() and int(declared) > self._limit:
            refusal = _refused(
                "too_large", f"the answer announces more than {_size(self._limit)}; not read"
            )
        if refusal is not None:
            await response.aclose()
            raise refusal
        stream = response.stream
        if not isinstance(stream, httpx.AsyncByteStream):  # pragma: no cover - sync transports
            raise TypeError("BoundedTransport needs an async transport")
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_BoundedStream(stream, self._limit),
            extensions=response.extensions,
            request=request,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


def bounded_transport(
    settings: ClientSettings,
    inner: httpx.AsyncBaseTransport | None = None,
    *,
    limit: int = MAX_RESPONSE_BYTES,
) -> BoundedTransport:
    """The bounded transport for one engine: over `inner` (tests), or over the network with the
    engine's TLS settings, connection limit and the environment's proxy for its host (what httpx
    would have used had it built the transport itself)."""
    if inner is None:
        inner = httpx.AsyncHTTPTransport(
            verify=settings.tls_verify(),
            limits=httpx.Limits(
                max_connections=settings.max_connections,
                max_keepalive_connections=settings.max_connections,
            ),
            proxy=_environment_proxy(settings.base_url),
        )
    return BoundedTransport(inner, limit=limit)


def _environment_proxy(url: str) -> str | None:
    """`HTTP(S)_PROXY` for `url` unless `NO_PROXY` exempts its host (stdlib rules)."""
    parsed = httpx.URL(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parsed.scheme)
    if not proxy or urllib.request.proxy_bypass(parsed.host):
        return None
    return proxy


def _refused(reason: RefusalReason, message: str) -> ResponseRefused:
    metrics.RESPONSES_REFUSED.labels(reason=reason).inc()
    return ResponseRefused(reason, message)


def _size(limit: int) -> str:
    return f"{limit // (1024 * 1024)} MiB" if limit % (1024 * 1024) == 0 else f"{limit} bytes"
