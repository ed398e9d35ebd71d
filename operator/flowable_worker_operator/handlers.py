"""kopf wiring, and nothing else: events in, `reconcile.Reconciler.tick` out.

kopf reports every event of every pool (`_on_pool_event`); the pools' ticks run on one clock
(`ticker.Ticker`): each pool ticks every `scaling.pollingInterval`, and at once when its spec or
its paused-replicas annotation changes (the operator's own status writes change neither, so they
wake nothing). Ticks keep to a phase of the interval shared by the pools asking the same engine
about the same topic, so that one engine request answers them all (`shared_answers.phase_delay`);
the first tick after a start or a wake-up comes at once, the next at the phase.

With `--shards` every replica knows every pool, but only the replica holding the pool's shard
ticks it; the others look again once a minute or when the shards move, writing nothing (`shards`).

Why one clock and not a kopf daemon per pool, as before: a daemon kept 11.9 KB a pool of kopf's
machinery (and kopf's copy of the body), for what is a timer. What the daemon also gave, the
finalizer that keeps a pool until its ticks have stopped, comes from `_on_pool_delete`: a deletion
handler makes kopf keep the finalizer, so a pool deleted while the operator was away, or during a
break in the watch, is still seen going. kopf then records each spec it has handled in an
annotation (`flowable-worker.io/last-handled-configuration`): one write at creation and one at
each spec change, none while the spec stays the same.

No handler here stores progress in the object (no `on.create`/`on.update` bookkeeping): the state
that matters is the pool's status, written by the tick, and the in-memory scaling history kept in
`PoolState`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, cast

import kopf

from flowable_worker_operator import api_session, conflicts, metrics
from flowable_worker_operator.backlog import BacklogProber
from flowable_worker_operator.kube import ClusterWorkload
from flowable_worker_operator.lean_bodies import PackedBody, fingerprint
from flowable_worker_operator.reconcile import Outcome, PoolState, Reconciler
from flowable_worker_operator.shards import ShardKeeper, shard_of
from flowable_worker_operator.shared_answers import phase_delay
from flowable_worker_operator.spec import GROUP, PAUSED_REPLICAS_ANNOTATION, PLURAL, VERSION
from flowable_worker_operator.ticker import Ticker

__all__ = ["Runtime"]

log = logging.getLogger(__name__)

ERROR_BACKOFF = timedelta(seconds=10)
"""Wait after an unexpected error in a tick (e.g. the API server refused a status write)."""


NOT_OURS_RECHECK = timedelta(seconds=60)
"""How often a pool of another replica's shard looks again (a change of shards wakes it anyway)."""

STOP_TIMEOUT = timedelta(seconds=10)
"""How long a tick in flight may run on when its pool goes or the operator stops (a tick is short;
kopf gave its daemons the same)."""

FIRST_TICKS = 256
"""New pools' first ticks in flight at once (`ticker` says why there is a bound). Measured with
10,000 pools created at once (docs/benchmarks.md, "The creation's peak"): 64, 256 and 1024 left
the operator at 359, 371 and 478 MB against 604 MB unbounded, and the time until every pool had
ticked and the operator was quiet was 367, 342 and 351 s against 299 s: the API server's pace,
not the bound, sets that time."""

ClaimIndex = kopf.Index[conflicts.ClaimKey, conflicts.Claim]


PoolKey = tuple[str, str]
"""A pool's namespace and name."""


@dataclass
class Pool:
    """What the operator keeps of one pool between its ticks."""

    packed: PackedBody
    """The pool as its last event showed it, packed (`lean_bodies`): `body` unpacks it."""
    seen: tuple[int, str | None]
    """Its generation and paused-replicas annotation at the last wake-up (`_wake_key`)."""
    state: PoolState = field(default_factory=PoolState)
    written: bytes | None = None
    """The `fingerprint` of the status last written; None: unknown, so the next tick writes."""
    ours: bool = True
    """False once a tick found the pool's shard held by another replica."""

    @property
    def body(self) -> dict[str, Any]:
        """The pool's last body, unpacked: a new dict at each call."""
        return self.packed.unpack()


