"""The operator's Prometheus metrics, all prefixed `flowable_pool_`: plain module-level objects.

One operator runs per process, so its metrics are module-level objects that every part imports and
updates (unlike the worker, which can be embedded several times in one process and so owns a
registry per `Worker`). They live in this module's own `REGISTRY`, not prometheus-client's global
default one: what the operator's `/metrics` serves is then exactly what is declared here (plus the
process, platform and GC collectors added below), never a metric some imported library registered
globally, and tests can read this registry alone. `serve` exposes it on `/metrics` (aiohttp, beside
`/healthz`, with optional TLS and bearer token) through `prometheus_client.generate_latest`.

Labels stay bounded. The operator-wide series carry a request kind, an outcome or a reason, never
a job id, URL or error message. The per-pool series (backlog, replicas, decisions, conditions)
carry `namespace` and `pool`: one series per pool, as KEDA labels per ScaledObject, bounded by the
pools that exist because `forget_pool` removes a deleted pool's series.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from flowable_worker._version import __version__
from flowable_worker_operator.scaling import Backlog, Decision, Reason
from flowable_worker_operator.status import CONDITION_TYPES

PREFIX = "flowable_pool_"

REGISTRY = CollectorRegistry()
"""Everything the operator exposes on `/metrics`."""

# The process, platform and GC views prometheus-client's default registry has, here as well.
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

ProbeKind = Literal["count", "lock_owners", "discovery"]
"""What a probe request asked: a job count, a page of locked jobs, or the model repository."""

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
# series are removed when its daemon stops, so deleted pools do not linger on /metrics.

_POOL_LABELS = ("namespace", "pool")

POOL_BACKLOG = Gauge(
    PREFIX + "backlog_jobs",
    "Jobs of the pool's topic at the last successful probe: state=unlocked (waiting) or locked "
    "(in flight)",
    [*_POOL_LABELS, "state"],
    registry=REGISTRY,
)
POOL_REPLICAS = Gauge(
    PREFIX + "replicas",
    "Replicas of the pool's workload after the last tick",
    _POOL_LABELS,
    registry=REGISTRY,
)
POOL_DESIRED_REPLICAS = Gauge(
    PREFIX + "desired_replicas",
    "Replicas the last decision asked for",
    _POOL_LABELS,
    registry=REGISTRY,
)
POOL_WORKLOAD_REPLICAS = Gauge(
    PREFIX + "workload_replicas",
    "Replicas the pool's workload reports in its /scale status (pods that exist, ready or not)",
    _POOL_LABELS,
    registry=REGISTRY,
)
POOL_MIN_REPLICAS = Gauge(
    PREFIX + "min_replicas",
    "The pool's spec.scaling.minReplicas",
    _POOL_LABELS,
    registry=REGISTRY,
)
POOL_MAX_REPLICAS = Gauge(
    PREFIX + "max_replicas",
    "The pool's spec.scaling.maxReplicas",
    _POOL_LABELS,
    registry=REGISTRY,
)
POOL_PROBE_FAILURES = Gauge(
    PREFIX + "probe_consecutive_failures",
    "Backlog probes failed in a row (0 after a success); the fallback starts at its threshold",
    _POOL_LABELS,
    registry=REGISTRY,
)
POOL_DECISIONS = Counter(
    PREFIX + "decisions",
    "Scaling decisions by reason (ScaleUp, ScaleDown, Stable, Idle, Activated, CooledDown, "
    "Fallback, Paused, ProbeFailedHolding)",
    [*_POOL_LABELS, "reason"],
    registry=REGISTRY,
)
POOL_SCALE_CHANGES = Counter(
    PREFIX + "scale_changes",
    "Replica changes the operator applied, by direction (up, down)",
    [*_POOL_LABELS, "direction"],
    registry=REGISTRY,
)
_CONDITION_STATUSES = ("True", "False", "Unknown")
POOL_CONDITION = Gauge(
    PREFIX + "condition",
    "The pool's status conditions after the last tick, as kube-state-metrics shows a pod's: 1 on "
    "the series of the condition's status (True, False, Unknown), 0 on the other two",
    [*_POOL_LABELS, "condition", "status"],
    registry=REGISTRY,
)
TICK_ERRORS = Counter(
    PREFIX + "tick_errors",
    "Ticks that failed unexpectedly (e.g. the API server refused a write); the pool is retried",
    _POOL_LABELS,
    registry=REGISTRY,
)


@dataclass
class _Published:
    """What `record_tick` last set for one pool, and the pool's counter children.

    An idle pool's tick changes none of its gauges: comparing one tuple is much cheaper than
    the twenty-odd `labels()` look-ups (each a lock, a label check and a dict search) that
    setting them again would cost, at every tick of every pool. The counters are counted at
    every tick, through children looked up once."""

    values: tuple[Any, ...] | None = None
    decisions: dict[str, Any] = field(default_factory=dict)
    """Reason -> the pool's `flowable_pool_decisions_total` child."""


