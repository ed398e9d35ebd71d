"""The operator's /metrics page (`exposition.Page`): what `generate_latest` renders, taken at one
moment, with the per-pool text written out in bounded pieces and the rest rendered on a thread of
its own while the event loop goes on.

At 10,000 pools an inline render stalled every pool's tick for 7 to 9 s, and the page joined whole
was 31 MB a scrape (issue 11)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable

import httpx
import pytest
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from flowable_worker_operator import main as cli
from flowable_worker_operator import metrics
from flowable_worker_operator.exposition import OrderedRegistry, Page, PrerenderedCollector
from flowable_worker_operator.pool_lines import CHUNK_POOLS
from flowable_worker_operator.scaling import Backlog, Decision, History, Reason
from flowable_worker_operator.serve import _start_http
from flowable_worker_operator.status import CONDITION_TYPES
from localstack.cluster import free_port

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


def _registry(series: Collector, *, plain: Collector | None = None) -> OrderedRegistry:
    """Plain metrics before and after the prerendered one, as in the operator's registry."""
    registry = OrderedRegistry()
    before = Counter("before_requests", "Before the pools", ["kind"], registry=registry)
    before.labels(kind='a"b').inc()
    if plain is not None:
        registry.register(plain)
    registry.register(series)
    after = Gauge("after_pools", "After the pools\\ with a backslash", ["pool"], registry=registry)
    after.labels(pool="x").set(2)
    return registry


def _series(pools: int) -> metrics._PoolSeries:
    series = metrics._PoolSeries()
    for index in range(pools):
        _tick(series, "bench", f"pool-{index:05d}", unlocked=index % 7)
    return series


async def test_the_page_is_what_generate_latest_renders_of_the_whole_registry() -> None:
    series = _series(CHUNK_POOLS * 2 + 5)  # more than one piece per family
    series.forget(("bench", "pool-00002"))
    registry = _registry(series)

    assert (await Page(registry).render()).text() == generate_latest(registry)


async def test_the_operator_page_lists_the_same_families_as_its_registry() -> None:
    def families(page: bytes) -> list[str]:
        return [line.split()[2] for line in page.decode().splitlines() if line.startswith("# TYPE")]

    page = (await metrics.PAGE.render()).text()
    assert families(page) == families(generate_latest(metrics.REGISTRY))


async def test_the_page_is_the_moment_of_its_render_not_of_its_writing() -> None:
    """Pools ticked while a page is being written (the loop runs between its pieces) show on the
    next page, not half on this one."""
    series = _series(3)
    registry = _registry(series)
    page = await Page(registry).render()
    expected = generate_latest(registry)
    _tick(series, "bench", "pool-00001", unlocked=99)
    series.forget(("bench", "pool-00002"))
    _tick(series, "bench", "later", unlocked=1)

    assert page.text() == expected
    assert b'pool="later"' in (await Page(registry).render()).text()


async def test_ten_thousand_pools_come_in_small_pieces_without_holding_the_event_loop() -> None:
    """What the handler does: write each piece, letting the loop run in between. No piece is
    large (the page is never held whole), and the loop's own lag stays small: a callback every
    millisecond notes how late it ran. The lag bound is loose (the machine may be busy); a render
    on the loop held it for seconds at this size."""
    registry = _registry(_series(10_000))
    loop = asyncio.get_running_loop()
    lags: list[float] = []
    writing = True

    def measure(planned: float) -> None:
        lags.append(time.perf_counter() - planned)
        if writing:
            loop.call_later(0.001, measure, time.perf_counter() + 0.001)

    loop.call_soon(measure, time.perf_counter())
    started = time.perf_counter()
    sizes: list[int] = []
    replicas = 0
    page = await asyncio.wait_for(Page(registry).render(), 60)
    for chunk in page.chunks():
        sizes.append(len(chunk))
        replicas += chunk.count(b"flowable_pool_replicas{")
        await asyncio.sleep(0)  # as `response.write` does
    writing = False
    took = time.perf_counter() - started

    assert replicas == 10_000
    assert max(sizes) < 2**20, f"a piece of {max(sizes)} bytes of a {sum(sizes)}-byte page"
    assert sum(sizes) > 10 * 2**20
    assert len(lags) > 1, f"the loop ran no callback while {took:.2f} s of page were written"
    assert max(lags) < 0.5, f"the loop waited {max(lags):.3f} s while the page was written"


