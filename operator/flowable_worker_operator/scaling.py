"""Deciding a pool's replica count: the operator's pure core.

Takes values (the pool's scaling spec, one backlog observation, the history carried from earlier
decisions) and returns a `Decision`: the replica count, a machine reason, a human message, and the
history to carry into the next call. It must never do I/O, read a clock, or import kopf or
kubernetes: the shell measures, applies and records, so this stays testable with tables and
property tests.

The semantics are the Kubernetes HPA v2 ones (``horizontal.go``): tolerance, scale-up and
scale-down stabilization windows, Pods/Percent policies per period with ``selectPolicy``, clamping
to ``[min, max]``. On top sit the two steps HPA cannot take, written the KEDA way: *activation*
(0 -> 1+, when unlocked work exceeds ``activation_backlog`` or jobs are still locked) and
*cooldown* (N -> 0, only after the pool has been idle for ``cooldown_period``). Both are the
operator's own steps, not HPA's, so ``select_policy=Disabled`` and the stabilization windows do not
apply to them; ``min_replicas``/``max_replicas`` always do.

A third step HPA cannot take is *idle release* (``release_idle_after``): once no job has waited or
run for that long, the replicas above one are idle for certain (no replica holds a job), so they
are released at once instead of being held by the scale-down window for the cooldown's length; the
last replica stays warm until the cooldown ends. The window exists to ride out a metric's noise and
to spare busy pods; an empty backlog is neither noise nor busy. The scale-down policies still
limit how fast the release goes. The same holds while the last jobs still run: once no job waits
and none has arrived for ``release_idle_after``, the replicas that hold no job (the shell counts
the lock owners, ``Backlog.holders``) are released, and those holding jobs stay until they end.

With ``defer_small_queues``, a queue no longer than the jobs in flight (and at least one
replica's worth) adds no replica while replicas run, until its oldest job has waited a whole
``polling_interval`` (or, when the
shell could not date it, until it is seen at two observations in a row). The jobs in flight free
their slots as they finish, which for short jobs is sooner than a new worker starts; a queue that
outlasts an interval, or a larger one, scales at once.

A failed probe never reads as zero backlog: below the fallback threshold the pool holds its
replicas, at and after it the fallback applies. A paused pool is frozen.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

__all__ = [
    "PERIOD_SLACK",
    "Backlog",
    "Decision",
    "FallbackBehavior",
    "FallbackSpec",
    "History",
    "Observation",
    "PolicyType",
    "ProbeFailed",
    "Reason",
    "Recommendation",
    "ScaleEvent",
    "ScalingBehavior",
    "ScalingPolicy",
    "ScalingRules",
    "ScalingSpec",
    "SelectPolicy",
    "decide",
    "default_scale_down_rules",
    "default_scale_up_rules",
    "failures_shown",
    "pool_scale_down_rules",
]


class PolicyType(StrEnum):
    """How a policy's value limits a change: in pods, or in percent of the period's start."""

    PODS = "Pods"
    PERCENT = "Percent"


class SelectPolicy(StrEnum):
    """Which policy wins when several apply: the largest change, the smallest, or none at all."""

    MAX = "Max"
    MIN = "Min"
    DISABLED = "Disabled"


class FallbackBehavior(StrEnum):
    """What the fallback replica count means once the probe has failed often enough."""

    STATIC = "static"
    CURRENT_REPLICAS_IF_HIGHER = "currentReplicasIfHigher"
    CURRENT_REPLICAS_IF_LOWER = "currentReplicasIfLower"


class Reason(StrEnum):
    """The machine token of a decision; it ends up in Events, status conditions and logs."""

    SCALE_UP = "ScaleUp"
    SCALE_DOWN = "ScaleDown"
    STABLE = "Stable"
    IDLE = "Idle"
    ACTIVATED = "Activated"
    COOLED_DOWN = "CooledDown"
    FALLBACK = "Fallback"
    PAUSED = "Paused"
    PROBE_FAILED_HOLDING = "ProbeFailedHolding"


@dataclass(frozen=True)
class ScalingPolicy:
    """At most ``value`` pods (or percent) of change within any trailing ``period``."""

    type: PolicyType
    value: int
    period: timedelta

    def __post_init__(self) -> None:
        if self.value <= 0:
            raise ValueError(f"a scaling policy's value must be positive, got {self.value}")
        if self.period <= timedelta(0):
            raise ValueError(f"a scaling policy's period must be positive, got {self.period}")


@dataclass(frozen=True)
class ScalingRules:
    """One direction's behavior: how long to look back before moving, and how fast to move."""

    stabilization_window: timedelta
    policies: tuple[ScalingPolicy, ...]
    select_policy: SelectPolicy = SelectPolicy.MAX

    def __post_init__(self) -> None:
        if self.stabilization_window < timedelta(0):
            raise ValueError("a stabilization window cannot be negative")
        if not self.policies and self.select_policy is not SelectPolicy.DISABLED:
            raise ValueError(
                "scaling rules need at least one policy unless selectPolicy is Disabled"
            )


