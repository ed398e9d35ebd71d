"""The operator's /metrics page (`exposition.Page`): what `generate_latest` renders, but rendered
on a thread of its own, one render at a time, while the event loop goes on.

At 10,000 pools an inline render stalled every pool's tick for 7 to 9 s (issue 11)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest
from prometheus_client import Counter, Gauge, generate_latest
from prometheus_client.metrics_core import Metric

from flowable_worker_operator import metrics
from flowable_worker_operator.exposition import OrderedRegistry, Page, PrerenderedCollector
from flowable_worker_operator.scaling import Backlog, Decision, History, Reason
from flowable_worker_operator.status import CONDITION_TYPES

WAIT = 10.0
"""How long a test waits for what must happen at once before it fails instead of hanging."""


def _tick(series: metrics._PoolSeries, namespace: str, pool: str, unlocked: int = 0) -> None:
    series.record(
        (namespace, pool),
        backlog=Backlog(unlocked=unlocked, locked=0),
        replicas=1,
        workload_replicas=1,
        replica_bounds=(0, 10),
        decision=Decision(desired_replicas=1, reason=Reason.STABLE, message="", history=History()),
        probe_failures=0,
        conditions=[{"type": kind, "status": "True"} for kind in CONDITION_TYPES],
    )


def _registry(series: PrerenderedCollector) -> OrderedRegistry:
    """Plain metrics before and after the prerendered one, as in the operator's registry."""
    registry = OrderedRegistry()
    before = Counter("before_requests", "Before the pools", ["kind"], registry=registry)
    before.labels(kind='a"b').inc()
    registry.register(series)
    after = Gauge("after_pools", "After the pools\\ with a backslash", ["pool"], registry=registry)
    after.labels(pool="x").set(2)
    return registry


async def test_the_page_is_what_generate_latest_renders_of_the_whole_registry() -> None:
    series = metrics._PoolSeries()
    for index in range(5):
        _tick(series, "shop", f"pool-{index}", unlocked=index)
    series.forget(("shop", "pool-2"))
    registry = _registry(series)

    assert await Page(registry).render() == generate_latest(registry)


async def test_the_operator_page_lists_the_same_families_as_its_registry() -> None:
    def families(page: bytes) -> list[str]:
        return [line.split()[2] for line in page.decode().splitlines() if line.startswith("# TYPE")]

    page = await metrics.PAGE.render()
    assert families(page) == families(generate_latest(metrics.REGISTRY))


class _Blocking(PrerenderedCollector):
    """Prerendered text whose render waits for `release` (set by the test on the event loop) and
    counts its renders and their threads."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.renders = 0
        self.threads: set[int] = set()

    def collect(self) -> list[Metric]:
        return []

    def snapshot(self) -> Callable[[], bytes]:
        def render() -> bytes:
            self.renders += 1
            self.threads.add(threading.get_ident())
            self.started.set()
            if not self.release.wait(WAIT):
                raise TimeoutError("the event loop did not run while the page was rendered")
            return b"# prerendered\n"

        return render


async def _started(collector: _Blocking) -> None:
    assert await asyncio.to_thread(collector.started.wait, WAIT)


async def test_the_event_loop_runs_while_the_page_is_rendered() -> None:
    collector = _Blocking()
    page = Page(_registry(collector))

    rendering = asyncio.ensure_future(page.render())
    await _started(collector)
    # Inline, the render would hold the loop until it timed out: this would never run.
    asyncio.get_running_loop().call_soon(collector.release.set)

    assert b"# prerendered\n" in await asyncio.wait_for(rendering, WAIT)
    assert threading.get_ident() not in collector.threads


async def test_concurrent_scrapes_share_one_render_on_one_thread() -> None:
    collector = _Blocking()
    page = Page(_registry(collector))

    first = asyncio.ensure_future(page.render())
    await _started(collector)
    others = [asyncio.ensure_future(page.render()) for _ in range(3)]
    await asyncio.sleep(0)
    collector.release.set()

    pages = await asyncio.wait_for(asyncio.gather(first, *others), WAIT)
    assert collector.renders == 1
    assert len(set(pages)) == 1
    collector.started.clear()
    collector.release.clear()
    later = asyncio.ensure_future(page.render())  # once done, the next scrape renders anew
    await _started(collector)
    collector.release.set()
    await asyncio.wait_for(later, WAIT)
    assert collector.renders == 2
    assert len(collector.threads) == 1


async def test_a_scrape_that_gives_up_leaves_the_render_to_the_others() -> None:
    collector = _Blocking()
    page = Page(_registry(collector))

    gone = asyncio.ensure_future(page.render())
    await _started(collector)
    waiting = asyncio.ensure_future(page.render())
    gone.cancel()
    await asyncio.sleep(0)
    collector.release.set()

    assert b"# prerendered\n" in await asyncio.wait_for(waiting, WAIT)
    assert gone.cancelled()
    assert collector.renders == 1


async def test_ten_thousand_pools_render_without_holding_the_event_loop() -> None:
    """The loop's own lag while 10,000 pools are rendered: a callback every millisecond notes how
    late it ran. The bound is loose (the thread shares the GIL, and the machine may be busy); an
    inline render held the loop for the whole render, seconds at this size."""
    series = metrics._PoolSeries()
    for index in range(10_000):
        _tick(series, "bench", f"pool-{index:05d}")
    page = Page(_registry(series))
    loop = asyncio.get_running_loop()
    lags: list[float] = []
    rendering = asyncio.ensure_future(page.render())

    def measure(planned: float) -> None:
        lags.append(time.perf_counter() - planned)
        if not rendering.done():
            loop.call_later(0.001, measure, time.perf_counter() + 0.001)

    loop.call_soon(measure, time.perf_counter())
    started = time.perf_counter()
    body = await asyncio.wait_for(rendering, 60)
    took = time.perf_counter() - started

    assert body.count(b"\nflowable_pool_replicas{") == 10_000
    assert len(lags) > 1, f"the loop ran no callback during a {took:.2f} s render"
    assert max(lags) < 0.5, f"the loop waited {max(lags):.3f} s during a {took:.2f} s render"


class _Failing(PrerenderedCollector):
    """Prerendered text whose first render fails."""

    def __init__(self) -> None:
        self.renders = 0

    def collect(self) -> list[Metric]:
        return []

    def snapshot(self) -> Callable[[], bytes]:
        def render() -> bytes:
            self.renders += 1
            if self.renders == 1:
                raise RuntimeError("render failed")
            return b"# prerendered\n"

        return render


async def test_a_failed_render_fails_its_scrapes_and_the_next_scrape_renders_anew() -> None:
    collector = _Failing()
    page = Page(_registry(collector))

    with pytest.raises(RuntimeError, match="render failed"):
        await page.render()

    assert b"# prerendered\n" in await page.render()
