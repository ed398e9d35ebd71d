"""The operator's Prometheus metrics, all prefixed `flowable_pool_`: plain module-level objects.

One operator runs per process, so its metrics are module-level objects that every part imports and
updates (unlike the worker, which can be embedded several times in one process and so owns a
registry per `Worker`). They live in this module's own `REGISTRY`, not prometheus-client's global
default one: what the operator's `/metrics` serves is then exactly what is declared here (plus the
process, platform and GC collectors added below), never a metric some imported library registered
globally, and tests can read this registry alone. `serve` exposes it on `/metrics` (aiohttp, beside
`/healthz`, with optional TLS and bearer token) through `PAGE`, which renders it as
`prometheus_client.generate_latest` does, but with the per-pool series from text kept per pool,
written out in pieces, and the rest on a thread (`exposition`, `pool_lines`).

Labels stay bounded. The operator-wide series carry a request kind, an outcome or a reason, never
a job id, URL or error message. The per-pool series (backlog, replicas, decisions, conditions)
carry `namespace` and `pool`: one series per pool, as KEDA labels per ScaledObject, bounded by the
pools that exist because `forget_pool` removes a deleted pool's series.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Literal

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from flowable_worker._version import __version__
from flowable_worker_operator.exposition import OrderedRegistry, Page, PrerenderedCollector
from flowable_worker_operator.pool_lines import (
    POOL_LABELS,
    LinesSnapshot,
    PoolFamily,
    PoolKey,
    PoolLines,
    Sample,
)
from flowable_worker_operator.scaling import Backlog, Decision
from flowable_worker_operator.status import CONDITION_TYPES

PREFIX = "flowable_pool_"

REGISTRY = OrderedRegistry()
"""Everything the operator exposes on `/metrics`."""

# The process, platform and GC views prometheus-client's default registry has, here as well.
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

ProbeKind = Literal["count", "lock_owners", "oldest_waiting", "discovery"]
"""What a probe request asked: a job count, a page of locked jobs, the longest-waiting job, or the
model repository."""

_PROBE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

PROBE_REQUESTS = Counter(
    PREFIX + "probe_requests",
    "Requests the operator sent to Flowable to measure backlog, by kind and result (ok, error); "
    "a client-side retry is part of one request",
    ["kind", "result"],
    registry=REGISTRY,
)
PROBE_REQUEST_DURATION = Histogram(
    PREFIX + "probe_request_duration_seconds",
    "Duration of the operator's requests to Flowable to measure backlog, retries included",
    ["kind"],
    buckets=_PROBE_BUCKETS,
    registry=REGISTRY,
)
DISCOVERY_DEFINITIONS = Gauge(
    PREFIX + "discovery_definitions",
    "Process and case definitions whose parsed model is cached by topic discovery",
    registry=REGISTRY,
)
LEADER = Gauge(
    PREFIX + "leader",
    "1 while this operator process acts on pools (it holds the leader-election Lease, or leader "
    "election is off), 0 while it waits as a standby",
    registry=REGISTRY,
)
SHARDS_OWNED = Gauge(
    PREFIX + "shards_owned",
    "shards of the pools this operator process acts on, with --shards (one Lease each); summed "
    "over the operator's pods it should equal --shards",
    registry=REGISTRY,
)
FIRST_TICKS_WAITING = Gauge(
    PREFIX + "first_ticks_waiting",
    "New pools due for their first tick and waiting for one of the operator's first-tick slots "
    "(handlers.FIRST_TICKS): above 0 only while many pools come together (created at once, or "
    "an operator start)",
    registry=REGISTRY,
)
RESPONSES_REFUSED = Counter(
    PREFIX + "responses_refused",
    "Answers from Flowable the operator refused to read: reason=too_large (over its size limit) "
    "or compressed (although it asked for none)",
    ["reason"],
    registry=REGISTRY,
)
BUILD_INFO = Gauge(
    PREFIX + "build_info",
    "Always 1, labelled with the operator's version: which build each operator pod runs (e.g. "
    "during a rollout), joinable onto other series",
    ["version"],
    registry=REGISTRY,
)
BUILD_INFO.labels(version=__version__).set(1)
SHARED_ANSWERS = Counter(
    PREFIX + "shared_answers",
    "Backlog questions answered by another pool's identical request (in flight or fresh)",
    registry=REGISTRY,
)


@contextmanager
def observe_probe_request(kind: ProbeKind) -> Iterator[None]:
    """Count one request to Flowable and time it; an exception leaving the block is an error.

    A cancelled request (the operator stopping, a caller giving up) is not counted at all: it says
    nothing about Flowable.
    """
    started = time.perf_counter()
    try:
        yield
    except asyncio.CancelledError:
        raise
    except BaseException:
        _finish(kind, started, "error")
        raise
    _finish(kind, started, "ok")


def _finish(kind: ProbeKind, started: float, result: Literal["ok", "error"]) -> None:
    PROBE_REQUEST_DURATION.labels(kind=kind).observe(time.perf_counter() - started)
    PROBE_REQUESTS.labels(kind=kind, result=result).inc()


# --- per pool ---------------------------------------------------------------------------------
# Labelled by namespace and pool: one series per pool, as KEDA labels per ScaledObject. A pool's
# series are removed when its ticks stop, so deleted pools do not linger on /metrics.
#
# The series every tick sets (backlog, replicas, bounds, probe failures, decisions, conditions)
# are not prometheus_client children but one record per pool (`_PoolSeries`): a child is an
# object with its own locks, and a pool had about thirty of them (eighteen for its conditions
# alone), ~7 KB per pool and a `labels()` look-up for each at every tick. The record's families
# are also kept as text (`pool_lines`), re-rendered per pool and family only when a tick changes
# them, which is what /metrics serves (`exposition`). The rare ones (scale changes, tick errors)
# stay ordinary labelled counters.

_POOL_LABELS = POOL_LABELS
_CONDITION_STATUSES = ("True", "False", "Unknown")


@dataclass
class _Pool:
    """What the last ticks published for one pool; None: never published (no series)."""

    backlog: Backlog | None = None
    replicas: int | None = None
    desired_replicas: int | None = None
    workload_replicas: int | None = None
    replica_bounds: tuple[int, int] | None = None
    probe_failures: int | None = None
    conditions: dict[str, str] = field(default_factory=dict)
    """Condition type -> its status (True, False, Unknown), for the operator's own types."""
    decisions: dict[str, list[float]] = field(default_factory=dict)
    """Reason -> [decisions so far, when the series was created]."""


