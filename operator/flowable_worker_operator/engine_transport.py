"""The HTTP transport under the operator's requests to Flowable: HTTP/1.1 keep-alive over asyncio
streams, with answers streamed.

Why: at 1000 idle pools the operator asks its engine about 30 counts a second, and httpx's own
transport (httpcore on anyio) spent more CPU per request than the rest of the request did: on
every request it checks each idle connection with a poll, enters anyio cancel scopes (each asking
sniffio which event loop runs), and builds anyio's attribute maps (py-spy at 1000 pools: 15% of
the operator's CPU under `AsyncConnectionPool.handle_async_request`). This transport keeps httpx's
client (URLs, auth, headers, timeouts, error types) and replaces only the wire, as the worker's
`flowable_worker.transport.LeanTransport` does, with one difference that the operator needs: the
body is not read by the transport but streamed to whoever reads the response, so that
`responses.BoundedTransport` around it still refuses an answer past its limit without reading
the rest (the worker's transport reads a whole body before returning). A connection goes back to
the idle list only once its answer was read to the end; one whose answer was left unread
(refused, or the reader gave up) is closed, never reused half-read.

What it does not do: HTTP/2, proxies, request bodies of unknown length, `Expect: 100-continue`.
`engine_transport` leaves the engine to httpx's own transport when a proxy in the environment
applies to its URL. It never retries: whether a
request may be repeated is the client's decision (its reads are retried once). Failures surface
as httpx exceptions (ConnectError, ReadTimeout, RemoteProtocolError...), so the client maps them
as it maps httpx's own transport's.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import httpx

from flowable_worker import ClientSettings
from flowable_worker.transport import check_headers, request_bytes

__all__ = ["IDLE_EXPIRY_SECONDS", "StreamingTransport", "engine_transport"]

IDLE_EXPIRY_SECONDS = 5.0
"""An idle connection is not reused after this long (httpx's own `keepalive_expiry`): a server
or a load balancer in between may drop idle connections without a word, and a request sent on
one of those fails."""

_MAX_HEAD_BYTES = 64 * 1024
_READ_BYTES = 64 * 1024
_CRLF = b"\r\n"

Origin = tuple[bytes, bytes, int]
_T = TypeVar("_T")


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0

    def reusable(self, now: float) -> bool:
        return (
            not self.reader.at_eof()
            and not self.writer.is_closing()
            and now - self.idle_since < IDLE_EXPIRY_SECONDS
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


@dataclass
class _Pool:
    idle: list[_Connection] = field(default_factory=list)


class StreamingTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 with keep-alive over asyncio streams; at most `max_connections` requests (each
    until its answer is read or closed) at once. `ssl_context`: for https origins (None: the
    system's trust store)."""

    def __init__(
        self,
        *,
        max_connections: int,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._ssl_context = ssl_context
        self._max_connections = max_connections
        self._clock = clock
        self._slots: asyncio.Semaphore | None = None
        self._pools: dict[Origin, _Pool] = {}
        self._closed = False

    def _semaphore(self) -> asyncio.Semaphore:
        # Made on first use, inside the running loop (the transport may be built outside one).
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max_connections)
        return self._slots

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise httpx.ConnectError("transport closed", request=request)
        check_headers(request)
        timeouts = request.extensions.get("timeout", {})
        slots = self._semaphore()
        try:
            async with asyncio.timeout(timeouts.get("pool")):
                await slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("no free connection in time", request=request) from None
        try:
            return await self._send(request, timeouts, slots.release)
        except BaseException:
            slots.release()
            raise

    async def _send(
        self,
        request: httpx.Request,
        timeouts: dict[str, float | None],
        release: Callable[[], None],
    ) -> httpx.Response:
        """The answer's head read; its body left on the connection for `_Body` to stream."""
        url = request.url
        origin: Origin = (
            url.raw_scheme,
            url.raw_host,
            url.port or (443 if url.scheme == "https" else 80),
        )
        pool = self._pools.setdefault(origin, _Pool())
        now = self._clock()
        connection = None
        while pool.idle:
            candidate = pool.idle.pop()
            if candidate.reusable(now):
                connection = candidate
                break
            candidate.close()
        if connection is None:
            connection = await self._connect(request, origin, timeouts.get("connect"))
        try:
            body = await request.aread()
            try:
                async with asyncio.timeout(timeouts.get("write")):
                    connection.writer.write(request_bytes(request, body))
                    await connection.writer.drain()
            except TimeoutError:
                raise httpx.WriteTimeout("timed out writing", request=request) from None
            except OSError as error:
                raise httpx.WriteError(
                    str(error) or type(error).__name__, request=request
                ) from None
            read_timeout = timeouts.get("read")
            with _read_errors(request):
                async with asyncio.timeout(read_timeout):
                    status, reason, headers, http10 = await _read_head(connection.reader)
                framing = _framing(request.method, status, headers, http10=http10)
        except BaseException:
            connection.close()  # its state is unknown: never reused
            raise
        stream = _Body(
            connection,
            framing,
            request=request,
            read_timeout=read_timeout,
            done=lambda keep: self._finished(pool, connection, keep, release),
        )
        return httpx.Response(
            status,
            headers=headers,
            stream=stream,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason},
            request=request,
        )

    def _finished(
        self, pool: _Pool, connection: _Connection, keep: bool, release: Callable[[], None]
    ) -> None:
        """An answer was read to its end (`keep`: and the connection may carry another one) or
        abandoned: the connection goes back to the idle list or is closed; the slot is free."""
        if keep and not self._closed:
            connection.idle_since = self._clock()
            pool.idle.append(connection)
        else:
            connection.close()
        release()

    async def _connect(
        self, request: httpx.Request, origin: Origin, within: float | None
    ) -> _Connection:
        scheme, host, port = origin
        tls: ssl.SSLContext | None = None
        if scheme == b"https":
            tls = self._ssl_context or ssl.create_default_context()
        try:
            async with asyncio.timeout(within):
                reader, writer = await asyncio.open_connection(
                    host.decode("ascii"), port, ssl=tls, limit=_MAX_HEAD_BYTES
                )
        except TimeoutError:
            raise httpx.ConnectTimeout("timed out connecting", request=request) from None
        except OSError as error:  # ssl.SSLError included: a refused handshake
            raise httpx.ConnectError(str(error) or type(error).__name__, request=request) from None
        return _Connection(reader, writer)

    async def aclose(self) -> None:
        self._closed = True
        for pool in self._pools.values():
            for connection in pool.idle:
                connection.close()
            pool.idle.clear()