def default_scale_up_rules() -> ScalingRules:
    """HPA's default scale-up: no window; double, or add 4 pods, per 15 s, whichever is more."""
    return ScalingRules(
        stabilization_window=timedelta(0),
        policies=(
            ScalingPolicy(type=PolicyType.PERCENT, value=100, period=timedelta(seconds=15)),
            ScalingPolicy(type=PolicyType.PODS, value=4, period=timedelta(seconds=15)),
        ),
        select_policy=SelectPolicy.MAX,
    )


def default_scale_down_rules() -> ScalingRules:
    """HPA's default scale-down: a 300 s window, then anything down to the target per 15 s."""
    return ScalingRules(
        stabilization_window=timedelta(seconds=300),
        policies=(ScalingPolicy(type=PolicyType.PERCENT, value=100, period=timedelta(seconds=15)),),
        select_policy=SelectPolicy.MAX,
    )


POOL_SCALE_DOWN_WINDOW = timedelta(seconds=60)
"""A pool's default scale-down stabilization window, shorter than HPA's 300 s on purpose.

HPA needs five minutes because its usual metrics fall to zero while pods are still busy (a queue
drains long before its work is done) and because a scale-down may kill a pod mid-request. Neither
holds here: the pool's metric counts the jobs in flight (`Backlog.outstanding`), so it stays up for
as long as the work lasts, and a scale-down never loses a job (busy pods cost more to delete and a
stopping worker finishes or gives back what it holds). What is left to ride out is sampling noise:
four samples at the default 15 s polling interval. Measured against the real KEDA with HPA's
default window, the 300 s window held the peak of every wave and ramp for five minutes."""


def pool_scale_down_rules() -> ScalingRules:
    """A pool's default scale-down: HPA's policies with `POOL_SCALE_DOWN_WINDOW`."""
    return replace(default_scale_down_rules(), stabilization_window=POOL_SCALE_DOWN_WINDOW)


@dataclass(frozen=True)
class ScalingBehavior:
    """Both directions' rules; the defaults are the HPA v2 defaults."""

    scale_up: ScalingRules = field(default_factory=default_scale_up_rules)
    scale_down: ScalingRules = field(default_factory=default_scale_down_rules)


@dataclass(frozen=True)
class FallbackSpec:
    """Replicas to run once the backlog probe has failed ``failure_threshold`` times in a row."""

    failure_threshold: int
    replicas: int
    behavior: FallbackBehavior = FallbackBehavior.STATIC

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError("a fallback's failure threshold must be at least 1")
        if self.replicas < 0:
            raise ValueError("a fallback's replica count cannot be negative")


@dataclass(frozen=True)
class ScalingSpec:
    """Everything the pool's resource says about scaling, already parsed and typed.

    ``paused`` and ``paused_replicas`` come from ``spec.paused`` and the
    ``flowable-worker.io/paused-replicas`` annotation; the shell gathers them here so the core sees
    one value.

    ``release_idle_after``: how long no job may have waited or run before the replicas above one
    are released at once, whatever the scale-down window, and how long no job may have arrived
    (none waiting) before the replicas that hold no job are; None keeps HPA's semantics (the
    window holds them until the cooldown).

    ``defer_small_queues``: a queue of at most ``max(jobs_per_replica, locked)`` waiting jobs
    adds no replica until its oldest has waited ``polling_interval`` (undated: until it is seen
    twice in a row); False scales on it at once, as HPA would.
    """

    min_replicas: int
    max_replicas: int
    jobs_per_replica: int
    activation_backlog: int = 0
    cooldown_period: timedelta = timedelta(seconds=300)
    release_idle_after: timedelta | None = None
    defer_small_queues: bool = False
    polling_interval: timedelta = timedelta(seconds=15)
    tolerance: float = 0.1
    behavior: ScalingBehavior = field(default_factory=ScalingBehavior)
    fallback: FallbackSpec | None = None
    paused: bool = False
    paused_replicas: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.min_replicas <= self.max_replicas:
            raise ValueError(
                f"need 0 <= minReplicas <= maxReplicas, got {self.min_replicas} and "
                f"{self.max_replicas}"
            )
        if self.jobs_per_replica < 1:
            raise ValueError(f"jobsPerReplica must be at least 1, got {self.jobs_per_replica}")
        if self.activation_backlog < 0:
            raise ValueError("activationBacklog cannot be negative")
        if self.cooldown_period < timedelta(0):
            raise ValueError("cooldownPeriod cannot be negative")
        if self.release_idle_after is not None and self.release_idle_after < timedelta(0):
            raise ValueError("releaseIdleAfter cannot be negative")
        if self.polling_interval <= timedelta(0):
            raise ValueError("pollingInterval must be positive")
        if self.tolerance < 0:
            raise ValueError("tolerance cannot be negative")
        if self.paused_replicas is not None and self.paused_replicas < 0:
            raise ValueError("paused replicas cannot be negative")