class _Blocking(Collector):
    """A plain collector whose collect waits for `release` (set by the test on the event loop),
    counting its collections and their threads."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.collected = 0
        self.threads: set[int] = set()

    def collect(self) -> Iterable[Metric]:
        self.collected += 1
        self.threads.add(threading.get_ident())
        self.started.set()
        if not self.release.wait(WAIT):
            raise TimeoutError("the event loop did not run while the page was rendered")
        yield GaugeMetricFamily("blocking_value", "A slow collector", value=1)


async def _started(collector: _Blocking) -> None:
    assert await asyncio.to_thread(collector.started.wait, WAIT)


async def test_the_event_loop_runs_while_the_plain_collectors_render() -> None:
    collector = _Blocking()
    page = Page(_registry(metrics._PoolSeries(), plain=collector))

    rendering = asyncio.ensure_future(page.render())
    await _started(collector)
    # Inline, the render would hold the loop until it timed out: this would never run.
    asyncio.get_running_loop().call_soon(collector.release.set)

    assert b"blocking_value 1.0\n" in (await asyncio.wait_for(rendering, WAIT)).text()
    assert threading.get_ident() not in collector.threads


async def test_concurrent_scrapes_each_get_the_whole_page_rendered_on_one_thread() -> None:
    collector = _Blocking()
    series = _series(3)
    registry = _registry(series, plain=collector)
    page = Page(registry)

    first = asyncio.ensure_future(page.render())
    await _started(collector)
    others = [asyncio.ensure_future(page.render()) for _ in range(3)]
    await asyncio.sleep(0)
    collector.release.set()

    pages = await asyncio.wait_for(asyncio.gather(first, *others), WAIT)
    assert collector.collected == 4
    assert len(collector.threads) == 1
    assert len({rendered.text() for rendered in pages}) == 1
    assert pages[0].text() == generate_latest(registry)


async def test_a_scrape_that_gives_up_leaves_the_next_one_whole() -> None:
    collector = _Blocking()
    page = Page(_registry(_series(2), plain=collector))

    gone = asyncio.ensure_future(page.render())
    await _started(collector)
    gone.cancel()
    await asyncio.sleep(0)
    collector.release.set()

    assert b'pool="pool-00001"' in (await asyncio.wait_for(page.render(), WAIT)).text()
    assert gone.cancelled()


class _Failing(Collector):
    """A plain collector whose first collection fails."""

    def __init__(self) -> None:
        self.collected = 0

    def collect(self) -> Iterable[Metric]:
        self.collected += 1
        if self.collected == 1:
            raise RuntimeError("collect failed")
        yield GaugeMetricFamily("failing_value", "Fails once", value=1)


async def test_a_failed_render_fails_its_scrape_before_anything_is_written() -> None:
    page = Page(_registry(_series(1), plain=_Failing()))

    with pytest.raises(RuntimeError, match="collect failed"):
        await page.render()  # the handler has not begun its response yet: a 500

    assert b"failing_value 1.0\n" in (await page.render()).text()


class _Pieces(PrerenderedCollector):
    """Prerendered text in the pieces a test chose."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    def collect(self) -> list[Metric]:
        return []

    def snapshot(self) -> list[bytes]:
        return list(self.pieces)


async def test_the_handler_writes_every_piece_in_order() -> None:
    """Through the operator's HTTP server: a page of many pieces arrives whole, chunked."""
    pieces = [f"# piece {index}\n".encode() * 1000 for index in range(50)]
    collector = _Pieces(pieces)
    metrics.REGISTRY.register(collector)
    port = free_port()
    config = cli.parse_args(["--metrics-host", "127.0.0.1", "--metrics-port", str(port)])
    site = await _start_http(config, healthy=lambda: True)
    try:
        async with httpx.AsyncClient() as http:
            scraped = await http.get(f"http://127.0.0.1:{port}/metrics")
    finally:
        await site.stop()
        metrics.REGISTRY.unregister(collector)
    assert scraped.status_code == 200
    assert scraped.headers["Content-Type"] == CONTENT_TYPE_LATEST
    assert b"".join(pieces) in scraped.content
    assert scraped.content.count(b"# TYPE flowable_pool_replicas gauge\n") == 1
