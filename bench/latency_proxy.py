"""A TCP proxy on 127.0.0.1 that delays every byte by a fixed time in each direction.

Loopback has almost no latency, which flatters a client that waits for each answer before sending
the next request. In a cluster the worker and Flowable sit on different nodes; this proxy puts a
configurable round trip between them so the benchmark can show both cases. Order is preserved per
direction; nothing is dropped or reordered.

Run: `python bench/latency_proxy.py LISTEN_PORT TARGET_HOST TARGET_PORT ROUND_TRIP_MS`
(it prints `ready` once listening).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                writer.close()
                return
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(deliver())
    try:
        while True:
            data = await reader.read(65536)
            queue.put_nowait((loop.time() + delay, data))
            if not data:
                break
        await sender
    except (ConnectionError, OSError):
        sender.cancel()
        writer.close()


async def serve(listen_port: int, host: str, port: int, round_trip_ms: float) -> None:
    one_way = round_trip_ms / 2000

    async def handle(
        client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(host, port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            _pump(client_reader, upstream_writer, one_way),
            _pump(upstream_reader, client_writer, one_way),
            return_exceptions=True,
        )

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    listen_port, host, port, round_trip = sys.argv[1:5]
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(int(listen_port), host, int(port), float(round_trip)))


if __name__ == "__main__":
    main()