@dataclass(frozen=True)
class Backlog:
    """A successful probe: jobs waiting to be acquired, and jobs acquired and still in flight.

    ``holders`` and ``newest_created`` are known only when the shell listed the locked jobs
    (it does when replicas might be released while jobs run): the replicas holding at least one
    job, counted only when every lock owner is a live pod of the pool's workload; and when the
    newest job in flight was created, in the engine's clock. A clock ahead of the operator's only
    delays a release; one behind it can release idle replicas early, never a busy one.
    ``oldest_waiting_created``: when the longest-waiting job was created (the engine's clock),
    known when the shell asked, for a small queue (``ScalingSpec.defer_small_queues``).
    """

    unlocked: int
    locked: int
    holders: int | None = None
    newest_created: datetime | None = None
    oldest_waiting_created: datetime | None = None

    def __post_init__(self) -> None:
        if self.unlocked < 0 or self.locked < 0:
            raise ValueError("backlog counts cannot be negative")
        if self.holders is not None and not 0 <= self.holders <= self.locked:
            raise ValueError("holders must be between 0 and the locked jobs")

    @property
    def outstanding(self) -> int:
        """The work the pool must hold replicas for: in-flight jobs count as waiting ones do."""
        return self.unlocked + self.locked


@dataclass(frozen=True)
class ProbeFailed:
    """A failed probe. It is its own type so that it can never be mistaken for an empty backlog.

    ``status``: the engine's HTTP status, if it answered at all (a 401/403 names the Secret in a
    Warning); the core decides the same whatever it is.
    """

    error: str
    status: int | None = None


@dataclass(frozen=True)
class Observation:
    """One polling interval's view. ``consecutive_failures`` includes this probe if it failed."""

    now: datetime
    current_replicas: int
    backlog: Backlog | ProbeFailed
    consecutive_failures: int = 0


@dataclass(frozen=True)
class Recommendation:
    """An unstabilized replica count computed from the backlog at ``time``."""

    time: datetime
    replicas: int


@dataclass(frozen=True)
class ScaleEvent:
    """A replica change this core decided at ``time``: positive up, negative down."""

    time: datetime
    change: int


@dataclass(frozen=True)
class History:
    """What one decision carries to the next: HPA keeps this in memory, the operator in status.

    An empty history means a fresh start (new pool or restarted operator): then the current replica
    count counts as a recommendation made now, as HPA does, so a restart never scales down at once.
    """

    recommendations: tuple[Recommendation, ...] = ()
    scale_events: tuple[ScaleEvent, ...] = ()
    last_active_time: datetime | None = None
    queue_seen: bool = False
    """Whether the last successful observation saw a job waiting (``defer_small_queues``)."""
    arrivals_stopped: bool = False
    """Whether, at the last successful observation, no job waited and none had arrived for
    ``release_idle_after``: then an empty backlog next means the work is done, not a lull."""


@dataclass(frozen=True)
class Decision:
    """The replica count to set, why (a token and a sentence), and the history to carry forward."""

    desired_replicas: int
    reason: Reason
    message: str
    history: History