def _one(value: int | None) -> list[Sample]:
    return [] if value is None else [Sample((), value)]


def _backlog(pool: _Pool) -> list[Sample]:
    if pool.backlog is None:
        return []
    return [Sample(("unlocked",), pool.backlog.unlocked), Sample(("locked",), pool.backlog.locked)]


def _bound(pool: _Pool, which: int) -> list[Sample]:
    return _one(None if pool.replica_bounds is None else pool.replica_bounds[which])


def _conditions(pool: _Pool) -> list[Sample]:
    return [
        Sample((kind, text), 1 if text == current else 0)
        for kind, current in pool.conditions.items()
        for text in _CONDITION_STATUSES
    ]


def _decisions(pool: _Pool) -> list[Sample]:
    return [
        Sample((reason,), count, created) for reason, (count, created) in pool.decisions.items()
    ]


_FAMILIES: tuple[tuple[PoolFamily, Callable[[_Pool], list[Sample]]], ...] = (
    (
        PoolFamily(
            PREFIX + "backlog_jobs",
            "Jobs of the pool's topic at the last successful probe: state=unlocked (waiting) or "
            "locked (in flight)",
            ("state",),
        ),
        _backlog,
    ),
    (
        PoolFamily(PREFIX + "replicas", "Replicas of the pool's workload after the last tick"),
        lambda pool: _one(pool.replicas),
    ),
    (
        PoolFamily(PREFIX + "desired_replicas", "Replicas the last decision asked for"),
        lambda pool: _one(pool.desired_replicas),
    ),
    (
        PoolFamily(
            PREFIX + "workload_replicas",
            "Replicas the pool's workload reports in its /scale status (pods that exist, ready "
            "or not)",
        ),
        lambda pool: _one(pool.workload_replicas),
    ),
    (
        PoolFamily(PREFIX + "min_replicas", "The pool's spec.scaling.minReplicas"),
        lambda pool: _bound(pool, 0),
    ),
    (
        PoolFamily(PREFIX + "max_replicas", "The pool's spec.scaling.maxReplicas"),
        lambda pool: _bound(pool, 1),
    ),
    (
        PoolFamily(
            PREFIX + "probe_consecutive_failures",
            "Backlog probes failed in a row (0 after a success); the fallback starts at its "
            "threshold",
        ),
        lambda pool: _one(pool.probe_failures),
    ),
    (
        PoolFamily(
            PREFIX + "condition",
            "The pool's status conditions after the last tick, as kube-state-metrics shows a "
            "pod's: 1 on the series of the condition's status (True, False, Unknown), 0 on the "
            "other two",
            ("condition", "status"),
        ),
        _conditions,
    ),
    (
        PoolFamily(
            PREFIX + "decisions",
            "Scaling decisions by reason (ScaleUp, ScaleDown, Stable, Idle, Activated, "
            "CooledDown, Fallback, Paused, ProbeFailedHolding)",
            ("reason",),
            counter=True,
        ),
        _decisions,
    ),
)
"""Each per-pool family and how a pool's record gives its samples; the indices below name them."""

