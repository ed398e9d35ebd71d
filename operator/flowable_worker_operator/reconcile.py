"""One polling tick of one pool: read the spec, measure, decide, apply, report.

This is the imperative shell around `scaling.decide`. It owns the order of operations and what
each failure means, and nothing else: Kubernetes and Flowable are reached through the two small
protocols below (`Workload`, `Prober`), so the whole tick runs in unit tests with fakes and in the
operator with the real adapters (`kube.ClusterWorkload`, `backlog.BacklogProber`).

What a failure means is the point of this module:
- a bad spec or a missing Secret/target stops the tick with `Ready=False` and a Warning Event; the
  pool's replicas are left alone (never "fixed" by guessing); so does a worker pod template
  outside the Pod Security Standard the operator enforces (`--pod-security`, `podsecurity`), and
  a workload another pool or an HPA already scales (`conflicts`);
- a failed probe is a `ProbeFailed` observation: the core holds replicas, or applies the fallback
  after `failureThreshold` failures; it never reads as an empty backlog;
- scaling down first marks pods that hold locks as expensive to delete, so the ReplicaSet
  controller removes idle pods first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Protocol

from flowable_worker_operator.backlog import InFlight, ProbeError, ProbeResult, Selector
from flowable_worker_operator.conflicts import Claim, Target, claim_of, rival
from flowable_worker_operator.discovery import bounded
from flowable_worker_operator.engines import Engine, EngineConfigError
from flowable_worker_operator.lean_bodies import fingerprint
from flowable_worker_operator.manifests import build_deployment
from flowable_worker_operator.overlap import Overlaps, shared_message
from flowable_worker_operator.podsecurity import Level, Violation, check
from flowable_worker_operator.scaling import (
    Backlog,
    Decision,
    History,
    Observation,
    ProbeFailed,
    Reason,
    ScalingSpec,
    decide,
    failures_shown,
)
from flowable_worker_operator.shared_answers import SharedAnswers
from flowable_worker_operator.spec import (
    PAUSED_REPLICAS_ANNOTATION,
    EngineSpec,
    Pool,
    SpecError,
    parse_pool,
)
from flowable_worker_operator.status import (
    ACTIVE,
    ENGINE_REACHABLE,
    FALLBACK,
    PAUSED,
    READY,
    SHARED_BACKLOG,
    ConditionUpdate,
    format_time,
    keep_heartbeats,
    parse_time,
    set_condition,
    set_conditions,
)
from flowable_worker_operator.targets import (
    NotControlledError,
    Scale,
    TargetError,
    TargetNotFoundError,
    WorkloadRefusedError,
)

__all__ = [
    "Event",
    "Outcome",
    "PoolState",
    "Prober",
    "Reconciler",
    "Workload",
]

log = logging.getLogger(__name__)

PROBE_DEADLINE_FACTOR = 2
"""A whole probe (every request of it) gets this many `engine.timeoutSeconds`: each request has
that timeout and a read is retried once, so a probe past twice of it is a failed probe (an
engine that hangs is not reachable), not a tick that waits on."""

SPEC_RETRY = timedelta(seconds=30)
"""How soon a pool whose spec or target is unusable is looked at again (a spec change wakes it
at once anyway)."""

OVERLAP_LAPSE_INTERVALS = 20
OVERLAP_LAPSE_MIN = timedelta(minutes=5)
"""How long a pool's entry in the overlap registry outlives its last tick: a safety net only.

A pool that stops counting leaves the registry when that happens (a failed probe, a tick that
stops at a bad spec, a conflict or a missing target, its ticks' end, its shard moving to
another replica), so the time lapse no longer decides anything in the normal course. It used to
be 3 intervals, which made `SharedBacklog` flap (a status write and a Warning each time) as soon
as an overloaded operator ticked more than 3 intervals late: a late tick is not a gone pool.
Now an operator must run 20 intervals (at least 5 minutes) late before a live pool's overlap is
forgotten, and an entry nobody removed (a path we missed) still goes in the end."""


ClaimLookup = Callable[[Target], Iterable[Claim]]
"""The claims filed under a workload's `conflicts.index_key` in the pool's namespace."""


class Workload(Protocol):
    """What a tick needs from Kubernetes.

    Problems a user can fix raise `TargetError` (workload) or `EngineConfigError` (Secrets).
    """

    async def engine(self, pool: Pool) -> Engine: ...

    async def ensure(self, pool: Pool, *, initial_replicas: int) -> None: ...

    async def scale(self, pool: Pool) -> Scale: ...

    async def set_replicas(self, pool: Pool, replicas: int) -> None: ...

    async def set_deletion_costs(
        self, pool: Pool, selector: str, locks_by_pod: Mapping[str, int]
    ) -> int: ...

    async def live_pods(self, pool: Pool, selector: str) -> frozenset[str]: ...


class Prober(Protocol):
    """What a tick needs from Flowable."""

    async def backlog(
        self, engine: Engine, topic: str, selectors: Sequence[Selector] | None
    ) -> ProbeResult: ...

    async def in_flight(self, engine: Engine, selectors: Sequence[Selector]) -> InFlight: ...

    async def oldest_waiting(
        self, engine: Engine, selectors: Sequence[Selector]
    ) -> datetime | None: ...


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the pool: Normal or Warning, a CamelCase reason, a sentence."""

    type: str
    reason: str
    message: str