def decide(*, spec: ScalingSpec, observation: Observation, history: History) -> Decision:
    """Decide the pool's replica count for one observation.

    The order is the order of trust: a pause overrides everything; a failed probe leaves nothing to
    compute from, so the pool holds or falls back; only a real backlog drives the HPA arithmetic.
    """
    current = observation.current_replicas
    if spec.paused:
        frozen = current if spec.paused_replicas is None else spec.paused_replicas
        return Decision(
            desired_replicas=frozen,
            reason=Reason.PAUSED,
            message=f"the pool is paused at {frozen} replicas (currently {current})",
            history=history,
        )
    if isinstance(observation.backlog, ProbeFailed):
        return _decide_without_backlog(
            spec=spec, observation=observation, error=observation.backlog, history=history
        )
    return _decide_from_backlog(
        spec=spec, observation=observation, backlog=observation.backlog, history=history
    )


FAILURES_SHOWN = 3
"""Without a fallback, the failed probes in a row that status and messages count one by one."""


def failures_shown(count: int, spec: ScalingSpec) -> int:
    """The failed probes in a row as the pool's status counts them: one by one up to the
    fallback's threshold (at least `FAILURES_SHOWN`), then that number stays.

    Past it the decision no longer changes with the count, and a pool whose engine stays down
    would otherwise rewrite its status on every tick only to move a counter (`N in a row`): for
    1000 such pools, 1000 PATCHes an interval saying nothing new. The exact count stays in the
    logs and in `flowable_pool_probe_consecutive_failures`."""
    threshold = spec.fallback.failure_threshold if spec.fallback is not None else 0
    return min(count, max(FAILURES_SHOWN, threshold))


def _failures_text(count: int, spec: ScalingSpec) -> str:
    shown = failures_shown(count, spec)
    return f"{shown}+" if shown < count else str(count)


def _decide_without_backlog(
    *, spec: ScalingSpec, observation: Observation, error: ProbeFailed, history: History
) -> Decision:
    """Hold, or fall back: never act as if the backlog were empty when it is merely unknown."""
    current = observation.current_replicas
    failures = observation.consecutive_failures
    counted = _failures_text(failures, spec)
    fallback = spec.fallback
    if fallback is None or failures < fallback.failure_threshold:
        threshold = (
            "no fallback configured"
            if fallback is None
            else (f"fallback after {fallback.failure_threshold}")
        )
        return Decision(
            desired_replicas=current,
            reason=Reason.PROBE_FAILED_HOLDING,
            message=(
                f"the backlog probe failed ({counted} in a row, {threshold}: {error.error}); "
                f"holding {current} replicas"
            ),
            history=history,
        )
    chosen = {
        FallbackBehavior.STATIC: fallback.replicas,
        FallbackBehavior.CURRENT_REPLICAS_IF_HIGHER: max(current, fallback.replicas),
        FallbackBehavior.CURRENT_REPLICAS_IF_LOWER: min(current, fallback.replicas),
    }[fallback.behavior]
    desired = _clamp(chosen, low=spec.min_replicas, high=spec.max_replicas)
    return Decision(
        desired_replicas=desired,
        reason=Reason.FALLBACK,
        message=(
            f"the backlog probe failed {counted} times in a row (threshold "
            f"{fallback.failure_threshold}: {error.error}); fallback {fallback.behavior} with "
            f"{fallback.replicas} replicas gives {desired} (currently {current})"
        ),
        history=_carry(
            history=history,
            spec=spec,
            now=observation.now,
            current=current,
            desired=desired,
            recommendation=None,
        ),
    )


