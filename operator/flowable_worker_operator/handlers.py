"""kopf wiring, and nothing else: events in, `reconcile.Reconciler.tick` out.

Each pool gets one kopf *daemon*: a loop that ticks every `scaling.pollingInterval`, and at once
when the pool's spec or its paused-replicas annotation changes (a raw watch event wakes it; the
operator's own status writes do not, as they change neither). A daemon rather than a timer
because the interval is the pool's own setting, not a decorator constant. Ticks keep to a phase
of the interval shared by the pools asking the same engine about the same topic, so that one
engine request answers them all (`shared_answers.phase_delay`); the first tick after a start or
a wake-up comes at once, the next at the phase.

With `--shards` every replica runs a daemon for every pool, but only the replica holding the
pool's shard ticks it; the others wait, writing nothing, until the shard moves (`shards`).

Why a daemon per pool and not one scheduler for all: the daemon is what gives each pool kopf's
finalizer and a clean stop (on the pool's deletion, the operator's shutdown or a lost Lease)
without any bookkeeping in the object; an `on.delete` handler would make kopf write its
last-handled-configuration annotation on every pool at each spec change. What a daemon costs per
tick is only its wait between ticks, so that is kept to one timer (`_nap`); at 1000 pools the
daemons' own machinery was a few percent of the operator's CPU, the wait most of it.

No handler here stores progress in the object (no `on.create`/`on.update` bookkeeping): the state
that matters is the pool's status, written by the tick, and the in-memory scaling history kept in
the pool's kopf memo.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import kopf

from flowable_worker_operator import conflicts, metrics
from flowable_worker_operator.backlog import BacklogProber
from flowable_worker_operator.kube import ClusterWorkload
from flowable_worker_operator.lean_bodies import drop_managed_fields
from flowable_worker_operator.reconcile import Outcome, PoolState, Reconciler
from flowable_worker_operator.shards import ShardKeeper, shard_of
from flowable_worker_operator.shared_answers import phase_delay
from flowable_worker_operator.spec import GROUP, PAUSED_REPLICAS_ANNOTATION, PLURAL, VERSION

__all__ = ["Runtime"]

log = logging.getLogger(__name__)

ERROR_BACKOFF = timedelta(seconds=10)
"""Wait after an unexpected error in a tick (e.g. the API server refused a status write)."""


NOT_OURS_RECHECK = timedelta(seconds=60)
"""How often a pool of another replica's shard looks again (a change of shards wakes it anyway)."""


@dataclass
class Runtime:
    """What every pool's daemon shares: built by `serve.serve`, handed to kopf as the operator
    memo.

    `shards`: with `--shards`, which pools this replica ticks; a pool of a shard held elsewhere
    waits, writing nothing, until its shard comes here (`shards.ShardKeeper`)."""

    workload: ClusterWorkload
    prober: BacklogProber
    reconciler: Reconciler
    shards: ShardKeeper | None = None
    ticking: Counter[int] = field(default_factory=Counter)
    """Ticks in flight per shard: a shard is given back only once its count is 0."""

    def owns(self, namespace: str, name: str) -> bool:
        return self.shards is None or self.shards.owns(namespace, name)

    def busy(self, shard: int) -> bool:
        return self.ticking[shard] > 0

    def shard(self, namespace: str, name: str) -> int:
        return 0 if self.shards is None else shard_of(namespace, name, self.shards.shards)


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


ClaimIndex = kopf.Index[conflicts.ClaimKey, conflicts.Claim]


@kopf.index(GROUP, VERSION, PLURAL, id="pool_claims")
def _pool_claims(body: kopf.Body, **_: Any) -> dict[conflicts.ClaimKey, conflicts.Claim]:
    """Which workload each pool scales, by namespace and workload (`conflicts.index_key`): a
    tick reads the claims on its own workload only (`conflicts.rival`)."""
    return _filed(body, conflicts.pool_claim(body))


@kopf.index("autoscaling", "v2", "horizontalpodautoscalers", id="hpa_claims")
def _hpa_claims(body: kopf.Body, **_: Any) -> dict[conflicts.ClaimKey, conflicts.Claim]:
    """Which workload each HPA scales, filed as the pools' are: a pool never scales what an HPA
    does."""
    return _filed(body, conflicts.hpa_claim(body))


def _filed(
    body: kopf.Body, claim: conflicts.Claim | None
) -> dict[conflicts.ClaimKey, conflicts.Claim]:
    if claim is None:
        return {}
    return {conflicts.index_key(body.metadata.namespace or "", claim.target): claim}


def _claims(
    namespace: str, indexes: tuple[ClaimIndex, ...], target: conflicts.Target
) -> list[conflicts.Claim]:
    """The claims on `target`'s workload in `namespace` (a `reconcile.ClaimLookup`)."""
    key = conflicts.index_key(namespace, target)
    return [claim for index in indexes for claim in index.get(key, ())]