@dataclass
class Runtime:
    """What every pool's tick shares: built by `serve.serve`, handed to kopf as the operator
    memo.

    `shards`: with `--shards`, which pools this replica ticks; a pool of a shard held elsewhere
    waits, writing nothing, until its shard comes here (`shards.ShardKeeper`)."""

    workload: ClusterWorkload
    prober: BacklogProber
    reconciler: Reconciler
    shards: ShardKeeper | None = None
    ticking: Counter[int] = field(default_factory=Counter)
    """Ticks in flight per shard: a shard is given back only once its count is 0."""
    pools: dict[PoolKey, Pool] = field(default_factory=dict)
    indexes: tuple[ClaimIndex, ...] = ()
    """kopf's claim indexes (live: kopf keeps them up to date), as the first event brought them."""
    ticker: Ticker[PoolKey] = field(init=False)
    _following: asyncio.Task[None] | None = field(default=None, init=False)
    _stopped: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.ticker = Ticker(
            partial(_tick, self),
            error_pause=ERROR_BACKOFF.total_seconds(),
            grace=STOP_TIMEOUT.total_seconds(),
            first_ticks=FIRST_TICKS,
        )
        ticker = self.ticker
        metrics.FIRST_TICKS_WAITING.set_function(lambda: ticker.waiting_first)

    def owns(self, namespace: str, name: str) -> bool:
        return self.shards is None or self.shards.owns(namespace, name)

    def busy(self, shard: int) -> bool:
        return self.ticking[shard] > 0

    def shard(self, namespace: str, name: str) -> int:
        return 0 if self.shards is None else shard_of(namespace, name, self.shards.shards)

    def start(self) -> None:
        """Start the clock, and with shards, the wake-up of the pools that move here (not again
        once stopped: a late event of a stopping kopf must not restart the ticks)."""
        if self._stopped:
            return
        self.ticker.start()
        if self.shards is not None and self._following is None:
            self._following = asyncio.ensure_future(self._follow_shards(self.shards))

    async def stop(self) -> None:
        """Stop ticking: the ticks in flight get `STOP_TIMEOUT`, then are cancelled."""
        self._stopped = True
        if self._following is not None:
            self._following.cancel()
            self._following = None
        await self.ticker.stop()
        for namespace, name in list(self.pools):
            self._forget(namespace, name)
        self.pools.clear()

    async def remove(self, namespace: str, name: str) -> None:
        """The pool is going: no more ticks (the one in flight may end), and nothing kept of it."""
        if self.pools.pop((namespace, name), None) is None:
            return
        await self.ticker.remove((namespace, name))
        if (namespace, name) not in self.pools:  # not made again meanwhile under the same name
            self._forget(namespace, name)

    def _forget(self, namespace: str, name: str) -> None:
        """Drop what the ticks kept of the pool outside it: the reconciler's registries (the
        pool's overlap must not outlive it) and its metric series."""
        self.reconciler.forget(namespace, name)
        metrics.forget_pool(namespace, name)

    async def _follow_shards(self, shards: ShardKeeper) -> None:
        while True:
            await shards.changed()
            for key, pool in list(self.pools.items()):
                if not pool.ours and self.owns(*key):
                    self.ticker.wake(key)


@kopf.on.login()
async def _login(
    logger: kopf.Logger, settings: kopf.OperatorSettings, **_: Any
) -> kopf.AiohttpSession:
    # kopf's credentials, in a session that bounds the requests in flight (api_session).
    return await api_session.login(logger=logger, settings=settings)


@kopf.on.startup()
async def _configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Only explicit kopf.event() calls become Events; handler logs stay logs.
    settings.posting.loggers = False
    settings.posting.level = logging.INFO
    # The finalizer `_on_pool_delete` keeps, named as the daemons' was: pools made by an
    # earlier version keep theirs.
    settings.persistence.finalizer = f"{GROUP}/operator"
    # What kopf writes in the pool to tell a spec change (`_on_pool_delete` makes it track them),
    # and the progress of that handler, under the operator's own domain.
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.watching.server_timeout = 300