def _decide_from_backlog(
    *, spec: ScalingSpec, observation: Observation, backlog: Backlog, history: History
) -> Decision:
    """The HPA arithmetic, plus the activation and cooldown steps at zero."""
    now = observation.now
    current = observation.current_replicas
    outstanding = backlog.outstanding
    # Work seen (waiting or in flight) restarts the idle clock; an unknown clock starts now, so a
    # restarted operator waits a whole cooldown before scaling to zero.
    last_active = (
        now if outstanding > 0 or history.last_active_time is None else history.last_active_time
    )
    queue_before = history.queue_seen
    stopped_before = history.arrivals_stopped
    quiet_for = _quiet_for(spec, backlog, now)
    history = History(
        recommendations=history.recommendations,
        scale_events=history.scale_events,
        last_active_time=last_active,
        queue_seen=backlog.unlocked > 0,
        arrivals_stopped=quiet_for is not None or (outstanding == 0 and stopped_before),
    )
    counts = f"{backlog.unlocked} unlocked + {backlog.locked} locked jobs"

    if current == 0:
        return _decide_at_zero(
            spec=spec, observation=observation, backlog=backlog, history=history, counts=counts
        )

    raw = _proposal(outstanding=outstanding, current=current, spec=spec)
    deferred = _deferral(spec, backlog, now, queue_before) if raw > current else ""
    if deferred:
        raw = max(_proposal(outstanding=backlog.locked, current=current, spec=spec), current)
    if raw == 0:
        idle_for = now - last_active
        if spec.min_replicas == 0 and idle_for >= spec.cooldown_period:
            return Decision(
                desired_replicas=0,
                reason=Reason.COOLED_DOWN,
                message=(
                    f"no jobs for {idle_for.total_seconds():g}s (cooldown "
                    f"{spec.cooldown_period.total_seconds():g}s); scaling {current} -> 0"
                ),
                history=_carry(
                    history=history,
                    spec=spec,
                    now=now,
                    current=current,
                    desired=0,
                    recommendation=0,
                ),
            )
    # Above zero only cooldown may reach zero, so the HPA part works with a floor of one replica.
    recommendation = max(raw, 1)
    floor = max(spec.min_replicas, 1)
    # Without releaseIdleAfter there is no idle release, whatever the history says (a history
    # carried over from a spec that had one must not release, nor fail the tick).
    if (
        raw == 0
        and current > floor
        and spec.release_idle_after is not None
        and (_idle_release_due(spec, now - last_active) or stopped_before)
    ):
        return _release_idle(
            spec=spec,
            now=now,
            current=current,
            floor=floor,
            history=history,
            counts=counts,
            idle_for=now - last_active,
            after_arrivals_stopped=not _idle_release_due(spec, now - last_active),
        )
    if quiet_for is not None and backlog.holders is not None:
        if current > max(backlog.holders, floor):
            return _release_holding_none(
                spec=spec,
                now=now,
                current=current,
                holders=backlog.holders,
                floor=floor,
                history=history,
                counts=counts,
                quiet_for=quiet_for,
            )
        # Nothing waits or arrives, and every replica holds a job: more replicas would be idle.
        recommendation = min(recommendation, current)
    stabilized, window_note = _stabilize(
        recommendation=recommendation,
        current=current,
        history=history,
        behavior=spec.behavior,
        now=now,
    )
    limited, limit_note = _limit_rate(
        desired=stabilized, current=current, history=history, spec=spec, floor=floor, now=now
    )
    desired, clamp_note = _clamp_noted(limited, low=floor, spec=spec)
    reason = (
        Reason.SCALE_UP
        if desired > current
        else Reason.SCALE_DOWN
        if desired < current
        else Reason.STABLE
    )
    notes = "; ".join(note for note in (window_note, limit_note, clamp_note) if note)
    message = (
        f"{counts} at {spec.jobs_per_replica} per replica recommend {raw}{deferred}; "
        f"{current} -> {desired}" + (f" ({notes})" if notes else "")
    )
    return Decision(
        desired_replicas=desired,
        reason=reason,
        message=message,
        history=_carry(
            history=history,
            spec=spec,
            now=now,
            current=current,
            desired=desired,
            recommendation=recommendation,
        ),
    )


def _deferral(spec: ScalingSpec, backlog: Backlog, now: datetime, queue_before: bool) -> str:
    """Why a small queue adds no replica yet (a note for the message), or "" when it does.

    A queue no longer than the jobs in flight (at least one replica's worth) waits for them to
    free their slots, until its oldest job has waited a whole polling interval; undated, until it
    is seen twice. A longer queue, or one that has waited that long, scales at once.
    """
    if not spec.defer_small_queues or not 0 < backlog.unlocked <= _absorbable(spec, backlog):
        return ""
    interval = spec.polling_interval.total_seconds()
    free_first = "the jobs in flight free their slots first, so no replica is added"
    if backlog.oldest_waiting_created is not None:
        waited = (now - backlog.oldest_waiting_created).total_seconds()
        if waited >= interval:
            return ""
        return (
            f"; {backlog.unlocked} waiting, the oldest for {max(waited, 0):.0f}s: {free_first} "
            f"unless one waits the whole polling interval ({interval:g}s)"
        )
    if queue_before:
        return ""
    return (
        f"; {backlog.unlocked} waiting, first seen now: {free_first} unless the queue is still "
        "there next time"
    )


def _absorbable(spec: ScalingSpec, backlog: Backlog) -> int:
    """The most waiting jobs a small queue may hold: the jobs in flight (each frees a slot when it
    ends, so that many waiting jobs get one within a job's duration), and at least one replica's
    worth."""
    return max(spec.jobs_per_replica, backlog.locked)


