"""What running sync handlers on `HandlerThreads` costs, against the ThreadPoolExecutor it replaced.

The worker used to run sync handlers with `loop.run_in_executor(ThreadPoolExecutor(concurrency))`.
`HandlerThreads` (worker/flowable_worker/handler_threads.py) replaced it so that a hung handler
never starves the jobs after it; this measures what the dispatch itself costs per call, with a
handler that does nothing, `concurrency` calls in flight at once, both pools in the same process,
run alternately so that machine load hits both alike. Prints one line per round and the medians.

    .venv/bin/python bench/handler_threads.py [--calls 20000] [--concurrency 16] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from flowable_worker.handler_threads import HandlerThreads


def _noop() -> None:
    return None


async def _drive(call: Callable[[], Awaitable[None]], calls: int, concurrency: int) -> float:
    """Seconds for `calls` calls with `concurrency` of them in flight at any time."""
    remaining = calls

    async def lane() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return time.perf_counter() - started


async def _round(calls: int, concurrency: int) -> tuple[float, float]:
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(max_workers=concurrency)
    threads = HandlerThreads()

    async def via_executor() -> None:
        await loop.run_in_executor(executor, _noop)

    async def via_threads() -> None:
        await threads.run(_noop)

    try:
        executor_seconds = await _drive(via_executor, calls, concurrency)
        threads_seconds = await _drive(via_threads, calls, concurrency)
    finally:
        executor.shutdown()
        threads.shutdown()
    return executor_seconds, threads_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    per_call: dict[str, list[float]] = {"ThreadPoolExecutor": [], "HandlerThreads": []}
    for number in range(1, args.rounds + 1):
        executor_seconds, threads_seconds = asyncio.run(_round(args.calls, args.concurrency))
        per_call["ThreadPoolExecutor"].append(executor_seconds / args.calls * 1e6)
        per_call["HandlerThreads"].append(threads_seconds / args.calls * 1e6)
        print(
            f"round {number}: ThreadPoolExecutor {per_call['ThreadPoolExecutor'][-1]:.1f} us/call, "
            f"HandlerThreads {per_call['HandlerThreads'][-1]:.1f} us/call"
        )
    for name, values in per_call.items():
        print(f"median {name}: {statistics.median(values):.1f} us/call "
              f"({args.calls} calls, {args.concurrency} in flight, {args.rounds} rounds)")


if __name__ == "__main__":
    main()
