"""The operator's `/metrics` page, rendered on a thread of its own so that no scrape stalls the
event loop, and at most one render at a time.

Rendering the page on the event loop (`generate_latest` in the handler) stalled every pool's tick
for 7 to 9 s at each scrape at 10,000 pools (issue 11). Now the handler awaits `Page.render`:

- on the event loop, only a snapshot: the registry's collectors in registration order, and for a
  `PrerenderedCollector` (the per-pool series, whose state the loop changes at every tick) the
  immutable text it hands out (`PrerenderedCollector.snapshot`), so no thread ever iterates a
  dict the loop is changing;
- on the page's one thread, the rest: `generate_latest` over the other collectors (prometheus-
  client's metrics are thread-safe, and the process collector reads /proc, which blocks) and the
  join of the prerendered text, in registration order, so the page is byte for byte what
  `generate_latest` over the whole registry renders;
- a scrape that arrives while a render is running gets that render's page instead of starting
  another (its snapshot is at most one render old), so concurrent scrapes never pile up threads,
  and a scrape whose client went away leaves the render running for the others.

The thread still takes the GIL, but it gives it back to the loop at every switch interval (5 ms)
and between the C-level joins, instead of holding the loop for the whole render.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

__all__ = ["OrderedRegistry", "Page", "PrerenderedCollector"]

Part = Callable[[], bytes]
"""One piece of the page, run on the page's thread."""


class PrerenderedCollector(Collector):
    """A collector whose exposition text is kept ready: the page joins what `snapshot` returns
    instead of calling `collect` (which stays, for `get_sample_value` and other readers)."""

    @abstractmethod
    def snapshot(self) -> Part:
        """Called on the event loop; returns what renders this collector's families as text on
        another thread, from state that the loop no longer changes."""


class OrderedRegistry(CollectorRegistry):
    """A `CollectorRegistry` that lists its collectors in registration order, the order
    `generate_latest` renders them in, so the page can render each in its place."""

    def __init__(self) -> None:
        super().__init__()
        self._order: list[Collector] = []

    def register(self, collector: Collector) -> None:
        super().register(collector)
        self._order.append(collector)

    def unregister(self, collector: Collector) -> None:
        super().unregister(collector)
        self._order.remove(collector)

    def collectors(self) -> tuple[Collector, ...]:
        return tuple(self._order)


class _Together(Collector):
    """Several collectors collected as one, for one `generate_latest` call."""

    def __init__(self, collectors: Iterable[Collector]) -> None:
        self._collectors = tuple(collectors)

    def collect(self) -> Iterable[Metric]:
        for collector in self._collectors:
            yield from collector.collect()


class Page:
    """The `/metrics` page of one registry; `render` from the event loop."""

    def __init__(self, registry: OrderedRegistry) -> None:
        self._registry = registry
        self._thread: ThreadPoolExecutor | None = None
        self._rendering: asyncio.Future[bytes] | None = None

    def parts(self) -> list[Part]:
        """The snapshot, on the event loop: for each run of plain collectors one `generate_latest`
        over them, for each prerendered one its text as of now, in registration order."""
        parts: list[Part] = []
        plain: list[Collector] = []
        for collector in self._registry.collectors():
            if isinstance(collector, PrerenderedCollector):
                if plain:
                    parts.append(partial(generate_latest, _Together(plain)))
                    plain = []
                parts.append(collector.snapshot())
            else:
                plain.append(collector)
        if plain:
            parts.append(partial(generate_latest, _Together(plain)))
        return parts

    async def render(self) -> bytes:
        """The page: the render in progress if there is one, else a new one."""
        loop = asyncio.get_running_loop()
        rendering = self._rendering
        if rendering is None or rendering.get_loop() is not loop:
            if self._thread is None:
                self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics-page")
            rendering = loop.run_in_executor(self._thread, _join, self.parts())
            rendering.add_done_callback(self._done)
            self._rendering = rendering
        return await asyncio.shield(rendering)

    def _done(self, rendering: asyncio.Future[bytes]) -> None:
        if self._rendering is rendering:
            self._rendering = None
        if not rendering.cancelled():
            rendering.exception()  # retrieved: every scrape waiting on it gave up is no error


def _join(parts: list[Part]) -> bytes:
    return b"".join(part() for part in parts)