def _idle_release_due(spec: ScalingSpec, idle_for: timedelta) -> bool:
    return spec.release_idle_after is not None and idle_for >= spec.release_idle_after


def _quiet_for(spec: ScalingSpec, backlog: Backlog, now: datetime) -> timedelta | None:
    """How long since the newest job in flight arrived, when no job waits and that is at least
    `release_idle_after`; else None (no release of the replicas holding no job)."""
    if spec.release_idle_after is None or backlog.unlocked or backlog.newest_created is None:
        return None
    quiet = now - backlog.newest_created
    return quiet if quiet >= spec.release_idle_after else None


def _release_holding_none(
    *,
    spec: ScalingSpec,
    now: datetime,
    current: int,
    holders: int,
    floor: int,
    history: History,
    counts: str,
    quiet_for: timedelta,
) -> Decision:
    """Work has stopped arriving and the last jobs run: the replicas holding none are idle.

    They would be held by the scale-down window until the last job ends and the window has
    passed; they can take nothing, since nothing waits, and nothing has arrived for a while. The
    shell marks the replicas that hold jobs with a higher `pod-deletion-cost` before scaling, so
    the idle ones go; the policies still pace the release.
    """
    assert spec.release_idle_after is not None  # checked by _quiet_for
    after = spec.release_idle_after.total_seconds()
    return _release_to(
        max(holders, floor),
        spec=spec,
        now=now,
        current=current,
        history=history,
        message=lambda desired: (
            f"{counts} held by {holders} of {current} replicas; none waits and the newest "
            f"arrived {quiet_for.total_seconds():.0f}s ago (releaseIdleAfter {after:g}s): "
            f"releasing the replicas that hold no job, {current} -> {desired}"
        ),
    )


def _release_to(
    keep: int,
    *,
    spec: ScalingSpec,
    now: datetime,
    current: int,
    history: History,
    message: Callable[[int], str],
) -> Decision:
    """A release down to `keep`, bypassing the scale-down window: the policies still pace it, and
    what it reaches is recorded as the recommendation, so the window does not bring the released
    replicas back. `message` says why, given the count reached; the limits' notes follow it."""
    limited, limit_note = _limit_rate(
        desired=keep, current=current, history=history, spec=spec, floor=keep, now=now
    )
    desired, clamp_note = _clamp_noted(limited, low=keep, spec=spec)
    notes = "; ".join(note for note in (limit_note, clamp_note) if note)
    return Decision(
        desired_replicas=desired,
        reason=Reason.SCALE_DOWN,
        message=message(desired) + (f" ({notes})" if notes else ""),
        history=_carry(
            history=history,
            spec=spec,
            now=now,
            current=current,
            desired=desired,
            recommendation=desired,
        ),
    )


def _release_idle(
    *,
    spec: ScalingSpec,
    now: datetime,
    current: int,
    floor: int,
    history: History,
    counts: str,
    idle_for: timedelta,
    after_arrivals_stopped: bool = False,
) -> Decision:
    """Idle release: no job waits or runs, so every replica above the floor is idle; drop them now
    (the scale-down policies still pace it) and keep one warm for the rest of the cooldown.

    Due once the pool has been idle for `release_idle_after`, or at once when the last
    observation already saw that no job had arrived for that long (`after_arrivals_stopped`):
    the work had stopped coming, and now the last of it is done."""
    assert spec.release_idle_after is not None  # checked by _idle_release_due
    after = spec.release_idle_after.total_seconds()
    why = (
        f"{counts}: the last jobs are done, and none had arrived for releaseIdleAfter "
        f"({after:g}s) before them"
        if after_arrivals_stopped
        else f"{counts} for {idle_for.total_seconds():g}s (releaseIdleAfter {after:g}s)"
    )
    last = (
        f"the last goes when the cooldown ({spec.cooldown_period.total_seconds():g}s) ends"
        if spec.min_replicas == 0
        else f"minReplicas {spec.min_replicas} stay"
    )
    return _release_to(
        floor,
        spec=spec,
        now=now,
        current=current,
        history=history,
        message=lambda desired: f"{why}: releasing idle replicas {current} -> {desired}; {last}",
    )