@kopf.on.cleanup()
async def _close(memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime | None = memo.get("runtime")
    if runtime is not None:
        await runtime.stop()
        await runtime.prober.aclose()


def _wake_key(body: Mapping[str, Any]) -> tuple[int, str | None]:
    meta = body.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    return int(meta.get("generation") or 0), annotations.get(PAUSED_REPLICAS_ANNOTATION)


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
async def _on_pool_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    """Every event of a pool: a new pool starts ticking, a known one gets the newest body
    (packed: `lean_bodies`), and a new generation or paused-replicas value ticks it now, not at
    the next interval."""
    runtime: Runtime = memo["runtime"]
    # Started here, not at startup: the clock's tasks inherit this context, in which kopf has
    # set up what `kopf.event` posts through (at startup it has not yet).
    runtime.start()
    # kopf passes each index by its id; they are live (updated from its watches).
    runtime.indexes = (kwargs["pool_claims"], kwargs["hpa_claims"])
    namespace, name = body.metadata.namespace or "", body.metadata.name or ""
    if type == "DELETED" or body.metadata.deletion_timestamp is not None:
        # Going: no tick from now on (kopf stopped a pool's daemon at this point too).
        await runtime.remove(namespace, name)
        return
    key = (namespace, name)
    pool = runtime.pools.get(key)
    packed = PackedBody(body)
    if pool is None or pool.packed.uid != packed.uid:
        if pool is not None:  # the same name, another pool: the old one is gone
            await runtime.remove(namespace, name)
        runtime.pools[key] = Pool(packed=packed, seen=_wake_key(body))
        runtime.ticker.add(key)
        return
    pool.packed = packed
    seen = _wake_key(body)
    if seen != pool.seen:
        pool.seen = seen
        runtime.ticker.wake(key)


@kopf.on.delete(GROUP, VERSION, PLURAL, id="scaler")
async def _on_pool_delete(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """The pool is being deleted: stop its ticks (waiting for the one in flight) before kopf
    lets it go, so that nothing scales or writes for a pool that no longer exists."""
    runtime: Runtime = memo["runtime"]
    await runtime.remove(body.metadata.namespace or "", body.metadata.name or "")


async def _tick(runtime: Runtime, key: PoolKey) -> float:
    """One tick of one pool (`Ticker`'s `tick`); the seconds until its next."""
    pool = runtime.pools.get(key)
    if pool is None:
        return NOT_OURS_RECHECK.total_seconds()  # removed meanwhile: the ticker drops it
    namespace, name = key
    if not runtime.owns(namespace, name):
        # Another replica ticks this pool. Forget what this one knew: when the shard comes back,
        # the tick starts from the pool's status, as after a restart.
        if pool.written is not None or pool.state.restored:
            pool.state, pool.written = PoolState(), None
            runtime._forget(namespace, name)
        pool.ours = False
        return NOT_OURS_RECHECK.total_seconds()
    pool.ours = True
    shard = runtime.shard(namespace, name)
    runtime.ticking[shard] += 1
    try:
        body = pool.body
        claims = partial(_claims, namespace, runtime.indexes)
        outcome = await runtime.reconciler.tick(body, pool.state, datetime.now(UTC), claims=claims)
        if runtime.pools.get(key) is not pool:
            log.info("pool %s/%s: deleted during the tick; not reported", namespace, name)
            return 0.0
        if not runtime.owns(namespace, name):
            log.info("pool %s/%s: shard moved during the tick; not reported", namespace, name)
            return 0.0  # the next tick finds it not ours, and forgets
        # Events first: a status write the API server refuses must not take them along.
        _post(body, outcome)
        written = fingerprint(outcome.status)
        if written != pool.written:
            await runtime.workload.write_status(namespace, name, outcome.status)
            pool.written = written
        _record(namespace, name, outcome)
        return _in_phase(outcome.next_tick, body).total_seconds()
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("tick failed for pool %s/%s; retrying", namespace, name)
        metrics.TICK_ERRORS.labels(namespace=namespace, pool=name).inc()
        pool.written = None
        return ERROR_BACKOFF.total_seconds()
    finally:
        runtime.ticking[shard] -= 1


def _phase_key(body: Mapping[str, Any]) -> str:
    """The question a pool asks its engine, for its phase: pools on one topic of one engine ask
    together, so that one request answers them all (`shared_answers.phase_delay`)."""
    spec = body.get("spec") or {}
    engine = spec.get("engine") or {}
    return f"{str(engine.get('url') or '').rstrip('/')} {spec.get('topic') or ''}"


def _in_phase(pause: timedelta, body: Mapping[str, Any]) -> timedelta:
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


def _post(body: Mapping[str, Any], outcome: Outcome) -> None:
    # kopf reads apiVersion, kind and metadata of any mapping (`build_object_reference`); its
    # type says `Body` only because that is what it hands out.
    target = cast(kopf.Body, body)
    for event in outcome.events:
        kopf.event(target, type=event.type, reason=event.reason, message=event.message[:1024])