(_BACKLOG, _REPLICAS, _DESIRED, _WORKLOAD, _MIN, _MAX, _FAILURES, _CONDITION, _DECISIONS) = range(
    len(_FAMILIES)
)


class _PoolSeries(PrerenderedCollector):
    """The per-pool series every tick sets: a record per pool, and its families' text.

    `collect` builds prometheus_client families from the records (for `get_sample_value` and
    `generate_latest(REGISTRY)`); it iterates the records, so it runs on the event loop, where
    `record` runs. /metrics serves the text instead (`snapshot`, joined as it is written)."""

    def __init__(self) -> None:
        self.pools: dict[PoolKey, _Pool] = {}
        self.lines = PoolLines([family for family, _ in _FAMILIES])

    def describe(self) -> list[Metric]:
        return self._families(include_pools=False)

    def collect(self) -> list[Metric]:
        return self._families(include_pools=True)

    def snapshot(self) -> LinesSnapshot:
        return self.lines.snapshot()

    def _families(self, *, include_pools: bool) -> list[Metric]:
        families: list[Metric] = []
        for family, samples_of in _FAMILIES:
            labels = [*_POOL_LABELS, *family.labels]
            if family.counter:
                counter = CounterMetricFamily(family.name, family.documentation, labels=labels)
                if include_pools:
                    for key, pool in self.pools.items():
                        for sample in samples_of(pool):
                            counter.add_metric([*key, *sample.labels], sample.value, sample.created)
                families.append(counter)
            else:
                gauge = GaugeMetricFamily(family.name, family.documentation, labels=labels)
                if include_pools:
                    for key, pool in self.pools.items():
                        for sample in samples_of(pool):
                            gauge.add_metric([*key, *sample.labels], sample.value)
                families.append(gauge)
        return families

    def record(
        self,
        key: PoolKey,
        *,
        backlog: Backlog | None,
        replicas: int | None,
        workload_replicas: int | None,
        replica_bounds: tuple[int, int] | None,
        decision: Decision | None,
        probe_failures: int,
        conditions: Iterable[Mapping[str, Any]],
    ) -> None:
        """`record_tick`'s record of one tick: the record updated, and the text of the families
        whose samples changed rendered again (an idle pool's: its decision counter only)."""
        record = self.pools.get(key)
        changed: set[int] = set()
        if record is None:
            record = self.pools[key] = _Pool()
            self.lines.add(key)
        if backlog is not None:
            old = record.backlog
            if old is None or (old.unlocked, old.locked) != (backlog.unlocked, backlog.locked):
                changed.add(_BACKLOG)
            record.backlog = backlog
        if replicas is not None and replicas != record.replicas:
            record.replicas = replicas
            changed.add(_REPLICAS)
        if workload_replicas is not None and workload_replicas != record.workload_replicas:
            record.workload_replicas = workload_replicas
            changed.add(_WORKLOAD)
        if replica_bounds is not None and replica_bounds != record.replica_bounds:
            record.replica_bounds = replica_bounds
            changed.update((_MIN, _MAX))
        if decision is not None:
            if decision.desired_replicas != record.desired_replicas:
                record.desired_replicas = decision.desired_replicas
                changed.add(_DESIRED)
            reason = str(decision.reason)
            counted = record.decisions.get(reason)
            if counted is None:
                record.decisions[reason] = [1.0, time.time()]
            else:
                counted[0] += 1
            changed.add(_DECISIONS)
        if probe_failures != record.probe_failures:
            record.probe_failures = probe_failures
            changed.add(_FAILURES)
        for condition in conditions:
            kind = condition.get("type")
            if kind in CONDITION_TYPES:
                current = condition.get("status")
                status = current if current in _CONDITION_STATUSES else "Unknown"
                if record.conditions.get(str(kind)) != status:
                    record.conditions[str(kind)] = status
                    changed.add(_CONDITION)
        for family in changed:
            self.lines.set(key, family, _FAMILIES[family][1](record))

    def forget(self, key: PoolKey) -> None:
        self.pools.pop(key, None)
        self.lines.forget(key)