def _decide_at_zero(
    *,
    spec: ScalingSpec,
    observation: Observation,
    backlog: Backlog,
    history: History,
    counts: str,
) -> Decision:
    """Activation: leave zero only for real work, and then at least to one replica.

    Locked jobs with no replicas belong to workers that are gone; a replica must exist to pick them
    up again once their locks expire, so they activate the pool whatever ``activation_backlog``.
    """
    now = observation.now
    raw = math.ceil(backlog.outstanding / spec.jobs_per_replica)
    active = backlog.unlocked > spec.activation_backlog or backlog.locked > 0
    if not active:
        desired = _clamp(0, low=spec.min_replicas, high=spec.max_replicas)
        return Decision(
            desired_replicas=desired,
            reason=Reason.IDLE if desired == 0 else Reason.SCALE_UP,
            message=(
                f"{counts}, activation needs more than {spec.activation_backlog} unlocked; "
                + ("staying at 0" if desired == 0 else f"0 -> {desired} (minReplicas)")
            ),
            history=_carry(
                history=history, spec=spec, now=now, current=0, desired=desired, recommendation=raw
            ),
        )
    floor = max(spec.min_replicas, 1)
    limited, limit_note = _limit_rate(
        desired=max(raw, 1), current=0, history=history, spec=spec, floor=floor, now=now
    )
    desired, clamp_note = _clamp_noted(max(limited, 1), low=floor, spec=spec)
    noted = "; ".join(note for note in (limit_note, clamp_note) if note)
    notes = f" ({noted})" if noted else ""
    return Decision(
        desired_replicas=desired,
        reason=Reason.ACTIVATED if desired > 0 else Reason.IDLE,
        message=(
            f"{counts} at {spec.jobs_per_replica} per replica recommend {raw}; "
            f"activating 0 -> {desired}{notes}"
        ),
        history=_carry(
            history=history, spec=spec, now=now, current=0, desired=desired, recommendation=raw
        ),
    )


def _proposal(*, outstanding: int, current: int, spec: ScalingSpec) -> int:
    """ceil(outstanding / jobsPerReplica), unless that is within tolerance of the current count.

    As in HPA, tolerance compares the load ratio, not the rounded count, so small wobbles around
    the target never move the pool.
    """
    ratio = outstanding / (spec.jobs_per_replica * current)
    if abs(1.0 - ratio) <= spec.tolerance:
        return current
    return math.ceil(outstanding / spec.jobs_per_replica)


def _stabilize(
    *,
    recommendation: int,
    current: int,
    history: History,
    behavior: ScalingBehavior,
    now: datetime,
) -> tuple[int, str]:
    """HPA's windows: go up only to the lowest, down only to the highest, recent recommendation."""
    up_cutoff = now - behavior.scale_up.stabilization_window
    down_cutoff = now - behavior.scale_down.stabilization_window
    up_bound = recommendation
    down_bound = recommendation
    if not history.recommendations and behavior.scale_down.stabilization_window > timedelta(0):
        down_bound = max(down_bound, current)
    for past in history.recommendations:
        if past.time > up_cutoff:
            up_bound = min(up_bound, past.replicas)
        if past.time > down_cutoff:
            down_bound = max(down_bound, past.replicas)
    stabilized = min(max(current, up_bound), down_bound)
    if stabilized == recommendation:
        return stabilized, ""
    direction = "scale-up" if recommendation > current else "scale-down"
    return stabilized, f"{direction} stabilization window holds it at {stabilized}"


def _limit_rate(
    *,
    desired: int,
    current: int,
    history: History,
    spec: ScalingSpec,
    floor: int,
    now: datetime,
) -> tuple[int, str]:
    """HPA's policies: the change allowed within each policy's trailing period, then selectPolicy.

    ``floor`` is the least replicas the pool may run; like HPA's minReplicas it is not subject to
    the policies, so a pool below its floor is brought up to it in one step. ``maxReplicas`` is
    not applied here but by `_clamp_noted` afterwards, so that a note blames the policies only
    when they, and not maxReplicas, held the count back.
    """
    if desired > current:
        limit = _scale_up_limit(
            current=current, history=history, rules=spec.behavior.scale_up, now=now
        )
        allowed = max(limit, current, floor)
        if desired > allowed:
            note = (
                f"scale-up policies allow at most {allowed} now"
                if allowed < spec.max_replicas
                else ""
            )
            return allowed, note
    elif desired < current:
        limit = _scale_down_limit(
            current=current, history=history, rules=spec.behavior.scale_down, now=now
        )
        allowed = max(floor, min(limit, current))
        if desired < allowed:
            return allowed, f"scale-down policies allow at least {allowed} now"
    return desired, ""


