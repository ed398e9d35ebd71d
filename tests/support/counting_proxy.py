"""An HTTP/1.1 proxy on 127.0.0.1 that counts requests per distinct (method, path?query).

The operator at scale should ask Flowable each distinct question at most once per polling
interval however many pools share it; only the wire shows whether it does, so this proxy sits
between the operator and the engine and counts what passes. It understands just enough HTTP to
find request boundaries (the request line, `Content-Length`); bytes are forwarded untouched,
answers are piped back as they come. A request with a chunked body ends the counting on its
connection (the rest is still forwarded): the operator's client never sends one.

It runs on its own event loop in a daemon thread of the caller, so the caller reads the counts
directly (`snapshot()`); `with CountingProxy(host, port) as proxy:` starts and stops it. Used by
`bench/operator_scale.py` and `tests/e2e/test_shared_questions.py` (it lived in `bench/` before a
test needed it).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter
from types import TracebackType

Question = tuple[str, str]
"""(method, path?query) of one request."""

_MAX_HEAD = 64 * 1024


class CountingProxy:
    """Listens on a free loopback port and forwards to `target_host:target_port`."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._counts: Counter[Question] = Counter()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._live: set[asyncio.Future[None]] = set()
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> CountingProxy:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        self.port = future.result(timeout=10)
        return self

    def stop(self) -> None:
        """Close the listener and every connection, then end the loop's thread."""
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def snapshot(self) -> Counter[Question]:
        """Requests counted so far, per question (a copy)."""
        with self._lock:
            return Counter(self._counts)

    def __enter__(self) -> CountingProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the loop's side -----------------------------------------------------------------

    async def _listen(self) -> int:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _connection(
        self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._live.add(task)
        try:
            await self._handle(client_r, client_w)
        finally:
            self._live.discard(task)

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            upstream_r, upstream_w = await asyncio.open_connection(*self._target)
        except OSError:
            client_w.close()
            return
        # Held here as well as by the loop: a task whose sockets are both idle is otherwise
        # reachable from nothing, and the garbage collector destroys it while it is pending.
        answers = asyncio.ensure_future(_pipe(upstream_r, client_w))
        self._live.add(answers)
        try:
            # Until the client closes: an HTTP client closes once it has read its last answer.
            await self._requests(client_r, upstream_w)
        except (ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            answers.cancel()
            self._live.discard(answers)
            for writer in (upstream_w, client_w):
                writer.close()

    async def _requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Forward requests one by one, counting each at its request line."""
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as partial:
                if partial.partial:
                    writer.write(partial.partial)
                return
            if len(head) > _MAX_HEAD:
                raise ConnectionError("request head too large")
            method, target, length, chunked = _parse_head(head)
            with self._lock:
                self._counts[(method, target)] += 1
            writer.write(head)
            if chunked:
                await _pipe(reader, writer, close=False)
                return
            if length:
                writer.write(await reader.readexactly(length))
            await writer.drain()


def _parse_head(head: bytes) -> tuple[str, str, int, bool]:
    """(method, target, Content-Length, chunked) of one request head."""
    lines = head.decode("latin-1").split("\r\n")
    method, target, *_ = lines[0].split(" ")
    length, chunked = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    return method, target, length, chunked


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, close: bool = True
) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    if close:
        writer.close()