@kopf.on.event(GROUP, VERSION, PLURAL)
async def _wake_on_change(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A new generation or paused-replicas value ticks the pool now, not at the next interval.

    Every event of a pool passes here first, so this is also where its managedFields leave the
    body kopf keeps (`lean_bodies`)."""
    drop_managed_fields(body)
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
    indexes: tuple[ClaimIndex, ...] = (kwargs["pool_claims"], kwargs["hpa_claims"])
    runtime: Runtime = memo["runtime"]
    wake: asyncio.Event = memo.setdefault("wake", asyncio.Event())
    memo.setdefault("seen", _wake_key(body))
    state = PoolState()
    namespace, name = body.metadata.namespace or "", body.metadata.name or ""
    written: dict[str, Any] | None = None
    shard = runtime.shard(namespace, name)
    # The daemon's stop wakes it too: watched once for the daemon's life, so that a tick's wait
    # is one timer on `wake` (`_nap`), not tasks of its own at every tick.
    stopping = asyncio.ensure_future(stopped.wait())
    stopping.add_done_callback(lambda _: wake.set())
    try:
        while not stopped:
            wake.clear()
            if not runtime.owns(namespace, name):
                # Another replica ticks this pool. Forget what this one knew: when the shard comes
                # back, the tick starts from the pool's status, as after a restart.
                if written is not None or state.restored:
                    state, written = PoolState(), None
                    metrics.forget_pool(namespace, name)
                    runtime.reconciler.forget(namespace, name)
                await _sleep(NOT_OURS_RECHECK, wake, stopped, _shard_change(runtime))
                continue
            runtime.ticking[shard] += 1
            try:
                claims = partial(_claims, namespace, indexes)
                outcome = await runtime.reconciler.tick(
                    body, state, datetime.now(UTC), claims=claims
                )
                if not runtime.owns(namespace, name):
                    log.info(
                        "pool %s/%s: shard moved during the tick; not reported", namespace, name
                    )
                    continue
                # Events first: a status write the API server refuses must not take them along.
                _post(body, outcome)
                if outcome.status != written:
                    await runtime.workload.write_status(namespace, name, outcome.status)
                    written = outcome.status
                _record(namespace, name, outcome)
                pause = _in_phase(outcome.next_tick, body)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("tick failed for pool %s/%s; retrying", namespace, name)
                metrics.TICK_ERRORS.labels(namespace=namespace, pool=name).inc()
                written = None
                pause = ERROR_BACKOFF
            finally:
                runtime.ticking[shard] -= 1
            await _nap(pause, wake)
    finally:
        stopping.cancel()
        # Also when kopf cancels the daemon mid-tick: the pool's overlap must not outlive it.
        runtime.reconciler.forget(namespace, name)
        metrics.forget_pool(namespace, name)


def _phase_key(body: kopf.Body) -> str:
    """The question a pool asks its engine, for its phase: pools on one topic of one engine ask
    together, so that one request answers them all (`shared_answers.phase_delay`)."""
    spec = body.get("spec") or {}
    engine = spec.get("engine") or {}
    return f"{str(engine.get('url') or '').rstrip('/')} {spec.get('topic') or ''}"


def _in_phase(pause: timedelta, body: kopf.Body) -> timedelta:
    """`pause` (the pool's interval), ending at the next moment of the pool's phase: ticks stay
    one interval apart, but every pool asking the same question ticks in the same instant."""
    seconds = phase_delay(pause.total_seconds(), _phase_key(body), time.time())
    return timedelta(seconds=seconds)


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


async def _nap(pause: timedelta, wake: asyncio.Event) -> None:
    """Wait until the next tick or until `wake` is set (a change of the pool, the daemon's stop),
    whichever comes first: one timer that sets `wake`, and the one future `wake.wait()` makes.
    This runs at every tick of every pool; `_sleep`, which also waits for the shards to move,
    makes two tasks and a waiter, and serves the rare wait of a pool this replica does not tick.
    """
    if wake.is_set():
        return
    timer = asyncio.get_running_loop().call_later(pause.total_seconds(), wake.set)
    try:
        await wake.wait()
    finally:
        timer.cancel()


def _shard_change(runtime: Runtime) -> Awaitable[None] | None:
    return None if runtime.shards is None else runtime.shards.changed()


async def _sleep(
    pause: timedelta,
    wake: asyncio.Event,
    stopped: kopf.DaemonStopped,
    also: Awaitable[None] | None = None,
) -> None:
    """Wait for the next tick, a wake-up, the daemon's stop, or `also` (a change of shards),
    whichever comes first."""

    async def until_stopped() -> None:
        await stopped.wait()

    waiters = {asyncio.ensure_future(wake.wait()), asyncio.ensure_future(until_stopped())}
    if also is not None:
        waiters.add(asyncio.ensure_future(also))
    try:
        await asyncio.wait(
            waiters, timeout=pause.total_seconds(), return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for waiter in waiters:
            waiter.cancel()