PERIOD_SLACK = timedelta(seconds=1)
"""How much sooner than a policy's period a scale event stops counting against it.

The operator decides at ticks one polling interval apart, and a timer fires a few milliseconds
early as often as late: with HPA's exact boundary, a tick 14.99 s after a scale-up still saw it
inside a 15 s period, and "4 pods per 15 s" allowed nothing for one more interval. Measured on the
real cluster: a pool activated to 4 replicas reached 6 at the third tick instead of the second,
depending on the timer. The slack makes a policy's allowance renew at every tick of an interval
equal to its period, whichever way the timer errs."""


def _period_start(
    *, current: int, events: Iterable[ScaleEvent], period: timedelta, now: datetime
) -> int:
    """The replica count at the start of a policy's trailing period, rebuilt from scale events
    (those at most `period - PERIOD_SLACK` old)."""
    counted = period - PERIOD_SLACK if period > PERIOD_SLACK else period
    change = sum(event.change for event in events if event.time + counted > now)
    return max(current - change, 0)


def _scale_up_limit(*, current: int, history: History, rules: ScalingRules, now: datetime) -> int:
    if rules.select_policy is SelectPolicy.DISABLED:
        return current
    proposals = [
        start + policy.value
        if policy.type is PolicyType.PODS
        # Rounded up, as in HPA, so that a small pool can always grow.
        else -(-start * (100 + policy.value) // 100)
        for policy, start in _policy_starts(current, history, rules, now)
    ]
    select: Callable[[Iterable[int]], int] = min if rules.select_policy is SelectPolicy.MIN else max
    return select(proposals)


def _scale_down_limit(*, current: int, history: History, rules: ScalingRules, now: datetime) -> int:
    if rules.select_policy is SelectPolicy.DISABLED:
        return current
    proposals = [
        start - policy.value
        if policy.type is PolicyType.PODS
        else start * (100 - policy.value) // 100
        for policy, start in _policy_starts(current, history, rules, now)
    ]
    # The largest change down is the lowest count, so "Max" picks the minimum here.
    select: Callable[[Iterable[int]], int] = max if rules.select_policy is SelectPolicy.MIN else min
    return max(select(proposals), 0)


def _policy_starts(
    current: int, history: History, rules: ScalingRules, now: datetime
) -> list[tuple[ScalingPolicy, int]]:
    """Each policy with the replica count at the start of its trailing period."""
    return [
        (
            policy,
            _period_start(
                current=current, events=history.scale_events, period=policy.period, now=now
            ),
        )
        for policy in rules.policies
    ]


def _carry(
    *,
    history: History,
    spec: ScalingSpec,
    now: datetime,
    current: int,
    desired: int,
    recommendation: int | None,
) -> History:
    """The history after this decision, trimmed to what any window or period can still see."""
    behavior = spec.behavior
    keep_recommendations = max(
        behavior.scale_up.stabilization_window, behavior.scale_down.stabilization_window
    )
    keep_events = max(
        (
            policy.period
            for rules in (behavior.scale_up, behavior.scale_down)
            for policy in rules.policies
        ),
        default=timedelta(0),
    )
    recommendations = tuple(
        past for past in history.recommendations if past.time > now - keep_recommendations
    )
    if recommendation is not None:
        recommendations += (Recommendation(time=now, replicas=recommendation),)
    events = tuple(event for event in history.scale_events if event.time > now - keep_events)
    if desired != current:
        events += (ScaleEvent(time=now, change=desired - current),)
    return History(
        recommendations=recommendations,
        scale_events=events,
        last_active_time=history.last_active_time,
        queue_seen=history.queue_seen,
        arrivals_stopped=history.arrivals_stopped,
    )


def _clamp_noted(value: int, *, low: int, spec: ScalingSpec) -> tuple[int, str]:
    """`value` within [low, maxReplicas], and a note naming the bound that applied, if one did:
    a user reading "capped at maxReplicas 4" knows which setting to raise."""
    clamped = _clamp(value, low=low, high=spec.max_replicas)
    if clamped < value:
        return clamped, f"capped at maxReplicas {spec.max_replicas}"
    if clamped > value:
        return clamped, f"raised to minReplicas {spec.min_replicas}"
    return clamped, ""


def _clamp(value: int, *, low: int, high: int) -> int:
    return min(max(value, low), high)