_published: dict[tuple[str, str], _Published] = {}


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

    A gauge is set only when a value differs from what the pool's last tick published
    (`forget_pool` forgets that, so a pool coming back is published in full)."""
    labels = {"namespace": namespace, "pool": pool}
    published = _published.get((namespace, pool))
    if published is None:
        published = _published[namespace, pool] = _Published()
    if decision is not None:
        reason = str(decision.reason)
        counted = published.decisions.get(reason)
        if counted is None:
            counted = published.decisions[reason] = POOL_DECISIONS.labels(**labels, reason=reason)
        counted.inc()
    if change:
        direction = "up" if change > 0 else "down"
        POOL_SCALE_CHANGES.labels(**labels, direction=direction).inc()
    shown = _shown_conditions(conditions)
    values = (
        backlog,
        replicas,
        workload_replicas,
        replica_bounds,
        None if decision is None else decision.desired_replicas,
        probe_failures,
        shown,
    )
    if values == published.values:
        return
    if backlog is not None:
        POOL_BACKLOG.labels(**labels, state="unlocked").set(backlog.unlocked)
        POOL_BACKLOG.labels(**labels, state="locked").set(backlog.locked)
    if replicas is not None:
        POOL_REPLICAS.labels(**labels).set(replicas)
    if workload_replicas is not None:
        POOL_WORKLOAD_REPLICAS.labels(**labels).set(workload_replicas)
    if replica_bounds is not None:
        POOL_MIN_REPLICAS.labels(**labels).set(replica_bounds[0])
        POOL_MAX_REPLICAS.labels(**labels).set(replica_bounds[1])
    if decision is not None:
        POOL_DESIRED_REPLICAS.labels(**labels).set(decision.desired_replicas)
    POOL_PROBE_FAILURES.labels(**labels).set(probe_failures)
    _record_conditions(labels, shown)
    published.values = values


def _shown_conditions(conditions: Iterable[Mapping[str, Any]]) -> tuple[tuple[str, str], ...]:
    """(type, status) of the operator's own conditions, a status outside True/False/Unknown read
    as Unknown. A condition of another type (someone else's) is left out: its series could never
    be forgotten with the pool, and its name is not ours to bound."""
    shown = []
    for condition in conditions:
        kind = condition.get("type")
        if kind not in CONDITION_TYPES:
            continue
        current = condition.get("status")
        shown.append((str(kind), current if current in _CONDITION_STATUSES else "Unknown"))
    return tuple(shown)


def _record_conditions(labels: dict[str, str], shown: Iterable[tuple[str, str]]) -> None:
    """One series per (condition, status), so that
    `flowable_pool_condition{condition="Ready",status="False"} == 1` selects pools that are not
    Ready."""
    for kind, current in shown:
        for text in _CONDITION_STATUSES:
            POOL_CONDITION.labels(**labels, condition=kind, status=text).set(
                1 if text == current else 0
            )


def forget_pool(namespace: str, pool: str) -> None:
    """Drop a deleted pool's series (and what `record_tick` remembers of it)."""
    _published.pop((namespace, pool), None)
    series: list[tuple[Gauge | Counter, tuple[str, ...]]] = [
        (POOL_REPLICAS, ()),
        (POOL_DESIRED_REPLICAS, ()),
        (POOL_PROBE_FAILURES, ()),
        (POOL_WORKLOAD_REPLICAS, ()),
        (POOL_MIN_REPLICAS, ()),
        (POOL_MAX_REPLICAS, ()),
        (TICK_ERRORS, ()),
    ]
    series += [(POOL_BACKLOG, (state,)) for state in ("unlocked", "locked")]
    series += [(POOL_DECISIONS, (str(reason),)) for reason in Reason]
    series += [(POOL_SCALE_CHANGES, (direction,)) for direction in ("up", "down")]
    series += [
        (POOL_CONDITION, (condition, text))
        for condition in CONDITION_TYPES
        for text in _CONDITION_STATUSES
    ]
    for metric, extra in series:
        with suppress(KeyError):
            metric.remove(namespace, pool, *extra)
