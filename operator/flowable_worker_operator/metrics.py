"""The operator's Prometheus metrics, all prefixed `flowable_pool_`: plain module-level objects.

One operator runs per process, so its metrics are module-level objects that every part imports and
updates (unlike the worker, which can be embedded several times in one process and so owns a
registry per `Worker`). They live in this module's own `REGISTRY`, not prometheus-client's global
default one: what the operator's `/metrics` serves is then exactly what is declared here (plus the
process, platform and GC collectors added below), never a metric some imported library registered
globally, and tests can read this registry alone. Serve it with
`prometheus_client.start_http_server(port, registry=metrics.REGISTRY)`.

Labels stay low-cardinality: a request kind and an outcome, never a pool name, job id, URL or
error message. Pool-level metrics (backlog, desired replicas, decisions) belong here too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

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