@dataclass(frozen=True)
class _Framing:
    """How the body ends: after `length` bytes, after the last chunk, or when the server closes
    (`length` None, not `chunked`); and whether the connection may be reused after it."""

    length: int | None
    chunked: bool
    keep_alive: bool


def _framing(
    method: str, status: int, headers: list[tuple[bytes, bytes]], *, http10: bool
) -> _Framing:
    """How the body of this answer ends (a malformed length is a `ValueError`)."""
    length: int | None = None
    chunked = False
    keep_alive = not http10
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"content-length":
            length = int(value)
            if length < 0:
                raise ValueError(f"bad Content-Length {value[:40]!r}")
        elif lowered == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif lowered == b"connection":
            tokens = value.lower()
            if b"close" in tokens:
                keep_alive = False
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return _Framing(length=0, chunked=False, keep_alive=keep_alive)
    if chunked:
        return _Framing(length=None, chunked=True, keep_alive=keep_alive)
    if length is None:
        return _Framing(length=None, chunked=False, keep_alive=False)  # until the server closes
    return _Framing(length=length, chunked=False, keep_alive=keep_alive)


class _Body(httpx.AsyncByteStream):
    """An answer's body, read from its connection as it is iterated; `done(keep)` is called once,
    when it was read to its end (`keep`: the connection may be reused) or closed before."""

    def __init__(
        self,
        connection: _Connection,
        framing: _Framing,
        *,
        request: httpx.Request,
        read_timeout: float | None,
        done: Callable[[bool], None],
    ) -> None:
        self._connection = connection
        self._framing = framing
        self._request = request
        self._timeout = read_timeout
        self._done: Callable[[bool], None] | None = done
        self._complete = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._complete or self._done is None:
            return
        with _read_errors(self._request):
            if self._framing.chunked:
                async for piece in self._chunks():
                    yield piece
            elif self._framing.length is not None:
                left = self._framing.length
                while left > 0:
                    piece = await self._read(self._connection.reader.read(min(left, _READ_BYTES)))
                    if not piece:
                        raise asyncio.IncompleteReadError(b"", left)
                    left -= len(piece)
                    yield piece
            else:
                while piece := await self._read(self._connection.reader.read(_READ_BYTES)):
                    yield piece
        self._complete = True
        self._finish(keep=self._framing.keep_alive)

    async def _chunks(self) -> AsyncIterator[bytes]:
        reader = self._connection.reader
        while True:
            line = await self._read(reader.readuntil(_CRLF))
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise httpx.RemoteProtocolError(
                    "bad chunk size line", request=self._request
                ) from None
            if size == 0:
                # Trailers (usually none) end with an empty line.
                while (await self._read(reader.readuntil(_CRLF))) != _CRLF:
                    pass
                return
            while size > 0:
                piece = await self._read(reader.read(min(size, _READ_BYTES)))
                if not piece:
                    raise asyncio.IncompleteReadError(b"", size)
                size -= len(piece)
                yield piece
            if await self._read(reader.readexactly(2)) != _CRLF:
                raise httpx.RemoteProtocolError("chunk not followed by CRLF", request=self._request)

    async def _read(self, reading: Awaitable[_T]) -> _T:
        async with asyncio.timeout(self._timeout):
            return await reading

    def _finish(self, *, keep: bool) -> None:
        done, self._done = self._done, None
        if done is not None:
            done(keep)

    async def aclose(self) -> None:
        """Read to its end: the connection was given back already. Not: it holds the rest of an
        answer nobody will read, so it is closed."""
        self._finish(keep=False)


