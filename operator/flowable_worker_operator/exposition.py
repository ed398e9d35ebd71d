"""The operator's `/metrics` page, written out in pieces as they are joined, so that neither a
scrape's rendering stalls the event loop nor its text is ever held whole.

Rendering the page on the event loop (`generate_latest` in the handler) stalled every pool's tick
for 7 to 9 s at each scrape at 10,000 pools (issue 11), so the per-pool series are kept as text
ready to join (`PrerenderedCollector`, `pool_lines`). Joined whole, that text was one 31 MB bytes
object per scrape at 10,000 pools, and with its copies on the way out each scrape raised the
operator's resident memory by about 65 MB until the next `malloc_trim` (docs/benchmarks.md,
"Packed pools, a streamed page, and where the rest is"). Now a scrape (`Page.render`):

- on the event loop, at once, takes a snapshot: the registry's collectors in registration order,
  and for a `PrerenderedCollector` (the per-pool series, whose state the loop changes at every
  tick) the immutable text it hands out, so nothing is read later from state the loop changes;
- renders the other collectors (`generate_latest` over each run of them: few samples) on the
  page's one thread, since prometheus-client's process collector reads /proc, which blocks; a
  failure there fails the scrape before anything is sent;
- and hands back `Rendered`, whose `chunks` join the prerendered text a bounded number of lines at
  a time (iterating `pool_lines.LinesSnapshot`), each written to the client before the next is
  joined: a C-level join of a few hundred kilobytes, between which the loop runs other work.

The page is byte for byte what `generate_latest` over the whole registry renders (the tests check
it). Scrapes at the same moment each take their own snapshot; a snapshot holds references to the
pools' text, not copies (about 1.6 MB of pointers at 10,000 pools).
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

__all__ = ["OrderedRegistry", "Page", "PrerenderedCollector", "Rendered"]


class PrerenderedCollector(Collector):
    """A collector whose exposition text is kept ready: the page writes what `snapshot` returns
    instead of calling `collect` (which stays, for `get_sample_value` and other readers)."""

    @abstractmethod
    def snapshot(self) -> Iterable[bytes]:
        """Called on the event loop: this collector's families as text, in pieces (each small
        enough to join on the loop), from state that the loop no longer changes; iterated later,
        on the loop, as the page is written."""


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


@dataclass(frozen=True)
class Rendered:
    """One scrape's page: rendered text and prerendered snapshots, in registration order."""

    parts: tuple[bytes | Iterable[bytes], ...]

    def chunks(self) -> Iterator[bytes]:
        """The page's text in order, each piece joined only when asked for."""
        for part in self.parts:
            if isinstance(part, bytes):
                yield part
            else:
                yield from part

    def text(self) -> bytes:
        """The whole page at once (for tests and small registries)."""
        return b"".join(self.chunks())


class Page:
    """The `/metrics` page of one registry; `render` from the event loop."""

    def __init__(self, registry: OrderedRegistry) -> None:
        self._registry = registry
        self._thread: ThreadPoolExecutor | None = None

    async def render(self) -> Rendered:
        """The snapshot, now, and the plain collectors rendered on the page's thread."""
        pending: list[asyncio.Future[bytes] | Iterable[bytes]] = []
        plain: list[Collector] = []
        for collector in self._registry.collectors():
            if isinstance(collector, PrerenderedCollector):
                if plain:
                    pending.append(self._generate(plain))
                    plain = []
                pending.append(collector.snapshot())
            else:
                plain.append(collector)
        if plain:
            pending.append(self._generate(plain))
        parts: list[bytes | Iterable[bytes]] = []
        try:
            for part in pending:
                parts.append(await part if isinstance(part, asyncio.Future) else part)
        finally:
            for part in pending:
                if isinstance(part, asyncio.Future) and not part.done():
                    part.cancel()  # a scrape gone: its renders not yet begun are not begun
        return Rendered(tuple(parts))

    def _generate(self, collectors: list[Collector]) -> asyncio.Future[bytes]:
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics-page")
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._thread, generate_latest, _Together(collectors))