_POOL_SERIES = _PoolSeries()
REGISTRY.register(_POOL_SERIES)

POOL_SCALE_CHANGES = Counter(
    PREFIX + "scale_changes",
    "Replica changes the operator applied, by direction (up, down)",
    [*_POOL_LABELS, "direction"],
    registry=REGISTRY,
)
TICK_ERRORS = Counter(
    PREFIX + "tick_errors",
    "Ticks that failed unexpectedly (e.g. the API server refused a write); the pool is retried",
    _POOL_LABELS,
    registry=REGISTRY,
)


def record_tick(
    namespace: str,
    pool: str,
    *,
    backlog: Backlog | None,
    replicas: int | None,
    workload_replicas: int | None,
    replica_bounds: tuple[int, int] | None,
    decision: Decision | None,
    probe_failures: int,
    conditions: Iterable[Mapping[str, Any]],
    change: int,
) -> None:
    """Publish one tick's result for the pool; None leaves that series as it was.

    Conditions: one series per (condition, status) of the operator's own conditions, so that
    `flowable_pool_condition{condition="Ready",status="False"} == 1` selects pools that are not
    Ready; a status outside True/False/Unknown reads Unknown. A condition of another type
    (someone else's) is left out: its name is not ours to bound."""
    _POOL_SERIES.record(
        (namespace, pool),
        backlog=backlog,
        replicas=replicas,
        workload_replicas=workload_replicas,
        replica_bounds=replica_bounds,
        decision=decision,
        probe_failures=probe_failures,
        conditions=conditions,
    )
    if change:
        direction = "up" if change > 0 else "down"
        POOL_SCALE_CHANGES.labels(namespace=namespace, pool=pool, direction=direction).inc()


def forget_pool(namespace: str, pool: str) -> None:
    """Drop a deleted pool's series."""
    _POOL_SERIES.forget((namespace, pool))
    series: list[tuple[Counter, tuple[str, ...]]] = [(TICK_ERRORS, ())]
    series += [(POOL_SCALE_CHANGES, (direction,)) for direction in ("up", "down")]
    for metric, extra in series:
        with suppress(KeyError):
            metric.remove(namespace, pool, *extra)


PAGE = Page(REGISTRY)
"""`/metrics`: the registry rendered off the event loop, the per-pool series from their text."""