@contextlib.contextmanager
def _read_errors(request: httpx.Request) -> Iterator[None]:
    """Reading failures as httpx's: a timeout, a server gone mid-answer, a malformed answer."""
    try:
        yield
    except TimeoutError:
        raise httpx.ReadTimeout("timed out reading the answer", request=request) from None
    except asyncio.IncompleteReadError:
        raise httpx.RemoteProtocolError(
            "server disconnected without sending a complete answer", request=request
        ) from None
    except (asyncio.LimitOverrunError, ValueError) as error:
        raise httpx.RemoteProtocolError(f"malformed answer: {error}", request=request) from None
    except OSError as error:
        raise httpx.ReadError(str(error) or type(error).__name__, request=request) from None


async def _read_head(
    reader: asyncio.StreamReader,
) -> tuple[int, bytes, list[tuple[bytes, bytes]], bool]:
    """Status, reason, headers of the answer (1xx interim answers skipped), and whether it
    spoke HTTP/1.0 (no keep-alive then)."""
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head[:-4].split(_CRLF)
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise ValueError(f"bad status line {lines[0][:80]!r}")
        status = int(parts[1])
        if status >= 200 or status == 101:
            break
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise ValueError(f"bad header line {line[:80]!r}")
        headers.append((name, value.strip()))
    return status, parts[2] if len(parts) > 2 else b"", headers, parts[0] == b"HTTP/1.0"


def engine_transport(settings: ClientSettings) -> StreamingTransport | None:
    """This module's transport for one engine, with the engine's TLS settings (the context httpx
    would make of them) and connection limit; None when a proxy in the environment applies to
    the engine's URL, by the rule `responses.bounded_transport` follows: it then builds httpx's
    own transport, which speaks the proxy protocol (going around a proxy fails exactly where
    only the proxy reaches the engine)."""
    url = httpx.URL(settings.base_url)
    proxy = urllib.request.getproxies_environment().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(url.host):
        return None
    context = (
        httpx.create_ssl_context(verify=settings.tls_verify()) if url.scheme == "https" else None
    )
    return StreamingTransport(max_connections=settings.max_connections, ssl_context=context)
