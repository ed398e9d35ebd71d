"""A lean HTTP/1.1 keep-alive transport for the worker's one Flowable connection pool.

Why: with a fast Flowable the worker's CPU goes almost entirely into the HTTP stack, and httpx's
default transport (httpcore on anyio) spends most of it on pool bookkeeping: on every request it
re-checks every idle connection with a poll syscall and builds anyio's attribute maps. This
transport keeps httpx's client (URLs, auth, headers, error types) and replaces only the wire part
with asyncio streams: a LIFO list of idle connections per origin, request bytes written in one go,
the response read by Content-Length or chunked framing. An idle connection the server has closed
is noticed for free (asyncio marks the stream at EOF) and dropped before reuse.

What it does not do: HTTP/2, proxies, request streaming of unknown length, `Expect: 100-continue`.
`--http-client httpx` switches back to httpx's own transport, and so does a proxy configured in
the environment (`choose_transport`): going around a proxy without a word fails exactly where
only the proxy can reach Flowable.
It never retries anything: whether a request may be repeated is the caller's decision.
A header name or value holding a control character (a credential read with its trailing newline)
is refused before anything is sent: written raw, a newline would end the header block early and
turn the rest of the request into garbage the server misreads (issue 9).
Failures surface as httpx exceptions (ConnectError, ReadTimeout, RemoteProtocolError...), so the
client maps them exactly as it maps its default transport's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

import httpx

from flowable_worker.client.tls import ssl_context

_MAX_HEADER_BYTES = 64 * 1024
_CRLF = b"\r\n"
# Control characters other than horizontal tab (allowed inside a field value by RFC 9110).
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def reusable(self) -> bool:
        return not self.reader.at_eof() and not self.writer.is_closing()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


@dataclass
class _Origin:
    idle: list[_Connection] = field(default_factory=list)


class LeanTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 with keep-alive over asyncio streams; at most `max_connections` requests at once."""

    def __init__(self, *, max_connections: int, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl_context = ssl_context
        self._max_connections = max_connections
        self._slots: asyncio.Semaphore | None = None
        self._origins: dict[tuple[bytes, bytes, int], _Origin] = {}
        self._closed = False

    def _semaphore(self) -> asyncio.Semaphore:
        # Created lazily inside the running loop (the transport may be built outside one).
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
            return await self._send(request, timeouts)
        finally:
            slots.release()

    async def _send(
        self, request: httpx.Request, timeouts: dict[str, float | None]
    ) -> httpx.Response:
        url = request.url
        key = (url.raw_scheme, url.raw_host, url.port or (443 if url.scheme == "https" else 80))
        origin = self._origins.setdefault(key, _Origin())
        connection = None
        while origin.idle:
            candidate = origin.idle.pop()
            if candidate.reusable():
                connection = candidate
                break
            candidate.close()
        if connection is None:
            connection = await self._connect(request, key, timeouts.get("connect"))
        body = await request.aread()
        try:
            try:
                async with asyncio.timeout(timeouts.get("write")):
                    connection.writer.write(request_bytes(request, body))
                    await connection.writer.drain()
            except TimeoutError:
                raise httpx.WriteTimeout("timed out writing", request=request) from None
            except OSError as error:
                message = str(error) or type(error).__name__
                raise httpx.WriteError(message, request=request) from None
            try:
                async with asyncio.timeout(timeouts.get("read")):
                    status, reason, headers, content, keep_alive = await _read_response(
                        connection.reader, request.method
                    )
            except TimeoutError:
                raise httpx.ReadTimeout("timed out reading the response", request=request) from None
            except asyncio.IncompleteReadError:
                raise httpx.RemoteProtocolError(
                    "server disconnected without sending a complete response", request=request
                ) from None
            except (asyncio.LimitOverrunError, ValueError) as error:
                raise httpx.RemoteProtocolError(
                    f"malformed response: {error}", request=request
                ) from None
            except OSError as error:
                message = str(error) or type(error).__name__
                raise httpx.ReadError(message, request=request) from None
        except BaseException:
            connection.close()  # its state is unknown: never reuse it
            raise
        if keep_alive and not self._closed:
            origin.idle.append(connection)
        else:
            connection.close()
        return httpx.Response(
            status,
            headers=headers,
            content=content,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason},
            request=request,
        )

    async def _connect(
        self, request: httpx.Request, key: tuple[bytes, bytes, int], within: float | None
    ) -> _Connection:
        scheme, host, port = key
        tls: ssl.SSLContext | None = None
        if scheme == b"https":
            tls = self._ssl_context or ssl.create_default_context()
        try:
            async with asyncio.timeout(within):
                reader, writer = await asyncio.open_connection(
                    host.decode("ascii"), port, ssl=tls, limit=_MAX_HEADER_BYTES
                )
        except TimeoutError:
            raise httpx.ConnectTimeout("timed out connecting", request=request) from None
        except OSError as error:
            message = str(error) or type(error).__name__
            raise httpx.ConnectError(message, request=request) from None
        return _Connection(reader, writer)

    async def aclose(self) -> None:
        self._closed = True
        for origin in self._origins.values():
            for connection in origin.idle:
                connection.close()
            origin.idle.clear()


def check_headers(request: httpx.Request) -> None:
    """Refuse a header whose name or value holds a control character, naming the header only.

    Shared with the operator's streaming transport (`engine_transport`), which writes requests
    the same way and differs only in how it reads answers."""
    for name, value in request.headers.raw:
        if _CONTROL.search(value) or _CONTROL.search(name):
            shown = name.decode("ascii", errors="replace")
            raise httpx.LocalProtocolError(
                f"header {shown!r} contains a control character (value not shown); not sent",
                request=request,
            )


