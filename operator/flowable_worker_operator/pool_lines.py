"""The per-pool families' Prometheus text, kept per pool and rendered only when a pool's samples
change.

At 10,000 pools the per-pool families hold about 260,000 samples. Building them as
prometheus_client families and formatting every sample at each scrape took 7 to 9 s, although
almost none had changed since the last scrape: an idle pool's backlog, replicas, bounds and
conditions stay as they were, and only its decision counter moves. So `PoolLines` keeps, for each
family and each pool, that pool's lines of the family as bytes, rendered by `set` when the tick
that changed them calls it (a few microseconds), and a scrape only takes `snapshot` (on the event
loop: a C-level copy of each family's dict's values, so nothing later iterates a dict the loop
changes) and joins it a few hundred pools at a time as the page is written (`LinesSnapshot`,
`exposition`).

The text is what `prometheus_client.generate_latest` (text format 0.0.4) makes of the same samples,
byte for byte: labels sorted by name, label values and HELP escaped and values formatted as it does
them, each family's samples contiguous under one HELP and TYPE, the pools in the order they were
added; a counter's samples are `<name>_total`, and its `_created` samples follow under a gauge
family of their own, present only when there is at least one (tests/unit/operator/
test_pool_lines.py checks this against prometheus-client's own rendering).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from prometheus_client.utils import floatToGoString

__all__ = [
    "CHUNK_POOLS",
    "POOL_LABELS",
    "LinesSnapshot",
    "PoolFamily",
    "PoolKey",
    "PoolLines",
    "Sample",
]

PoolKey = tuple[str, str]
"""(namespace, pool): the two labels every per-pool sample starts with."""

POOL_LABELS = ("namespace", "pool")

CHUNK_POOLS = 256
"""Pools' lines joined into one piece of the page: at most about 0.5 MB (a pool's conditions are
its longest lines, about 1.8 KB), a join of well under a millisecond."""


@dataclass(frozen=True)
class PoolFamily:
    """A per-pool family: its name (a counter's without `_total`), HELP, and the labels its samples
    carry after `namespace` and `pool`."""

    name: str
    documentation: str
    labels: tuple[str, ...] = ()
    counter: bool = False


class Sample(NamedTuple):
    """One sample of a pool: the values of the family's own labels, the value, and for a counter
    when it was created (Unix time)."""

    labels: tuple[str, ...]
    value: float
    created: float | None = None


_format_value: Callable[[float], str] = floatToGoString  # untyped in prometheus-client


def _escape(value: str) -> str:
    """A label value as prometheus-client escapes it in the text format."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _header(name: str, documentation: str, kind: str) -> bytes:
    text = documentation.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {name} {text}\n# TYPE {name} {kind}\n".encode()


@dataclass(frozen=True)
class _Section:
    """One run of lines under one HELP/TYPE: a gauge's samples, a counter's `_total` or its
    `_created` samples. `optional`: the header only when there is a line (`_created`)."""

    header: bytes
    optional: bool = False


class _Template:
    """How one family's lines are written: sample names, and the label pairs in sorted order as a
    `str.format` template over (namespace, pool, *labels) values, built once per family."""

    def __init__(self, family: PoolFamily) -> None:
        self.counter = family.counter
        self.name = family.name + "_total" if family.counter else family.name
        self.created_name = family.name + "_created"
        names = (*POOL_LABELS, *family.labels)
        pairs = sorted(enumerate(names), key=lambda pair: pair[1])
        self.labels = ",".join(f'{name}="{{{index}}}"' for index, name in pairs)
        text = family.documentation
        self.sections = [_Section(_header(self.name, text, "counter" if self.counter else "gauge"))]
        if family.counter:
            self.sections.append(_Section(_header(self.created_name, text, "gauge"), optional=True))

    def render(self, key: PoolKey, samples: Sequence[Sample]) -> tuple[bytes, bytes]:
        """The pool's lines of the family, and (for a counter) of its `_created` samples."""
        namespace, pool = _escape(key[0]), _escape(key[1])
        lines: list[str] = []
        created: list[str] = []
        for sample in samples:
            labels = self.labels.format(namespace, pool, *map(_escape, sample.labels))
            lines.append(f"{self.name}{{{labels}}} {_format_value(sample.value)}\n")
            if self.counter and sample.created is not None:
                when = _format_value(sample.created)
                created.append(f"{self.created_name}{{{labels}}} {when}\n")
        return "".join(lines).encode(), "".join(created).encode()


@dataclass(frozen=True)
class LinesSnapshot:
    """Each section's header and every pool's lines of it at one moment: immutable lists of
    immutable bytes, safe to join on any thread and at any later time. Iterating it gives the
    families' text in pieces of at most `CHUNK_POOLS` pools' lines each."""

    sections: tuple[tuple[_Section, list[bytes]], ...]

    def __iter__(self) -> Iterator[bytes]:
        for section, lines in self.sections:
            if section.optional and not any(lines):
                continue
            yield section.header
            for start in range(0, len(lines), CHUNK_POOLS):
                yield b"".join(lines[start : start + CHUNK_POOLS])

    def render(self) -> bytes:
        """The families' text, whole."""
        return b"".join(self)


class PoolLines:
    """Every pool's lines of each family, as of the last `set` of each.

    Not thread-safe: `add`, `set`, `forget` and `snapshot` run on the event loop; only a snapshot
    goes to another thread. `renders` counts the (pool, family) texts rendered, which is what the
    tests and the benchmark read to tell an idle pool from a changed one."""

    def __init__(self, families: Sequence[PoolFamily]) -> None:
        self._templates = [_Template(family) for family in families]
        sections: list[_Section] = []
        self._first: list[int] = []
        for template in self._templates:
            self._first.append(len(sections))
            sections += template.sections
        self._sections = tuple(sections)
        self._lines: tuple[dict[PoolKey, bytes], ...] = tuple({} for _ in sections)
        self.renders = 0

    def add(self, key: PoolKey) -> None:
        """Give a new pool its place in every family, after the pools already there (its lines
        empty until `set`), so that each family lists the pools in one order."""
        if key not in self._lines[0]:
            for lines in self._lines:
                lines[key] = b""

    def set(self, key: PoolKey, family: int, samples: Sequence[Sample]) -> None:
        """Render the pool's samples of `family` (an index into the families) in place of its
        previous lines; a pool not yet added is added."""
        self.add(key)
        first = self._first[family]
        lines, created = self._templates[family].render(key, samples)
        self._lines[first][key] = lines
        if self._templates[family].counter:
            self._lines[first + 1][key] = created
        self.renders += 1

    def forget(self, key: PoolKey) -> None:
        """Drop the pool's lines from every family."""
        for lines in self._lines:
            lines.pop(key, None)

    def __len__(self) -> int:
        return len(self._lines[0])

    def snapshot(self) -> LinesSnapshot:
        """The lines as they are now, to render elsewhere: copies of the lists, not of the text."""
        return LinesSnapshot(
            tuple(
                (section, list(lines.values()))
                for section, lines in zip(self._sections, self._lines, strict=True)
            )
        )
