"""kopf wiring, and nothing else: events in, `reconcile.Reconciler.tick` out.

Each pool gets one kopf *daemon*: a loop that ticks every `scaling.pollingInterval`, and at once
when the pool's spec or its paused-replicas annotation changes (a raw watch event wakes it; the
operator's own status writes do not, as they change neither). A daemon rather than a timer
because the interval is the pool's own setting, not a decorator constant.

No handler here stores progress in the object (no `on.create`/`on.update` bookkeeping): the state
that matters is the pool's status, written by the tick, and the in-memory scaling history kept in
the pool's kopf memo.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf

from flowable_worker_operator import conflicts, metrics
from flowable_worker_operator.backlog import BacklogProber
from flowable_worker_operator.kube import ClusterWorkload
from flowable_worker_operator.reconcile import Outcome, PoolState, Reconciler
from flowable_worker_operator.spec import GROUP, PAUSED_REPLICAS_ANNOTATION, PLURAL, VERSION

__all__ = ["Runtime"]

log = logging.getLogger(__name__)

ERROR_BACKOFF = timedelta(seconds=10)
"""Wait after an unexpected error in a tick (e.g. the API server refused a status write)."""


@dataclass
class Runtime:
    """What every pool's daemon shares: built by `serve.serve`, handed to kopf as the operator
    memo."""

    workload: ClusterWorkload
    prober: BacklogProber
    reconciler: Reconciler


@kopf.on.startup()
async def _configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Only explicit kopf.event() calls become Events; handler logs stay logs.
    settings.posting.loggers = False
    settings.posting.level = logging.INFO
    # Daemons stop promptly on pool deletion or operator shutdown: a tick is short.
    settings.persistence.finalizer = f"{GROUP}/operator"
    settings.watching.server_timeout = 300


@kopf.on.cleanup()
async def _close(memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime | None = memo.get("runtime")
    if runtime is not None:
        await runtime.prober.aclose()


def _wake_key(body: kopf.Body) -> tuple[int, str | None]:
    meta = body.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    return int(meta.get("generation") or 0), annotations.get(PAUSED_REPLICAS_ANNOTATION)


@kopf.index(GROUP, VERSION, PLURAL, id="pool_claims")
def _pool_claims(body: kopf.Body, **_: Any) -> dict[str, conflicts.Claim]:
    """Which workload each pool scales, by namespace (read by every tick: `conflicts.rival`)."""
    claim = conflicts.pool_claim(body)
    return {} if claim is None else {body.metadata.namespace or "": claim}


@kopf.index("autoscaling", "v2", "horizontalpodautoscalers", id="hpa_claims")
def _hpa_claims(body: kopf.Body, **_: Any) -> dict[str, conflicts.Claim]:
    """Which workload each HPA scales, by namespace: a pool never scales what an HPA does."""
    claim = conflicts.hpa_claim(body)
    return {} if claim is None else {body.metadata.namespace or "": claim}


def _claims(namespace: str, *indexes: kopf.Index[str, conflicts.Claim]) -> list[conflicts.Claim]:
    return [claim for index in indexes for claim in index.get(namespace, ())]


@kopf.on.event(GROUP, VERSION, PLURAL)
async def _wake_on_change(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A new generation or paused-replicas value ticks the pool now, not at the next interval."""
    key = _wake_key(body)
    if memo.get("seen") != key:
        memo["seen"] = key
        wake: asyncio.Event | None = memo.get("wake")
        if wake is not None:
            wake.set()


@kopf.daemon(GROUP, VERSION, PLURAL, id="scaler", cancellation_timeout=10.0)
async def _scale_pool(
    body: kopf.Body,
    memo: kopf.Memo,
    stopped: kopf.DaemonStopped,
    **kwargs: Any,
) -> None:
    # kopf passes each index by its id; they are live (updated from its watches).
    pool_claims: kopf.Index[str, conflicts.Claim] = kwargs["pool_claims"]
    hpa_claims: kopf.Index[str, conflicts.Claim] = kwargs["hpa_claims"]
    runtime: Runtime = memo["runtime"]
    wake: asyncio.Event = memo.setdefault("wake", asyncio.Event())
    memo.setdefault("seen", _wake_key(body))
    state = PoolState()
    namespace, name = body.metadata.namespace or "", body.metadata.name or ""
    written: dict[str, Any] | None = None
    while not stopped:
        wake.clear()
        try:
            claims = _claims(namespace, pool_claims, hpa_claims)
            outcome = await runtime.reconciler.tick(body, state, datetime.now(UTC), claims=claims)
            # Events first: a status write the API server refuses must not take them along.
            _post(body, outcome)
            if outcome.status != written:
                await runtime.workload.write_status(namespace, name, outcome.status)
                written = outcome.status
            _record(namespace, name, outcome)
            pause = outcome.next_tick
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("tick failed for pool %s/%s; retrying", namespace, name)
            metrics.TICK_ERRORS.labels(namespace=namespace, pool=name).inc()
            written = None
            pause = ERROR_BACKOFF
        await _sleep(pause, wake, stopped)
    runtime.reconciler.forget(namespace, name)
    metrics.forget_pool(namespace, name)


def _record(namespace: str, name: str, outcome: Outcome) -> None:
    metrics.record_tick(
        namespace,
        name,
        backlog=outcome.backlog,
        replicas=outcome.replicas,
        workload_replicas=outcome.workload_replicas,
        replica_bounds=outcome.replica_bounds,
        decision=outcome.decision,
        probe_failures=outcome.probe_failures,
        conditions=outcome.conditions,
        change=outcome.change,
    )


def _post(body: kopf.Body, outcome: Outcome) -> None:
    for event in outcome.events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message[:1024])


async def _sleep(pause: timedelta, wake: asyncio.Event, stopped: kopf.DaemonStopped) -> None:
    """Wait for the next tick, a wake-up, or the daemon's stop, whichever comes first."""

    async def until_stopped() -> None:
        await stopped.wait()

    waiters = {asyncio.ensure_future(wake.wait()), asyncio.ensure_future(until_stopped())}
    try:
        await asyncio.wait(
            waiters, timeout=pause.total_seconds(), return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for waiter in waiters:
            waiter.cancel()
