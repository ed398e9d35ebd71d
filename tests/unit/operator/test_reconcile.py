"""One tick of one pool, with Kubernetes and Flowable replaced by small fakes.

What is checked is what each failure means: a bad spec or target stops with Ready=False and one
Warning; a failed probe holds (or falls back) and never scales to zero; scaling down marks busy
pods first; the idle clock survives an operator restart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flowable_worker import ClientSettings
from flowable_worker_operator import spec as spec_module
from flowable_worker_operator.backlog import InFlight, ProbeError, ProbeResult, Selector
from flowable_worker_operator.engines import Engine, EngineConfigError
from flowable_worker_operator.reconcile import Outcome, PoolState, Reconciler
from flowable_worker_operator.scaling import Backlog, Reason
from flowable_worker_operator.spec import Pool
from flowable_worker_operator.targets import Scale, TargetError, TargetNotFoundError

NOW = datetime(2026, 11, 28, 10, 0, 0, tzinfo=UTC)
ENGINE = Engine(client=ClientSettings(base_url="http://flowable:8080"))
SELECTOR = Selector(element_id="check", process_definition_id="invoice:1:7")


@dataclass
class FakeWorkload:
    replicas: int = 0
    engine_error: str | None = None
    target_missing: bool = False
    refuse_scale: bool = False
    pods: frozenset[str] = frozenset()
    calls: list[tuple[str, Any]] = field(default_factory=list)

    async def engine(self, pool: Pool) -> Engine:
        if self.engine_error is not None:
            raise EngineConfigError(self.engine_error)
        return ENGINE

    async def ensure(self, pool: Pool, *, initial_replicas: int) -> None:
        self.calls.append(("ensure", initial_replicas))

    async def scale(self, pool: Pool) -> Scale:
        if self.target_missing:
            raise TargetNotFoundError("Deployment billing/legacy not found")
        return Scale(replicas=self.replicas, current_replicas=self.replicas, selector="app=x")

    async def set_replicas(self, pool: Pool, replicas: int) -> None:
        if self.refuse_scale:
            raise TargetError("deployments/scale is forbidden")
        self.calls.append(("set_replicas", replicas))
        self.replicas = replicas

    async def set_deletion_costs(
        self, pool: Pool, selector: str, locks_by_pod: Mapping[str, int]
    ) -> int:
        self.calls.append(("set_deletion_costs", dict(locks_by_pod)))
        return len(locks_by_pod)

    async def live_pods(self, pool: Pool, selector: str) -> frozenset[str]:
        self.calls.append(("live_pods", selector))
        return frozenset(self.pods)


@dataclass
class FakeProber:
    backlog_value: Backlog | ProbeError = field(default_factory=lambda: Backlog(0, 0))
    problems: tuple[str, ...] = ()
    topic_found: bool = True
    owners: dict[str, int] = field(default_factory=dict)
    newest: datetime | None = None
    oldest: datetime | None = None
    asked: list[Sequence[Selector] | None] = field(default_factory=list)
    in_flight_asked: int = 0
    oldest_asked: int = 0

    async def backlog(
        self, engine: Engine, topic: str, selectors: Sequence[Selector] | None
    ) -> ProbeResult:
        self.asked.append(selectors)
        if isinstance(self.backlog_value, ProbeError):
            raise self.backlog_value
        return ProbeResult(
            backlog=self.backlog_value,
            selectors=(SELECTOR,),
            problems=self.problems,
            topic_found=self.topic_found,
        )

    async def in_flight(self, engine: Engine, selectors: Sequence[Selector]) -> InFlight:
        self.in_flight_asked += 1
        return InFlight(owners=dict(self.owners), newest_created=self.newest)

    async def oldest_waiting(
        self, engine: Engine, selectors: Sequence[Selector]
    ) -> datetime | None:
        self.oldest_asked += 1
        return self.oldest


def body(
    scaling: dict[str, Any] | None = None,
    *,
    status: dict[str, Any] | None = None,
    spec: dict[str, Any] | None = None,
) -> dict[str, Any]:
    pool_spec: dict[str, Any] = {
        "engine": {"url": "http://flowable:8080"},
        "topic": "invoices",
        "worker": {"handler": {"python": "h:check"}, "concurrency": 4},
        "scaling": scaling or {},
    }
    pool_spec.update(spec or {})
    return {
        "metadata": {"name": "invoices", "namespace": "billing", "uid": "u", "generation": 2},
        "spec": pool_spec,
        "status": status or {},
    }


def condition(outcome: Outcome, type_: str) -> dict[str, Any]:
    return next(c for c in outcome.status["conditions"] if c["type"] == type_)


async def tick(
    workload: FakeWorkload,
    prober: FakeProber,
    pool: dict[str, Any],
    state: PoolState,
    now: datetime = NOW,
) -> Outcome:
    return await Reconciler(workload=workload, prober=prober).tick(pool, state, now)


async def test_work_arriving_activates_the_pool_and_reports_it() -> None:
    workload, prober = FakeWorkload(replicas=0), FakeProber(Backlog(unlocked=10, locked=0))
    outcome = await tick(workload, prober, body(), PoolState())
    assert workload.calls == [("ensure", 0), ("set_replicas", 3)]  # ceil(10 / 4)
    assert outcome.decision is not None
    assert outcome.decision.reason is Reason.ACTIVATED
    status = outcome.status
    assert (status["replicas"], status["desiredReplicas"]) == (3, 3)
    assert status["backlog"] == {
        "unlocked": 10,
        "locked": 0,
        "observedTime": "2026-11-28T10:00:00Z",
        "stale": False,
    }
    assert status["observedGeneration"] == 2
    assert status["lastScaleTime"] == "2026-11-28T10:00:00Z"
    assert status["selectors"] == [
        {"topic": "invoices", "elementId": "check", "processDefinitionId": "invoice:1:7"}
    ]
    assert condition(outcome, "Ready")["status"] == "True"
    assert condition(outcome, "Active")["status"] == "True"
    assert condition(outcome, "EngineReachable")["status"] == "True"
    assert [(e.type, e.reason) for e in outcome.events] == [("Normal", "Activated")]
    assert outcome.next_tick == timedelta(seconds=15)
    assert prober.asked == [None]  # no explicit selectors: discovery


async def test_explicit_selectors_are_passed_to_the_probe() -> None:
    prober = FakeProber()
    selectors = [{"elementId": "check", "processDefinitionId": "invoice:1:7", "tenantId": "acme"}]
    await tick(
        FakeWorkload(), prober, body(spec={"backlog": {"selectors": selectors}}), PoolState()
    )
    assert prober.asked == [
        [Selector(element_id="check", process_definition_id="invoice:1:7", tenant_id="acme")]
    ]


async def test_a_bad_spec_is_reported_once_and_touches_nothing() -> None:
    workload, prober, state = FakeWorkload(), FakeProber(), PoolState()
    bad = body({"minReplicas": 5, "maxReplicas": 2})
    first = await tick(workload, prober, bad, state)
    ready = condition(first, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert "minReplicas must not exceed maxReplicas" in ready["message"]
    assert [(e.type, e.reason) for e in first.events] == [("Warning", "InvalidSpec")]
    again = await tick(workload, prober, bad, state)
    assert again.events == ()  # the same problem is not posted every interval
    assert workload.calls == []
    assert prober.asked == []
    assert first.next_tick == timedelta(seconds=30)


async def test_a_missing_target_is_a_condition_not_a_crash() -> None:
    workload = FakeWorkload(target_missing=True)
    pool = body(spec={"worker": None, "scaleTargetRef": {"name": "legacy"}}, scaling={})
    pool["spec"].pop("worker")
    pool["spec"]["scaling"] = {"jobsPerReplica": 2}
    outcome = await tick(workload, FakeProber(), pool, PoolState())
    ready = condition(outcome, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "TargetNotFound")
    assert workload.calls == []  # no Deployment is built for a scaleTargetRef pool


async def test_an_unreachable_engine_never_scales_to_zero() -> None:
    workload = FakeWorkload(replicas=2)
    prober = FakeProber(ProbeError("connection refused"))
    state = PoolState()
    pool = body(
        {"cooldownPeriod": "0s", "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}}
    )
    for minute in range(5):
        outcome = await tick(workload, prober, pool, state, NOW + timedelta(minutes=minute))
        assert outcome.decision is not None
        assert outcome.decision.reason is Reason.PROBE_FAILED_HOLDING
    assert workload.replicas == 2
    assert ("set_replicas", 0) not in workload.calls
    # Counted one by one up to 3 (no fallback), then "3+": the status stops moving (below).
    assert outcome.status["probe"]["consecutiveFailures"] == 3
    assert "3+ in a row" in outcome.decision.message
    assert outcome.status["probe"]["lastError"] == "connection refused"
    assert "backlog" not in outcome.status
    assert condition(outcome, "EngineReachable")["status"] == "False"
    assert condition(outcome, "Active")["status"] == "Unknown"


async def test_fallback_applies_after_the_threshold_and_ends_when_the_probe_recovers() -> None:
    workload = FakeWorkload(replicas=1)
    prober = FakeProber(ProbeError("503 from Flowable"))
    state = PoolState()
    pool = body({"fallback": {"failureThreshold": 2, "replicas": 4}})
    first = await tick(workload, prober, pool, state)
    assert workload.replicas == 1
    assert condition(first, "Fallback")["status"] == "False"
    second = await tick(workload, prober, pool, state, NOW + timedelta(seconds=15))
    assert workload.replicas == 4
    assert condition(second, "Fallback")["status"] == "True"
    prober.backlog_value = Backlog(unlocked=16, locked=0)
    third = await tick(workload, prober, pool, state, NOW + timedelta(seconds=30))
    assert condition(third, "Fallback")["status"] == "False"
    assert third.status["probe"]["consecutiveFailures"] == 0


async def test_missing_credentials_count_as_a_failed_probe() -> None:
    workload = FakeWorkload(replicas=1, engine_error="Secret billing/flowable-auth not found")
    prober = FakeProber()
    outcome = await tick(workload, prober, body(), PoolState())
    assert prober.asked == []
    assert outcome.status["probe"]["lastError"] == "Secret billing/flowable-auth not found"
    assert workload.replicas == 1


async def test_scaling_down_marks_busy_pods_before_lowering_replicas() -> None:
    workload = FakeWorkload(replicas=3)
    prober = FakeProber(Backlog(unlocked=0, locked=3), owners={"invoices-worker-a": 3})
    pool = body({"behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}})
    await tick(workload, prober, pool, PoolState())
    assert workload.calls[1:] == [
        ("set_deletion_costs", {"invoices-worker-a": 3}),
        ("set_replicas", 1),
    ]


async def test_scaling_down_an_idle_pool_needs_no_lock_lookup() -> None:
    workload = FakeWorkload(replicas=3)
    prober = FakeProber(Backlog(unlocked=4, locked=0))
    pool = body({"behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}})
    await tick(workload, prober, pool, PoolState())
    assert workload.calls[1:] == [("set_replicas", 1)]


def wave_tail(
    *, owners: dict[str, int], arrived_ago: int, unlocked: int = 0
) -> tuple[FakeWorkload, FakeProber]:
    """6 replicas, 4 jobs still running, the last one arrived `arrived_ago` seconds ago."""
    workload = FakeWorkload(replicas=6, pods=frozenset(f"w-{i}" for i in range(6)))
    prober = FakeProber(
        Backlog(unlocked=unlocked, locked=4),
        owners=owners,
        newest=NOW - timedelta(seconds=arrived_ago),
    )
    return workload, prober


async def test_replicas_holding_no_job_are_released_and_the_busy_ones_marked_first() -> None:
    workload, prober = wave_tail(owners={"w-4": 2, "w-5": 2}, arrived_ago=60)
    outcome = await tick(workload, prober, body(), PoolState())
    assert workload.calls[1:] == [
        ("live_pods", "app=x"),
        ("set_deletion_costs", {"w-4": 2, "w-5": 2}),
        ("set_replicas", 2),
    ]
    assert prober.in_flight_asked == 1  # the listing serves the decision and the marking
    assert outcome.decision is not None
    assert "held by 2 of 6 replicas" in outcome.decision.message


async def test_a_lock_owner_that_is_no_pod_of_the_pool_releases_nothing() -> None:
    # A workerId set by hand (every replica "worker"), or a pod already gone: which are idle?
    workload, prober = wave_tail(owners={"worker": 4}, arrived_ago=60)
    await tick(workload, prober, body(), PoolState())
    assert [call for call, _ in workload.calls] == ["ensure", "live_pods"]
    assert workload.replicas == 6


async def test_pods_are_not_listed_while_work_still_arrives() -> None:
    workload, prober = wave_tail(owners={"w-4": 2, "w-5": 2}, arrived_ago=5)
    await tick(workload, prober, body(), PoolState())
    assert [call for call, _ in workload.calls] == ["ensure"]
    assert workload.replicas == 6


@pytest.mark.parametrize(
    ("backlog", "replicas"),
    [(Backlog(unlocked=1, locked=4), 6), (Backlog(unlocked=0, locked=0), 6), (Backlog(0, 4), 1)],
    ids=["a job waits", "nothing in flight", "one replica"],
)
async def test_jobs_in_flight_are_listed_only_when_replicas_could_be_released(
    backlog: Backlog, replicas: int
) -> None:
    prober = FakeProber(backlog, owners={"w-0": 1})
    await tick(FakeWorkload(replicas=replicas), prober, body(), PoolState())
    assert prober.in_flight_asked == 0


@pytest.mark.parametrize(
    ("waited", "replicas"), [(3, 2), (20, 3)], ids=["young queue", "waited an interval"]
)
async def test_a_small_queue_is_dated_before_it_adds_a_replica(waited: int, replicas: int) -> None:
    # 2 replicas of 4 slots, all 8 busy, 1 waiting: 3 by the count.
    workload = FakeWorkload(replicas=2)
    prober = FakeProber(Backlog(unlocked=1, locked=8), oldest=NOW - timedelta(seconds=waited))
    await tick(workload, prober, body(), PoolState())
    assert prober.oldest_asked == 1
    assert workload.replicas == replicas


@pytest.mark.parametrize(
    "backlog",
    [Backlog(unlocked=9, locked=8), Backlog(unlocked=1, locked=2), Backlog(unlocked=0, locked=8)],
    ids=["a large queue", "free slots", "no queue"],
)
async def test_only_a_small_queue_that_would_add_a_replica_is_dated(backlog: Backlog) -> None:
    prober = FakeProber(backlog)
    await tick(FakeWorkload(replicas=2), prober, body(), PoolState())
    assert prober.oldest_asked == 0


async def test_the_idle_clock_survives_an_operator_restart() -> None:
    """lastActiveTime in status: a restarted operator does not wait a second full cooldown."""
    idle_since = NOW - timedelta(seconds=400)
    status = {"lastActiveTime": idle_since.strftime("%Y-%m-%dT%H:%M:%SZ")}
    workload = FakeWorkload(replicas=2)
    outcome = await tick(workload, FakeProber(), body(status=status), PoolState())
    assert outcome.decision is not None
    assert outcome.decision.reason is Reason.COOLED_DOWN
    assert workload.replicas == 0
    assert condition(outcome, "Active")["status"] == "False"


async def test_paused_pool_is_frozen_and_says_so() -> None:
    workload = FakeWorkload(replicas=2)
    pool = body()
    pool["metadata"]["annotations"] = {"flowable-worker.io/paused-replicas": "1"}
    outcome = await tick(workload, FakeProber(Backlog(100, 0)), pool, PoolState())
    assert workload.replicas == 1
    assert condition(outcome, "Paused")["status"] == "True"


async def test_a_topic_only_expressions_might_name_is_warned_once_and_makes_ready_false() -> None:
    problem = "no deployed model names topic 'invoices' literally, but this engine has ..."
    prober = FakeProber(Backlog(0, 0), problems=(problem,), topic_found=False)
    state = PoolState()
    first = await tick(FakeWorkload(), prober, body(), state)
    assert [(e.type, e.reason) for e in first.events] == [("Warning", "TopicNotResolved")]
    assert condition(first, "Ready")["reason"] == "TopicNotResolved"
    second = await tick(FakeWorkload(), prober, body(), state, NOW + timedelta(seconds=15))
    assert second.events == ()


@pytest.mark.parametrize("replicas", [0, 3])
async def test_a_steady_pool_writes_the_same_status_twice(replicas: int) -> None:
    """Unchanged inputs give an equal status, so the shell can skip the write."""
    workload = FakeWorkload(replicas=replicas)
    prober = FakeProber(Backlog(unlocked=4 * replicas, locked=0))
    state = PoolState()
    first = await tick(workload, prober, body(), state)
    second = await tick(workload, prober, body(status=first.status), state)
    assert first.status == second.status


async def test_a_failed_scale_is_reported_and_not_remembered_as_a_scale_event() -> None:
    workload = FakeWorkload(replicas=0, refuse_scale=True)
    state = PoolState()
    outcome = await tick(workload, FakeProber(Backlog(unlocked=8, locked=0)), body(), state)
    assert [(e.type, e.reason) for e in outcome.events] == [("Warning", "ScaleFailed")]
    assert outcome.status["replicas"] == 0
    assert outcome.change == 0
    assert state.history.scale_events == ()  # the policies' allowance is not used up
    workload.refuse_scale = False
    await tick(
        workload,
        FakeProber(Backlog(unlocked=8, locked=0)),
        body(),
        state,
        NOW + timedelta(seconds=15),
    )
    assert workload.replicas == 2


@dataclass
class BrokenWorkload(FakeWorkload):
    """A workload whose engine lookup fails in a way no check foresaw (a bug to surface)."""

    async def engine(self, pool: Pool) -> Engine:
        raise ValueError("Invalid port: ':1'\nsecond line with whatever the input held")


async def test_an_unexpected_error_is_reported_on_the_pool_once_not_raised() -> None:
    workload, prober, state = BrokenWorkload(), FakeProber(), PoolState()
    first = await tick(workload, prober, body(), state)
    ready = condition(first, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ReconcileError")
    assert "ValueError: Invalid port: ':1'" in ready["message"]
    assert "second line" not in ready["message"]
    assert first.status["observedGeneration"] == 2
    assert [(e.type, e.reason) for e in first.events] == [("Warning", "ReconcileError")]
    again = await tick(workload, prober, body(), state)
    assert again.events == ()  # reported once, retried calmly
    assert again.next_tick == timedelta(seconds=30)


async def test_an_idle_pool_never_changes_its_status_while_nothing_else_does() -> None:
    workload, prober, state = FakeWorkload(), FakeProber(), PoolState()
    first = await tick(workload, prober, body(), state)
    later = await tick(
        workload, prober, body(status=first.status), state, NOW + timedelta(seconds=15)
    )
    assert later.status == first.status  # nothing to write: the shell compares and skips
    a_day_later = await tick(
        workload, prober, body(status=later.status), state, NOW + timedelta(days=1)
    )
    assert a_day_later.status == first.status  # no heartbeat refresh either
    prober.backlog_value = Backlog(unlocked=2, locked=0)
    changed = await tick(
        workload,
        prober,
        body(status=a_day_later.status),
        state,
        NOW + timedelta(days=1, seconds=15),
    )
    assert changed.status["probe"]["lastSuccessTime"] == "2026-11-29T10:00:15Z"
    assert changed.status["backlog"]["observedTime"] == "2026-11-29T10:00:15Z"


async def test_a_busy_pool_that_does_not_change_never_writes_its_status() -> None:
    workload, prober, state = FakeWorkload(replicas=1), FakeProber(Backlog(1, 0)), PoolState()
    first = await tick(workload, prober, body(), state)
    later = await tick(
        workload, prober, body(status=first.status), state, NOW + timedelta(seconds=15)
    )
    assert later.status == first.status  # lastActiveTime moved, and is kept like the others
    assert condition(later, "Active")["status"] == "True"
    much_later = await tick(
        workload, prober, body(status=later.status), state, NOW + timedelta(hours=1)
    )
    assert much_later.status == first.status
    assert workload.replicas == 1


async def test_a_restart_never_shortens_the_cooldown_of_a_pool_last_seen_busy() -> None:
    """Its lastActiveTime is a heartbeat, kept while nothing else changed: the clock starts
    anew."""
    kept = (NOW - timedelta(seconds=290)).strftime("%Y-%m-%dT%H:%M:%SZ")
    busy = {"lastActiveTime": kept, "backlog": {"unlocked": 1, "locked": 0, "stale": False}}
    workload = FakeWorkload(replicas=2)
    pool = body({"cooldownPeriod": "60s"}, status=busy)
    outcome = await tick(workload, FakeProber(), pool, PoolState())
    assert outcome.decision is not None
    assert outcome.decision.reason is not Reason.COOLED_DOWN
    assert workload.replicas == 2
    assert outcome.status["lastActiveTime"] == "2026-11-28T10:00:00Z"


async def test_a_changed_backlog_is_written_at_once_with_fresh_timestamps() -> None:
    workload, prober, state = FakeWorkload(), FakeProber(), PoolState()
    first = await tick(workload, prober, body(), state)
    prober.backlog_value = Backlog(unlocked=3, locked=0)
    later = await tick(
        workload, prober, body(status=first.status), state, NOW + timedelta(seconds=15)
    )
    assert later.status["backlog"]["unlocked"] == 3
    assert later.status["backlog"]["observedTime"] == "2026-11-28T10:00:15Z"
    assert later.status["probe"]["lastSuccessTime"] == "2026-11-28T10:00:15Z"


async def test_a_tick_builds_the_scaling_spec_once(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[object] = []
    real = spec_module.ScalingSpec

    def counting(*args: Any, **kwargs: Any) -> Any:
        built.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(spec_module, "ScalingSpec", counting)
    workload, prober = FakeWorkload(replicas=0), FakeProber(Backlog(unlocked=10, locked=0))
    outcome = await tick(workload, prober, body(), PoolState())
    assert outcome.replica_bounds == (0, 10)
    assert len(built) == 1


async def test_outcome_exposes_what_the_metrics_record() -> None:
    workload, prober = FakeWorkload(replicas=0), FakeProber(Backlog(unlocked=10, locked=0))
    outcome = await tick(workload, prober, body(), PoolState())
    assert outcome.replicas == 3
    assert outcome.probe_failures == 0
    assert {c["type"] for c in outcome.conditions} >= {"Ready", "Active", "EngineReachable"}
    failing = await tick(
        FakeWorkload(replicas=1), FakeProber(ProbeError("down")), body(), PoolState()
    )
    assert failing.probe_failures == 1


@pytest.mark.parametrize(
    ("fallback", "counted"), [(None, 3), ({"failureThreshold": 6, "replicas": 1}, 6)]
)
async def test_an_engine_that_stays_down_stops_moving_the_status_once_the_count_says_enough(
    fallback: dict[str, Any] | None, counted: int
) -> None:
    """The count of failures matters up to the fallback's threshold; past it, rewriting the status
    on every tick to move `N in a row` would cost a PATCH per pool per interval for nothing."""
    workload = FakeWorkload(replicas=2, engine_error="Secret billing/flowable-auth not found")
    state, status, written = PoolState(), {}, []
    scaling = {} if fallback is None else {"fallback": fallback}
    for minute in range(counted + 5):
        outcome = await tick(
            workload,
            FakeProber(),
            body(scaling, status=status),
            state,
            NOW + timedelta(minutes=minute),
        )
        written.append(outcome.status != status)
        status = outcome.status
    assert status["probe"]["consecutiveFailures"] == counted
    assert written == [True] * (counted + 1) + [False] * 4


async def test_a_pool_whose_topic_is_not_found_writes_nothing_new_at_its_next_tick() -> None:
    """Ready is set True by the decision and False by the blocker in one tick: that is a Ready
    that stayed False, so its lastTransitionTime stays and the status stays as written."""
    workload, prober = FakeWorkload(replicas=1), FakeProber(topic_found=False)
    state, pool = PoolState(), body()
    first = await tick(workload, prober, pool, state)
    pool["status"] = {k: v for k, v in first.status.items() if v is not None}
    later = await tick(workload, prober, pool, state, NOW + timedelta(seconds=15))
    assert condition(later, "Ready")["reason"] == "TopicNotFound"
    assert condition(later, "Ready")["lastTransitionTime"] == "2026-11-28T10:00:00Z"
    assert {k: v for k, v in later.status.items() if v is not None} == pool["status"]