@dataclass
class _Probe:
    """A probe in flight: the question it answers (engine, topic, selectors) and its task."""

    key: tuple[Any, ...]
    task: asyncio.Future[ProbeResult]


@dataclass(frozen=True)
class _Parsed:
    """A pool as `parse_pool` read it (or its `SpecError`) and its Pod Security violations, with
    everything of the object they were read from: the same inputs give the same pool, so an
    unchanged pool is not validated again at every tick."""

    key: tuple[Any, ...]
    spec: bytes
    """The `fingerprint` of `spec` as it was read: compared by value, so an object changed in
    place (or handed in anew with the same generation) is read again. Not a copy: a copy kept
    1.1 KB a pool."""
    pool: Pool | SpecError
    violations: tuple[Violation, ...] = ()


@dataclass
class PoolState:
    """What the operator remembers about one pool between ticks (in memory, per pool)."""

    history: History = field(default_factory=History)
    consecutive_failures: int = 0
    last_success: datetime | None = None
    last_error: str | None = None
    warned: set[str] = field(default_factory=set)
    restored: bool = False
    probe: _Probe | None = None
    """A probe that outlived its tick's deadline and goes on (`Reconciler._probe`)."""
    parsed: _Parsed | None = None
    """The spec as last read, and what was found wrong with it (`Reconciler._read`)."""


@dataclass(frozen=True)
class Outcome:
    """A tick's result for the shell: the status to write, Events to post, when to come back."""

    status: dict[str, Any]
    events: tuple[Event, ...]
    next_tick: timedelta
    decision: Decision | None = None
    backlog: Backlog | None = None
    change: int = 0
    """The replica change this tick applied (0 if none, or if applying it failed)."""
    workload_replicas: int | None = None
    """Pods the workload reported in its /scale status at the start of the tick."""
    replica_bounds: tuple[int, int] | None = None
    """The pool's (minReplicas, maxReplicas)."""

    @property
    def replicas(self) -> int | None:
        """`status.replicas` as this tick wrote it; None when the tick wrote none."""
        value = self.status.get("replicas")
        return value if isinstance(value, int) else None

    @property
    def probe_failures(self) -> int:
        """`status.probe.consecutiveFailures` (0 when the tick wrote no probe section)."""
        probe = self.status.get("probe") or {}
        return int(probe.get("consecutiveFailures") or 0)

    @property
    def conditions(self) -> Sequence[Mapping[str, Any]]:
        """`status.conditions` as this tick wrote them."""
        return tuple(self.status.get("conditions") or ())