def request_bytes(request: httpx.Request, body: bytes) -> bytes:
    target = request.url.raw_path
    lines = [request.method.encode("ascii") + b" " + target + b" HTTP/1.1"]
    has_length = False
    for name, value in request.headers.raw:
        lowered = name.lower()
        if lowered == b"content-length":
            has_length = True
        elif lowered == b"transfer-encoding":
            continue  # the body is sent whole, with a length
        lines.append(name + b": " + value)
    if body and not has_length:
        lines.append(b"Content-Length: " + str(len(body)).encode("ascii"))
    return _CRLF.join(lines) + _CRLF + _CRLF + body


async def _read_response(
    reader: asyncio.StreamReader, method: str
) -> tuple[int, bytes, list[tuple[bytes, bytes]], bytes, bool]:
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head[:-4].split(_CRLF)
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise ValueError(f"bad status line {lines[0][:80]!r}")
        status = int(parts[1])
        if status >= 200 or status == 101:
            break  # 1xx interim answers are skipped
    reason = parts[2] if len(parts) > 2 else b""
    headers: list[tuple[bytes, bytes]] = []
    length: int | None = None
    chunked = False
    close = parts[0] == b"HTTP/1.0"
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise ValueError(f"bad header line {line[:80]!r}")
        value = value.strip()
        headers.append((name, value))
        lowered = name.lower()
        if lowered == b"content-length":
            length = int(value)
        elif lowered == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif lowered == b"connection":
            tokens = value.lower()
            if b"close" in tokens:
                close = True
            elif b"keep-alive" in tokens:
                close = False
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        content = b""
    elif chunked:
        content = await _read_chunked(reader)
        headers = [(n, v) for n, v in headers if n.lower() != b"transfer-encoding"]
    elif length is not None:
        content = await reader.readexactly(length)
    else:
        content = await reader.read()  # until the server closes
        close = True
    return status, reason, headers, content, not close


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    pieces: list[bytes] = []
    while True:
        size_line = await reader.readuntil(_CRLF)
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            # Trailers (usually none) end with an empty line.
            while (await reader.readuntil(_CRLF)) != _CRLF:
                pass
            return b"".join(pieces)
        pieces.append(await reader.readexactly(size))
        if await reader.readexactly(2) != _CRLF:
            raise ValueError("chunk not followed by CRLF")


def tls_context(
    *,
    verify: bool,
    ca_bundle: str | None,
    client_cert: str | None = None,
    client_key: str | None = None,
) -> ssl.SSLContext:
    """The TLS context matching the client settings' `verify_tls` / `ca_bundle` and client
    certificate: the same one httpx's transport gets (`flowable_worker.client.tls`)."""
    return ssl_context(
        verify=verify, ca_bundle=ca_bundle, client_cert=client_cert, client_key=client_key
    )


@dataclass(frozen=True)
class TransportChoice:
    """Which transport the worker's Flowable client uses, and why (said in the start-up log)."""

    kind: Literal["lean", "httpx"]
    reason: str

    def __str__(self) -> str:
        return f"{self.kind} ({self.reason})"


def choose_transport(
    requested: str, url: str, environ: Mapping[str, str] | None = None
) -> TransportChoice:
    """The lean transport unless httpx's is asked for or a proxy applies to `url`.

    httpx's transport honours `HTTP_PROXY`/`HTTPS_PROXY`/`ALL_PROXY` and `NO_PROXY`; the lean
    one speaks no proxy protocol, so a configured proxy that applies to the Flowable URL selects
    httpx's. A Flowable host that `NO_PROXY` exempts keeps the lean transport.
    """
    if requested == "httpx":
        return TransportChoice("httpx", "--http-client httpx")
    variable = proxy_variable_for(url, environ)
    if variable is not None:
        return TransportChoice("httpx", f"{variable} applies to the Flowable URL")
    return TransportChoice("lean", "no proxy applies to the Flowable URL")


def proxy_variable_for(url: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The name of the proxy variable that applies to `url`, or None.

    Read as curl and Python's urllib read them: `<scheme>_proxy`, then `all_proxy`, the lowercase
    spelling before the uppercase one; `NO_PROXY` is a comma-separated list of host names (a
    suffix matches its subdomains, a leading dot is ignored, `host:port` entries match that port
    only) or `*`. The name, never the value, is returned: a proxy URL may carry credentials.
    """
    environ = os.environ if environ is None else environ
    parts = urlsplit(url)
    found = None
    for key in (f"{parts.scheme.lower()}_proxy", "all_proxy"):
        found = next((n for n in (key, key.upper()) if environ.get(n, "").strip()), None)
        if found is not None:
            break
    if found is None:
        return None
    no_proxy = environ.get("no_proxy") or environ.get("NO_PROXY") or ""
    if parts.hostname and _exempt(parts.hostname, parts.port, no_proxy):
        return None
    return found


def _exempt(host: str, port: int | None, no_proxy: str) -> bool:
    """True when an entry of NO_PROXY covers `host` (and `port`, for a `host:port` entry)."""
    host = host.lower()
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if entry == "*":
            return True
        name, sep, entry_port = entry.rpartition(":")
        if not sep or not entry_port.isdigit() or ":" in name.strip("[]"):
            name, entry_port = entry, ""  # no port, or a bare IPv6 address
        name = name.strip("[]").lstrip(".")
        if not name or (entry_port and int(entry_port) != port):
            continue
        if host == name or host.endswith("." + name):
            return True
    return False