class Reconciler:
    """Runs ticks; one per operator process, shared by every pool.

    `pod_security`: the Pod Security Standard worker pod templates must meet (`privileged`: any).
    `max_replicas_limit`: the most replicas any pool may ask for (`--max-replicas-limit`); a pool
    above it is refused as an invalid spec (`spec.parse_pool`). None: no limit but int32.
    `engine_max_age`: how old (seconds) a resolved engine may be and still serve another pool of
    the same namespace naming the same `spec.engine` (`--probe-share-seconds` in the operator).
    Resolving reads the engine's Secrets; pools of a namespace usually share one engine and one
    Secret, and pools of a topic tick in the same instant, so within that window one read serves
    them all, and a fixed Secret is seen that much later at most. Concurrent askers always share
    one resolution (0: nothing is remembered once answered; a failure is never remembered).
    """

    def __init__(
        self,
        *,
        workload: Workload,
        prober: Prober,
        pod_security: Level = "privileged",
        max_replicas_limit: int | None = None,
        engine_max_age: float = 0.0,
    ) -> None:
        self._workload = workload
        self._prober = prober
        self._pod_security: Level = pod_security
        self._max_replicas_limit = max_replicas_limit
        self._overlaps = Overlaps()
        self._engines: SharedAnswers[tuple[str, EngineSpec], Engine] = SharedAnswers(
            max_age=engine_max_age
        )

    def forget(self, namespace: str, name: str) -> None:
        """The pool is gone (or no longer watched): no other pool shares a backlog with it."""
        self._overlaps.forget(f"{namespace}/{name}")

    async def tick(
        self,
        body: Mapping[str, Any],
        state: PoolState,
        now: datetime,
        *,
        claims: Sequence[Claim] | ClaimLookup = (),
    ) -> Outcome:
        """One pass for the pool in ``body``; never raises for anything a user can cause.

        `claims`: who scales what in the pool's namespace (pools and HPAs, `conflicts`), or a
        lookup answering the claims on one workload (the operator's: only the claims on the
        pool's own workload are read); a pool whose workload another scaler keeps stops here.

        An exception that escapes the pass is a bug of ours (a spec the checks let through, an
        answer nobody expected), but the pool's owner must still see it: it becomes Ready=False
        with reason `ReconcileError`, a bounded message and one Warning Event, and the pool is
        retried after `SPEC_RETRY`, never in a hot loop. The traceback goes to the log.
        """
        meta = body.get("metadata") or {}
        try:
            outcome = await self._tick(body, state, now, claims=claims)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.forget(str(meta.get("namespace") or ""), str(meta.get("name") or ""))
            log.exception(
                "reconciling pool %s/%s failed unexpectedly",
                meta.get("namespace"),
                meta.get("name"),
            )
            previous: Mapping[str, Any] = body.get("status") or {}
            return self._stopped(
                state,
                list(previous.get("conditions") or []),
                int(meta.get("generation") or 0),
                now,
                reason="ReconcileError",
                message=_unexpected_message(exc),
            )
        if outcome.decision is None:
            # Stopped before measuring (bad spec, conflict, target): it counts nothing now.
            self.forget(str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        return outcome

    async def _tick(
        self,
        body: Mapping[str, Any],
        state: PoolState,
        now: datetime,
        *,
        claims: Sequence[Claim] | ClaimLookup,
    ) -> Outcome:
        previous: Mapping[str, Any] = body.get("status") or {}
        conditions: list[dict[str, Any]] = list(previous.get("conditions") or [])
        generation = int((body.get("metadata") or {}).get("generation") or 0)
        if not state.restored:
            _restore(state, previous)
        parsed = self._read(body, state)
        pool = parsed.pool
        if isinstance(pool, SpecError):
            return self._stopped(
                state, conditions, generation, now, reason="InvalidSpec", message=str(pool)
            )
        violations = parsed.violations
        if violations:
            return self._stopped(
                state,
                conditions,
                generation,
                now,
                reason="PodSecurityViolation",
                message=_pod_security_message(self._pod_security, violations),
            )
        me = claim_of(pool, body)
        other = rival(me, claims(me.target) if callable(claims) else claims)
        if other is not None:
            return self._stopped(
                state,
                conditions,
                generation,
                now,
                reason="ScaleTargetConflict",
                message=_conflict_message(me, other),
            )
        try:
            engine: Engine | ProbeError = await self._engines.get(
                (pool.namespace, pool.spec.engine), partial(self._workload.engine, pool)
            )
        except EngineConfigError as exc:
            # Without credentials nothing can be measured: that is a failed probe, so the core
            # holds or falls back, and Ready says what to fix.
            engine = ProbeError(str(exc))
        try:
            spec = pool.scaling_spec
            if pool.spec.worker is not None:
                initial = pool.paused_replicas if pool.paused_replicas is not None else 0
                await self._workload.ensure(pool, initial_replicas=max(initial, spec.min_replicas))
            scale = await self._workload.scale(pool)
        except TargetError as exc:
            return self._stopped(
                state, conditions, generation, now, reason=_target_reason(exc), message=str(exc)
            )

        observed, result = await self._observe(pool, engine, state, now)
        selectors = () if result is None else result.selectors
        seen = _held(observed, result)
        held: InFlight | None = None
        if isinstance(seen, Backlog) and isinstance(engine, Engine):
            seen, held = await self._holders(pool, engine, scale, seen, selectors, now)
            seen = await self._dated_queue(pool, engine, scale, seen, selectors)
        decision = decide(
            spec=spec,
            observation=Observation(
                now=now,
                current_replicas=scale.replicas,
                backlog=seen,
                consecutive_failures=state.consecutive_failures,
            ),
            history=state.history,
        )
        events: list[Event] = []
        replicas = scale.replicas
        last_scale: str | None = previous.get("lastScaleTime")
        state.history = decision.history
        if decision.desired_replicas != scale.replicas:
            try:
                await self._apply(pool, engine, scale, decision, observed, selectors, held)
            except (TargetError, ProbeError) as exc:
                events.append(Event("Warning", "ScaleFailed", f"could not scale: {exc}"))
                # Not applied, so not a scale event: it must not use up a policy's allowance.
                applied = tuple(e for e in decision.history.scale_events if e.time != now)
                state.history = replace(decision.history, scale_events=applied)
            else:
                replicas = decision.desired_replicas
                last_scale = _timestamp(now)
                events.append(Event("Normal", str(decision.reason), decision.message))
        auth = _auth_refusal(pool, observed, state)
        if auth is not None:
            events.append(Event("Warning", "EngineAuthFailed", auth))
        blocker = _blocker(pool, result)
        notes = () if result is None else result.notes
        shared = self._shared(pool, engine, result, now)
        # (reason, message, what makes it new): a note once per its key, a blocker once per
        # generation (its count of unresolved elements may grow with every deployment), the
        # shared backlog once per set of other pools.
        warnings = [(note.reason, note.message, note.key or note.message) for note in notes]
        if blocker is not None:
            warnings.append((*blocker, str(generation)))
        if shared:
            warnings.append((SHARED_BACKLOG, shared_message(shared), ",".join(shared)))
        for reason, message, key in warnings:
            if f"{reason}:{key}" not in state.warned:
                state.warned.add(f"{reason}:{key}")
                events.append(Event("Warning", reason, message))
        updates = _conditions(pool=pool, spec=spec, decision=decision, observed=observed)
        updates += _topic_conditions(blocker=blocker, shared=shared)
        conditions = set_conditions(conditions, updates, generation=generation, now=now)
        status: dict[str, Any] = {
            "observedGeneration": generation,
            "replicas": replicas,
            "desiredReplicas": decision.desired_replicas,
            "selector": scale.selector,
            "lastScaleTime": last_scale,
            "lastActiveTime": _timestamp(decision.history.last_active_time),
            "probe": {
                "consecutiveFailures": failures_shown(state.consecutive_failures, spec),
                "lastSuccessTime": _timestamp(state.last_success),
                "lastError": None if state.last_error is None else bounded(state.last_error),
            },
            "conditions": conditions,
        }
        backlog = _backlog_status(observed, previous.get("backlog"), now)
        if backlog is not None:
            status["backlog"] = backlog
        if result is not None:
            shown = result.selectors[:_SHOWN_SELECTORS]
            status["selectors"] = [_selector_status(s, pool.spec.topic) for s in shown]
        if notes:
            status["warnings"] = [note.message for note in notes[:_SHOWN_WARNINGS]]
        # Nothing but a heartbeat moved: the status stays as written, so nothing is written.
        status = keep_heartbeats(status, previous)
        return Outcome(
            status=status,
            events=tuple(events),
            next_tick=pool.spec.scaling.polling_interval,
            decision=decision,
            backlog=observed if isinstance(observed, Backlog) else None,
            change=replicas - scale.replicas,
            workload_replicas=scale.current_replicas,
            replica_bounds=(spec.min_replicas, spec.max_replicas),
        )

    def _read(self, body: Mapping[str, Any], state: PoolState) -> _Parsed:
        """The pool read from `body` (`spec.parse_pool`) and judged against `--pod-security`,
        or the same as last time when nothing they read has changed: the spec (by value), the
        paused-replicas annotation, and the metadata a `Pool` carries."""
        meta = body.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        key = (
            meta.get("namespace"),
            meta.get("name"),
            meta.get("uid"),
            meta.get("generation"),
            annotations.get(PAUSED_REPLICAS_ANNOTATION),
        )
        spec = fingerprint(body.get("spec"))
        known = state.parsed
        if known is not None and known.key == key and known.spec == spec:
            return known
        try:
            pool: Pool | SpecError = parse_pool(body, max_replicas_limit=self._max_replicas_limit)
        except SpecError as exc:
            pool = exc
        violations = (
            ()
            if isinstance(pool, SpecError)
            else _pod_security_violations(pool, self._pod_security)
        )
        state.parsed = _Parsed(key, spec, pool, violations)
        return state.parsed

    async def _observe(
        self, pool: Pool, engine: Engine | ProbeError, state: PoolState, now: datetime
    ) -> tuple[Backlog | ProbeFailed, ProbeResult | None]:
        """Measure, and keep the failure count the fallback depends on."""
        if isinstance(engine, ProbeError):
            error: ProbeError = engine
        else:
            explicit = [_selector(s) for s in pool.spec.backlog.selectors] or None
            deadline = PROBE_DEADLINE_FACTOR * pool.spec.engine.timeout_seconds
            try:
                result = await self._probe(state, engine, pool.spec.topic, explicit, deadline)
            except ProbeError as exc:
                error = exc
            except TimeoutError:
                error = ProbeError(
                    f"no answer within {deadline:g}s ({PROBE_DEADLINE_FACTOR} x "
                    "engine.timeoutSeconds): the engine hangs or is too slow"
                )
            else:
                state.consecutive_failures = 0
                state.last_success = now
                state.last_error = None
                return result.backlog, result
        state.consecutive_failures += 1
        state.last_error = str(error)
        log.warning(
            "backlog probe failed for %s/%s (%d in a row): %s",
            pool.namespace,
            pool.name,
            state.consecutive_failures,
            error,
        )
        return ProbeFailed(error=str(error), status=_http_status(error)), None

    def _shared(
        self,
        pool: Pool,
        engine: Engine | ProbeError,
        result: ProbeResult | None,
        now: datetime,
    ) -> tuple[str, ...]:
        """The other pools counting this pool's jobs (`overlap`); none when it counted nothing."""
        me = f"{pool.namespace}/{pool.name}"
        if result is None or not isinstance(engine, Engine) or not result.selectors:
            self._overlaps.forget(me)
            return ()
        lapse = max(OVERLAP_LAPSE_INTERVALS * pool.spec.scaling.polling_interval, OVERLAP_LAPSE_MIN)
        return self._overlaps.record(me, engine, result.selectors, now, lapse=lapse)

    async def _probe(
        self,
        state: PoolState,
        engine: Engine,
        topic: str,
        explicit: Sequence[Selector] | None,
        deadline: float,
    ) -> ProbeResult:
        """The backlog within `deadline` seconds, else `TimeoutError` (a failed probe).

        A probe past its deadline is not cancelled: discovering a large engine's models may take
        longer than one deadline, and would never finish if every tick started it over. It goes
        on, and the next tick asking the same question awaits it (with a deadline of its own)
        instead of starting another; a changed question drops it.
        """
        key = (engine, topic, tuple(explicit or ()))
        running = state.probe
        if running is None or running.key != key:
            if running is not None:
                _drop(running.task)
            task = asyncio.ensure_future(self._prober.backlog(engine, topic, explicit))
            running = state.probe = _Probe(key, task)
        try:
            return await asyncio.wait_for(asyncio.shield(running.task), timeout=deadline)
        finally:
            if running.task.done() and state.probe is running:
                state.probe = None

    async def _holders(
        self,
        pool: Pool,
        engine: Engine,
        scale: Scale,
        backlog: Backlog,
        selectors: Sequence[Selector],
        now: datetime,
    ) -> tuple[Backlog, InFlight | None]:
        """The backlog with who holds its jobs, when the core might release replicas holding
        none: no job waits, some are in flight, and more replicas run than the floor.

        Asked only then, so an idle pool (nothing in flight) and a pool with a queue cost no
        more than their counts. The pods are listed only once no job has arrived for
        `releaseIdleAfter`, and the holders count only when every lock owner is one of them (a
        `workerId` that is not a pod name, or a pod already gone, tells nothing about which
        replicas are idle). Failing here is not a failed probe: the core simply releases
        nothing, as before.
        """
        spec = pool.scaling_spec
        after = spec.release_idle_after
        if (
            after is None
            or backlog.unlocked
            or not backlog.locked
            or scale.replicas <= max(spec.min_replicas, 1)
            or not scale.selector
            or not selectors
        ):
            return backlog, None
        try:
            held = await self._prober.in_flight(engine, selectors)
        except ProbeError as exc:
            log.info(
                "listing the jobs in flight of %s/%s failed: %s", pool.namespace, pool.name, exc
            )
            return backlog, None
        newest = held.newest_created
        if newest is None or now - newest < after or len(held.owners) > backlog.locked:
            return replace(backlog, newest_created=newest), held
        try:
            pods = await self._workload.live_pods(pool, scale.selector)
        except Exception as exc:  # any failure only means "release nothing"
            log.info("listing the pods of %s/%s failed: %s", pool.namespace, pool.name, exc)
            return replace(backlog, newest_created=newest), held
        holders = len(held.owners) if set(held.owners) <= pods else None
        return replace(backlog, newest_created=newest, holders=holders), held

    async def _dated_queue(
        self,
        pool: Pool,
        engine: Engine,
        scale: Scale,
        backlog: Backlog,
        selectors: Sequence[Selector],
    ) -> Backlog:
        """The backlog with its oldest waiting job dated, when a small queue would otherwise add
        a replica (`ScalingSpec.defer_small_queues`): one `size=1` request per selector, only
        then. Failing leaves it undated, and the core falls back to "seen twice in a row"."""
        spec = pool.scaling_spec
        if (
            not spec.defer_small_queues
            or not 0 < backlog.unlocked <= max(spec.jobs_per_replica, backlog.locked)
            or scale.replicas < 1
            or backlog.outstanding <= scale.replicas * spec.jobs_per_replica
            or not selectors
        ):
            return backlog
        try:
            oldest = await self._prober.oldest_waiting(engine, selectors)
        except ProbeError as exc:
            log.info("dating the queue of %s/%s failed: %s", pool.namespace, pool.name, exc)
            return backlog
        return replace(backlog, oldest_waiting_created=oldest)

    async def _apply(
        self,
        pool: Pool,
        engine: Engine | ProbeError,
        scale: Scale,
        decision: Decision,
        observed: Backlog | ProbeFailed,
        selectors: Sequence[Selector],
        held: InFlight | None,
    ) -> None:
        """Set the replicas; before going down, make pods that hold locks the last to go."""
        going_down = decision.desired_replicas < scale.replicas
        if (
            going_down
            and isinstance(observed, Backlog)
            and observed.locked > 0
            and isinstance(engine, Engine)
            and scale.selector
        ):
            if held is None:
                held = await self._prober.in_flight(engine, selectors)
            await self._workload.set_deletion_costs(pool, scale.selector, held.owners)
        await self._workload.set_replicas(pool, decision.desired_replicas)

    def _stopped(
        self,
        state: PoolState,
        conditions: list[dict[str, Any]],
        generation: int,
        now: datetime,
        *,
        reason: str,
        message: str,
    ) -> Outcome:
        """A tick that cannot act: say why in Ready and (once per problem) in a Warning Event."""
        conditions = _not_ready(conditions, reason, message, generation=generation, now=now)
        events: tuple[Event, ...] = ()
        key = f"{generation}:{reason}:{message}"
        if key not in state.warned:
            state.warned.add(key)
            events = (Event("Warning", reason, message),)
        return Outcome(
            status={"observedGeneration": generation, "conditions": conditions},
            events=events,
            next_tick=SPEC_RETRY,
        )


def _not_ready(
    conditions: list[dict[str, Any]], reason: str, message: str, *, generation: int, now: datetime
) -> list[dict[str, Any]]:
    return set_condition(
        conditions,
        type=READY,
        status=False,
        reason=reason,
        message=message,
        generation=generation,
        now=now,
    )


def _drop(task: asyncio.Future[ProbeResult]) -> None:
    """Cancel a probe nobody waits for any more, or read its outcome so none goes unnoticed."""
    if not task.done():
        task.cancel()
    elif not task.cancelled():
        task.exception()


_UNEXPECTED_MESSAGE_CHARS = 512


def _unexpected_message(exc: BaseException) -> str:
    """What Ready says about an unexpected error: its type and a bounded first line, nothing more.

    Exception texts can quote what the engine or the API server sent; a status is readable by
    anyone with `view`, so only the first line of our own exception's text, capped, goes there.
    """
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if len(text) > _UNEXPECTED_MESSAGE_CHARS:
        text = text[:_UNEXPECTED_MESSAGE_CHARS] + "..."
    detail = f": {text}" if text else ""
    return (
        f"unexpected error while reconciling ({type(exc).__name__}{detail}); this is a bug of "
        "the operator's: the pool is retried, and the operator's log has the traceback"
    )


def _conditions(
    *,
    pool: Pool,
    spec: ScalingSpec,
    decision: Decision,
    observed: Backlog | ProbeFailed,
) -> list[ConditionUpdate]:
    """The five conditions after a tick that reached a decision (`status.set_conditions`)."""
    updates: list[ConditionUpdate] = []
    if isinstance(observed, Backlog):
        updates.append((ENGINE_REACHABLE, True, "ProbeSucceeded", "the backlog was measured"))
        active = observed.unlocked > spec.activation_backlog or observed.locked > 0
        updates.append(
            (
                ACTIVE,
                active,
                "JobsOutstanding" if active else "Idle",
                f"{observed.unlocked} unlocked and {observed.locked} locked jobs",
            )
        )
    else:
        updates.append((ENGINE_REACHABLE, False, "ProbeFailed", observed.error))
        updates.append((ACTIVE, None, "ProbeFailed", "the backlog is unknown"))
    fallback = decision.reason is Reason.FALLBACK
    updates.append(
        (
            FALLBACK,
            fallback,
            "FallbackApplied" if fallback else "ProbeHealthy",
            decision.message if fallback else "no fallback in effect",
        )
    )
    updates.append(
        (
            PAUSED,
            pool.paused,
            "Paused" if pool.paused else "NotPaused",
            decision.message if pool.paused else "scaling is active",
        )
    )
    if isinstance(observed, ProbeFailed):
        # Holding (or the fallback) keeps pods running, but the pool is blind: not Ready.
        updates.append((READY, False, "BacklogUnknown", decision.message))
    else:
        updates.append((READY, True, str(decision.reason), decision.message))
    return updates


def _backlog_status(
    observed: Backlog | ProbeFailed, previous: object, now: datetime
) -> dict[str, Any] | None:
    """`status.backlog`: this tick's measurement, or, while the probe fails, the last one kept
    as it was (its `observedTime` says when) and marked `stale`; None before any measurement."""
    if isinstance(observed, Backlog):
        return {
            "unlocked": observed.unlocked,
            "locked": observed.locked,
            "observedTime": format_time(now),
            "stale": False,
        }
    if not isinstance(previous, Mapping) or "unlocked" not in previous:
        return None
    return {**previous, "stale": True}


_AUTH_STATUSES = (401, 403)


def _auth_refusal(pool: Pool, observed: Backlog | ProbeFailed, state: PoolState) -> str | None:
    """A Warning's message when the engine refused the pool's credentials (401/403), once per
    refusal: a measurement in between (the Secret fixed) lets the next refusal warn again."""
    key = "auth-refused"
    if isinstance(observed, Backlog) or observed.status not in _AUTH_STATUSES:
        if isinstance(observed, Backlog):
            state.warned.discard(key)
        return None
    if key in state.warned:
        return None
    state.warned.add(key)
    ref = pool.spec.engine.auth_secret_ref
    if ref is None:
        return (
            f"the engine answered HTTP {observed.status} and the pool names no "
            "engine.authSecretRef: give one with the engine's credentials"
        )
    return (
        f"the engine refused the credentials of Secret {pool.namespace}/{ref.name} "
        f"(engine.authSecretRef) with HTTP {observed.status}: fix the Secret; the operator reads "
        "it at every tick, and the worker pods are rolled when it changes"
    )


def _http_status(error: BaseException) -> int | None:
    """The HTTP status behind a probe error, looked for along its causes (the client's error,
    discovery's), or None when no answer came."""
    seen: BaseException | None = error
    for _ in range(5):
        if seen is None:
            return None
        status = getattr(seen, "status", None)
        if isinstance(status, int):
            return status
        response = getattr(seen, "response", None)
        code = getattr(response, "status_code", None)
        if isinstance(code, int):
            return code
        seen = seen.__cause__
    return None


_SHOWN_VIOLATIONS = 10
_SHOWN_PROBLEMS = 5
_SHOWN_WARNINGS = 5
_SHOWN_SELECTORS = 100
"""Selectors listed in status: a key or a discovered element counted per version may stand for
hundreds of definitions, and the status must not grow with the engine's history."""


def _held(observed: Backlog | ProbeFailed, result: ProbeResult | None) -> Backlog | ProbeFailed:
    """What the scaling core sees: a pool that found nothing to count holds its replicas (as
    with a failed probe; the failures in a row stay 0, so no fallback) instead of reading
    "idle": a mistyped topic, a model not deployed yet or a stale selector must not scale a
    busy pool down, while its owner is told (`_blocker`)."""
    if result is None or result.topic_found or not isinstance(observed, Backlog):
        return observed
    return ProbeFailed(error="nothing to count: no deployed model matches the pool")


def _blocker(pool: Pool, result: ProbeResult | None) -> tuple[str, str] | None:
    """Ready=False's reason and message when the probe found nothing to count, else None."""
    if result is None or result.topic_found:
        return None
    if result.problems:
        return "TopicNotResolved", _listed(result.problems) + "; holding the replicas"
    if pool.spec.backlog.selectors:
        return (
            "SelectorsNotFound",
            "no backlog selector matches a deployed definition (see the SelectorNotFound "
            "Events); fix backlog.selectors or deploy the model; holding the replicas",
        )
    return (
        "TopicNotFound",
        f"no deployed BPMN or CMMN model has an external-worker task on topic "
        f"{pool.spec.topic!r}: check spec.topic (and engine.processApiPath, cmmnApiPath), or "
        "deploy the model; holding the replicas until one is found",
    )


def _topic_conditions(
    *, blocker: tuple[str, str] | None, shared: Sequence[str]
) -> list[ConditionUpdate]:
    """Ready=False when nothing was found to count, and SharedBacklog, after `_conditions`
    (a later update of a type wins: `status.set_conditions`)."""
    updates: list[ConditionUpdate] = []
    if blocker is not None:
        updates.append((READY, False, *blocker))
    updates.append(
        (
            SHARED_BACKLOG,
            bool(shared),
            "OtherPoolsCountTheseJobs" if shared else "NotShared",
            shared_message(shared) if shared else "no other pool counts these jobs",
        )
    )
    return updates


def _listed(problems: Sequence[str]) -> str:
    """The first problems and how many more: a condition message stays small however many
    models an engine holds (each is also a Warning Event, once)."""
    shown = "; ".join(problems[:_SHOWN_PROBLEMS])
    more = len(problems) - _SHOWN_PROBLEMS
    return shown + (f"; and {more} more (see the Warning Events)" if more > 0 else "")


def _pod_security_violations(pool: Pool, level: Level) -> tuple[Violation, ...]:
    """What of the worker pod template (as the operator would create it) breaks `level`."""
    if level == "privileged" or pool.spec.worker is None:
        return ()
    # The image plays no part in Pod Security; the Deployment is built only to be looked at.
    manifest = build_deployment(pool, default_image="worker", replicas=0)
    return check(manifest["spec"]["template"], level)


def _pod_security_message(level: Level, violations: Sequence[Violation]) -> str:
    shown = "; ".join(f"worker.template.{v}" for v in violations[:_SHOWN_VIOLATIONS])
    more = len(violations) - _SHOWN_VIOLATIONS
    return (
        f"the worker pod template is outside the {level} Pod Security Standard this operator "
        f"enforces (--pod-security): {shown}" + (f"; and {more} more" if more > 0 else "")
    )


def _conflict_message(me: Claim, other: Claim) -> str:
    if other.kind == "HorizontalPodAutoscaler":
        why = "an HPA cannot be told to stop, so the pool steps back (delete the HPA or scale "
        why += "another workload)"
    else:
        why = f"the older pool (created {other.created or 'earlier'}) keeps it (point this pool "
        why += "at another workload, or delete one of the two)"
    return (
        f"{me.target} is also scaled by {other}; two scalers would fight over its replicas, "
        f"so this pool leaves it alone: {why}"
    )


def _target_reason(error: TargetError) -> str:
    if isinstance(error, WorkloadRefusedError):
        return "InvalidSpec"  # the API server refused what the spec makes: the spec must change
    if isinstance(error, TargetNotFoundError):
        return "TargetNotFound"
    if isinstance(error, NotControlledError):
        return "TargetNotControlled"
    return "TargetError"


def _restore(state: PoolState, status: Mapping[str, Any]) -> None:
    """After a restart, keep the idle clock from status so cooldown is not lost or reset.

    Not when the status shows work measured (a fresh backlog above zero): the pool was busy up
    to its last tick, while `lastActiveTime`, a heartbeat (`status.keep_heartbeats`), moved last
    when something else in the status did, maybe hours before; the clock then starts at this
    tick, as for an unknown one, so a restart never shortens a cooldown."""
    state.restored = True
    active = parse_time(status.get("lastActiveTime"))
    if _busy(status.get("backlog")):
        active = None
    if active is not None and state.history.last_active_time is None:
        state.history = replace(state.history, last_active_time=active)
    probe = status.get("probe") or {}
    state.consecutive_failures = int(probe.get("consecutiveFailures") or 0)


def _busy(backlog: object) -> bool:
    """A status backlog measured fresh (not `stale`) with jobs waiting or in flight."""
    if not isinstance(backlog, Mapping) or backlog.get("stale"):
        return False
    counts = (backlog.get("unlocked"), backlog.get("locked"))
    return any(isinstance(count, int) and count > 0 for count in counts)


def _selector(spec: Any) -> Selector:
    return Selector(
        element_id=spec.element_id,
        process_definition_id=spec.process_definition_id,
        scope_definition_id=spec.scope_definition_id,
        tenant_id=spec.tenant_id,
        process_definition_key=spec.process_definition_key,
        case_definition_key=spec.case_definition_key,
    )


def _selector_status(selector: Selector, topic: str) -> dict[str, Any]:
    shown = {
        "topic": topic,
        "elementId": selector.element_id,
        "processDefinitionId": selector.process_definition_id,
        "scopeDefinitionId": selector.scope_definition_id,
        "tenantId": selector.tenant_id,
    }
    return {key: value for key, value in shown.items() if value is not None}


def _timestamp(value: datetime | None) -> str | None:
    return None if value is None else format_time(value)
