"""The scaling core as a specification: HPA v2 arithmetic, activation, cooldown, fallback, pause.

Every test builds values, calls `decide` once (or a few times, carrying the history), and checks
the replica count and the reason. The properties at the end state what must hold for any input.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowable_worker_operator.scaling import (
    PERIOD_SLACK,
    Backlog,
    Decision,
    FallbackBehavior,
    FallbackSpec,
    History,
    Observation,
    PolicyType,
    ProbeFailed,
    Reason,
    Recommendation,
    ScaleEvent,
    ScalingBehavior,
    ScalingPolicy,
    ScalingRules,
    ScalingSpec,
    SelectPolicy,
    decide,
    default_scale_down_rules,
    default_scale_up_rules,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LONG_AGO = NOW - timedelta(hours=1)

UNLIMITED = ScalingRules(
    stabilization_window=timedelta(0),
    policies=(ScalingPolicy(type=PolicyType.PODS, value=1000, period=timedelta(seconds=15)),),
)
FREE = ScalingBehavior(scale_up=UNLIMITED, scale_down=UNLIMITED)


def make_spec(**overrides: object) -> ScalingSpec:
    """A pool of 0..10 replicas, 4 jobs each, no windows or rate limits unless a test adds them."""
    values: dict[str, object] = {
        "min_replicas": 0,
        "max_replicas": 10,
        "jobs_per_replica": 4,
        "tolerance": 0.0,
        "behavior": FREE,
    }
    values.update(overrides)
    return ScalingSpec(**values)  # type: ignore[arg-type]


def run(
    *,
    spec: ScalingSpec,
    current: int,
    unlocked: int = 0,
    locked: int = 0,
    history: History | None = None,
    now: datetime = NOW,
) -> Decision:
    observation = Observation(
        now=now, current_replicas=current, backlog=Backlog(unlocked=unlocked, locked=locked)
    )
    carried = History(last_active_time=LONG_AGO) if history is None else history
    return decide(spec=spec, observation=observation, history=carried)


def run_failed(
    *, spec: ScalingSpec, current: int, failures: int, history: History | None = None
) -> Decision:
    observation = Observation(
        now=NOW,
        current_replicas=current,
        backlog=ProbeFailed(error="connection refused"),
        consecutive_failures=failures,
    )
    return decide(spec=spec, observation=observation, history=history or History())


def recommended(*pairs: tuple[int, int]) -> History:
    """A history of recommendations given as (seconds ago, replicas)."""
    return History(
        recommendations=tuple(
            Recommendation(time=NOW - timedelta(seconds=ago), replicas=replicas)
            for ago, replicas in pairs
        ),
        last_active_time=NOW,
    )


# --- defaults ---------------------------------------------------------------------------------


def test_the_default_behavior_is_the_hpa_v2_default() -> None:
    fifteen = timedelta(seconds=15)
    assert ScalingBehavior() == ScalingBehavior(
        scale_up=ScalingRules(
            stabilization_window=timedelta(0),
            policies=(
                ScalingPolicy(type=PolicyType.PERCENT, value=100, period=fifteen),
                ScalingPolicy(type=PolicyType.PODS, value=4, period=fifteen),
            ),
            select_policy=SelectPolicy.MAX,
        ),
        scale_down=ScalingRules(
            stabilization_window=timedelta(seconds=300),
            policies=(ScalingPolicy(type=PolicyType.PERCENT, value=100, period=fifteen),),
            select_policy=SelectPolicy.MAX,
        ),
    )
    assert ScalingBehavior().scale_down == default_scale_down_rules()


# --- the target -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("unlocked", "locked", "current", "expected"),
    [
        (4, 0, 1, 1),
        (5, 0, 1, 2),
        (8, 0, 1, 2),
        (9, 0, 1, 3),
        (0, 12, 1, 3),
        (6, 6, 5, 3),
        (40, 0, 2, 10),
    ],
)
def test_desired_replicas_are_outstanding_jobs_over_jobs_per_replica_rounded_up(
    unlocked: int, locked: int, current: int, expected: int
) -> None:
    decision = run(spec=make_spec(), current=current, unlocked=unlocked, locked=locked)
    assert decision.desired_replicas == expected


def test_locked_jobs_keep_busy_workers_from_being_scaled_away() -> None:
    decision = run(spec=make_spec(), current=3, unlocked=0, locked=12)
    assert (decision.desired_replicas, decision.reason) == (3, Reason.STABLE)


def test_a_load_within_tolerance_keeps_the_current_count() -> None:
    decision = run(spec=make_spec(tolerance=0.1), current=10, unlocked=43)
    assert (decision.desired_replicas, decision.reason) == (10, Reason.STABLE)


def test_a_load_just_beyond_tolerance_moves_the_count() -> None:
    decision = run(spec=make_spec(tolerance=0.1, max_replicas=20), current=10, unlocked=45)
    assert (decision.desired_replicas, decision.reason) == (12, Reason.SCALE_UP)


def test_the_count_is_clamped_to_max_replicas() -> None:
    decision = run(spec=make_spec(max_replicas=5), current=2, unlocked=400)
    assert (decision.desired_replicas, decision.reason) == (5, Reason.SCALE_UP)


def test_the_count_never_drops_below_min_replicas() -> None:
    decision = run(spec=make_spec(min_replicas=3), current=5, unlocked=1)
    assert (decision.desired_replicas, decision.reason) == (3, Reason.SCALE_DOWN)


def test_a_pool_above_max_replicas_comes_down_to_it() -> None:
    decision = run(spec=make_spec(max_replicas=4), current=9, unlocked=400)
    assert decision.desired_replicas == 4


# --- activation (0 -> 1+) ---------------------------------------------------------------------


def test_a_pool_at_zero_stays_idle_while_unlocked_jobs_do_not_exceed_activation_backlog() -> None:
    decision = run(spec=make_spec(activation_backlog=5), current=0, unlocked=5)
    assert (decision.desired_replicas, decision.reason) == (0, Reason.IDLE)


def test_a_pool_at_zero_activates_when_unlocked_jobs_exceed_activation_backlog() -> None:
    decision = run(spec=make_spec(activation_backlog=5), current=0, unlocked=6)
    assert (decision.desired_replicas, decision.reason) == (2, Reason.ACTIVATED)


def test_activation_is_limited_by_the_scale_up_policies() -> None:
    spec = make_spec(behavior=ScalingBehavior(), max_replicas=50)
    decision = run(spec=spec, current=0, unlocked=100)
    assert (decision.desired_replicas, decision.reason) == (4, Reason.ACTIVATED)


def test_activation_reaches_one_replica_even_when_only_percent_policies_exist() -> None:
    percent_only = ScalingRules(
        stabilization_window=timedelta(0),
        policies=(ScalingPolicy(type=PolicyType.PERCENT, value=100, period=timedelta(seconds=15)),),
    )
    spec = make_spec(behavior=ScalingBehavior(scale_up=percent_only))
    decision = run(spec=spec, current=0, unlocked=100)
    assert (decision.desired_replicas, decision.reason) == (1, Reason.ACTIVATED)


def test_activation_ignores_a_disabled_scale_up_but_only_reaches_the_floor() -> None:
    disabled = ScalingRules(
        stabilization_window=timedelta(0), policies=(), select_policy=SelectPolicy.DISABLED
    )
    decision = run(
        spec=make_spec(behavior=ScalingBehavior(scale_up=disabled)), current=0, unlocked=100
    )
    assert (decision.desired_replicas, decision.reason) == (1, Reason.ACTIVATED)


def test_locked_jobs_at_zero_replicas_activate_the_pool_whatever_the_activation_backlog() -> None:
    decision = run(spec=make_spec(activation_backlog=10), current=0, locked=1)
    assert (decision.desired_replicas, decision.reason) == (1, Reason.ACTIVATED)


def test_a_pool_at_zero_below_min_replicas_is_brought_up_to_min() -> None:
    decision = run(spec=make_spec(min_replicas=2), current=0)
    assert (decision.desired_replicas, decision.reason) == (2, Reason.SCALE_UP)


# --- cooldown (N -> 0) ------------------------------------------------------------------------


def test_an_idle_pool_scales_to_zero_once_idle_for_the_cooldown_period() -> None:
    spec = make_spec(cooldown_period=timedelta(seconds=300))
    history = History(last_active_time=NOW - timedelta(seconds=300))
    decision = run(spec=spec, current=3, history=history)
    assert (decision.desired_replicas, decision.reason) == (0, Reason.COOLED_DOWN)


def test_an_idle_pool_within_its_cooldown_keeps_one_replica() -> None:
    spec = make_spec(cooldown_period=timedelta(seconds=300))
    history = History(last_active_time=NOW - timedelta(seconds=299))
    decision = run(spec=spec, current=3, history=history)
    assert (decision.desired_replicas, decision.reason) == (1, Reason.SCALE_DOWN)


def test_cooldown_never_takes_a_pool_below_min_replicas() -> None:
    decision = run(spec=make_spec(min_replicas=1), current=3)
    assert decision.desired_replicas == 1


def test_locked_jobs_prevent_scaling_to_zero_however_long_ago_work_arrived() -> None:
    spec = make_spec(cooldown_period=timedelta(0), jobs_per_replica=100)
    decision = run(spec=spec, current=2, locked=1)
    assert decision.desired_replicas == 1
    assert decision.history.last_active_time == NOW


def test_an_unknown_last_active_time_starts_the_cooldown_clock_now() -> None:
    decision = run(spec=make_spec(), current=2, history=History())
    assert decision.desired_replicas == 1
    assert decision.history.last_active_time == NOW


def test_outstanding_work_restarts_the_idle_clock() -> None:
    decision = run(spec=make_spec(), current=1, unlocked=1)
    assert decision.history.last_active_time == NOW


def test_an_idle_observation_keeps_the_last_active_time() -> None:
    decision = run(spec=make_spec(), current=0)
    assert decision.history.last_active_time == LONG_AGO


def test_scaling_to_zero_bypasses_the_scale_down_window_since_cooldown_is_its_own_window() -> None:
    spec = make_spec(behavior=ScalingBehavior())
    history = replace(recommended((10, 8)), last_active_time=LONG_AGO)
    decision = run(spec=spec, current=8, history=history)
    assert (decision.desired_replicas, decision.reason) == (0, Reason.COOLED_DOWN)


# --- idle release (N -> 1 while the cooldown runs) --------------------------------------------

RELEASE = timedelta(seconds=20)


def held_by_a_window(idle_for: int) -> tuple[ScalingSpec, History]:
    """A pool that recommended 8 replicas ten seconds ago and has seen no job for `idle_for` s,
    under HPA's default 300 s scale-down window and releaseIdleAfter 20 s."""
    spec = make_spec(behavior=ScalingBehavior(), release_idle_after=RELEASE)
    history = replace(recommended((10, 8)), last_active_time=NOW - timedelta(seconds=idle_for))
    return spec, history


def test_an_idle_pool_releases_its_idle_replicas_whatever_the_scale_down_window() -> None:
    spec, history = held_by_a_window(idle_for=30)
    decision = run(spec=spec, current=8, history=history)
    assert (decision.desired_replicas, decision.reason) == (1, Reason.SCALE_DOWN)
    assert "releasing idle replicas 8 -> 1" in decision.message
    assert "cooldown (300s)" in decision.message


def test_one_empty_sample_shorter_than_release_idle_after_releases_nothing() -> None:
    spec, history = held_by_a_window(idle_for=15)
    decision = run(spec=spec, current=8, history=history)
    assert decision.desired_replicas == 8  # the window holds it, as in HPA
    assert "stabilization window" in decision.message


def test_without_release_idle_after_the_window_holds_an_idle_pool_as_hpa_does() -> None:
    spec, history = held_by_a_window(idle_for=200)
    decision = run(spec=replace(spec, release_idle_after=None), current=8, history=history)
    assert decision.desired_replicas == 8


def test_without_release_idle_after_a_history_of_stopped_arrivals_releases_nothing() -> None:
    """Found by the property below: a history carried over from a spec with releaseIdleAfter
    (work had stopped arriving) failed the tick once the spec had none."""
    spec, history = held_by_a_window(idle_for=5)
    history = replace(history, arrivals_stopped=True)
    decision = run(spec=replace(spec, release_idle_after=None), current=8, history=history)
    assert decision.desired_replicas == 8
    assert "stabilization window" in decision.message


def test_jobs_in_flight_are_never_released() -> None:
    spec, history = held_by_a_window(idle_for=200)
    decision = run(spec=spec, current=8, locked=1, history=history)
    assert decision.desired_replicas == 8
    assert decision.history.last_active_time == NOW


def test_idle_release_stops_at_min_replicas() -> None:
    spec, history = held_by_a_window(idle_for=30)
    decision = run(spec=replace(spec, min_replicas=3), current=8, history=history)
    assert decision.desired_replicas == 3
    assert "minReplicas 3 stay" in decision.message


def test_idle_release_is_paced_by_the_scale_down_policies() -> None:
    slow = ScalingRules(
        stabilization_window=timedelta(seconds=300),
        policies=(ScalingPolicy(type=PolicyType.PODS, value=2, period=timedelta(seconds=60)),),
    )
    spec, history = held_by_a_window(idle_for=30)
    spec = replace(spec, behavior=ScalingBehavior(scale_down=slow))
    decision = run(spec=spec, current=8, history=history)
    assert decision.desired_replicas == 6
    assert "scale-down policies allow at least 6" in decision.message


def test_cooldown_still_takes_a_released_pool_to_zero() -> None:
    spec, history = held_by_a_window(idle_for=300)
    decision = run(spec=spec, current=1, history=history)
    assert (decision.desired_replicas, decision.reason) == (0, Reason.COOLED_DOWN)


def test_work_returning_after_a_release_scales_up_at_once() -> None:
    spec, history = held_by_a_window(idle_for=30)
    released = run(spec=spec, current=8, history=history)
    back = run(
        spec=spec,
        current=released.desired_replicas,
        unlocked=20,
        history=released.history,
        now=NOW + timedelta(seconds=15),
    )
    # 20 jobs at 4 per replica: 5, which HPA's default scale-up policy (+4 pods) allows from 1.
    assert (back.desired_replicas, back.reason) == (5, Reason.SCALE_UP)


# --- replicas holding no job, once work stops arriving -----------------------------------------


def tail_of_a_wave(
    *, holders: int | None = 2, arrived_ago: int = 45, unlocked: int = 0, current: int = 6
) -> Decision:
    """6 replicas after a wave of long jobs: 4 still run, and the window (300 s) holds 6."""
    spec, history = held_by_a_window(idle_for=0)
    spec = replace(spec, jobs_per_replica=2)
    observation = Observation(
        now=NOW,
        current_replicas=current,
        backlog=Backlog(
            unlocked=unlocked,
            locked=4,
            holders=holders,
            newest_created=NOW - timedelta(seconds=arrived_ago),
        ),
    )
    return decide(spec=spec, observation=observation, history=history)


def test_replicas_holding_no_job_are_released_once_work_stops_arriving() -> None:
    decision = tail_of_a_wave()
    assert (decision.desired_replicas, decision.reason) == (2, Reason.SCALE_DOWN)
    assert decision.message == (
        "0 unlocked + 4 locked jobs held by 2 of 6 replicas; none waits and the newest arrived "
        "45s ago (releaseIdleAfter 20s): releasing the replicas that hold no job, 6 -> 2"
    )
    # What it released is what it recommends now, so the window does not bring them back.
    assert decision.history.recommendations[-1].replicas == 2


def test_replicas_are_not_released_while_work_still_arrives() -> None:
    decision = tail_of_a_wave(arrived_ago=10)
    assert decision.desired_replicas == 6
    assert "stabilization window" in decision.message


def test_replicas_are_not_released_while_a_job_waits() -> None:
    decision = tail_of_a_wave(unlocked=1)
    assert decision.desired_replicas == 6


def test_replicas_are_not_released_when_the_holders_are_unknown() -> None:
    assert tail_of_a_wave(holders=None).desired_replicas == 6


def test_every_replica_holding_a_job_is_kept() -> None:
    # 4 jobs on 4 replicas at 2 per replica: 2 would do by the count, but each of the 4 is busy.
    decision = tail_of_a_wave(holders=4)
    assert decision.desired_replicas == 4


def test_no_replica_is_added_for_jobs_already_running_when_nothing_waits_or_arrives() -> None:
    # 4 jobs held by 1 replica (concurrency beyond jobsPerReplica): 2 by the count, but a second
    # replica would get nothing to do.
    decision = tail_of_a_wave(holders=1, current=1)
    assert decision.desired_replicas == 1


def test_the_release_keeps_min_replicas_and_is_paced_by_the_policies() -> None:
    slow = ScalingRules(
        stabilization_window=timedelta(seconds=300),
        policies=(ScalingPolicy(type=PolicyType.PODS, value=1, period=timedelta(seconds=60)),),
    )
    spec, history = held_by_a_window(idle_for=0)
    backlog = Backlog(unlocked=0, locked=4, holders=1, newest_created=NOW - timedelta(seconds=60))
    observation = Observation(now=NOW, current_replicas=6, backlog=backlog)
    floored = decide(spec=replace(spec, min_replicas=3), observation=observation, history=history)
    assert floored.desired_replicas == 3
    paced = decide(
        spec=replace(spec, behavior=ScalingBehavior(scale_down=slow)),
        observation=observation,
        history=history,
    )
    assert paced.desired_replicas == 5
    assert "scale-down policies allow at least 5" in paced.message


def test_without_release_idle_after_busy_pools_keep_the_window() -> None:
    spec, history = held_by_a_window(idle_for=0)
    backlog = Backlog(0, 4, holders=1, newest_created=NOW - timedelta(seconds=600))
    decision = decide(
        spec=replace(spec, release_idle_after=None),
        observation=Observation(now=NOW, current_replicas=6, backlog=backlog),
        history=history,
    )
    assert decision.desired_replicas == 6


def test_once_arrivals_had_stopped_the_first_empty_backlog_releases_at_once() -> None:
    busy = tail_of_a_wave(holders=4, current=4)  # every replica holds a job: nothing to release
    assert busy.desired_replicas == 4
    assert busy.history.arrivals_stopped
    spec, _ = held_by_a_window(idle_for=0)
    done = decide(
        spec=replace(spec, jobs_per_replica=2),
        observation=Observation(
            now=NOW + timedelta(seconds=15), current_replicas=4, backlog=Backlog(0, 0)
        ),
        history=busy.history,
    )
    # Idle for one tick only (15 s < releaseIdleAfter), but the work had stopped coming.
    assert (done.desired_replicas, done.reason) == (1, Reason.SCALE_DOWN)
    assert done.message.startswith(
        "0 unlocked + 0 locked jobs: the last jobs are done, and none had arrived for "
        "releaseIdleAfter (20s) before them: releasing idle replicas 4 -> 1"
    )


def test_arrivals_are_not_known_to_have_stopped_while_jobs_wait_or_are_recent() -> None:
    assert not tail_of_a_wave(unlocked=1).history.arrivals_stopped
    assert not tail_of_a_wave(arrived_ago=5).history.arrivals_stopped
    assert not tail_of_a_wave(holders=None, arrived_ago=5).history.arrivals_stopped


def test_holders_cannot_exceed_the_jobs_held() -> None:
    with pytest.raises(ValueError, match="holders"):
        Backlog(unlocked=0, locked=2, holders=3)


# --- a small queue seen once ---------------------------------------------------------------------


def small_queue(
    *, unlocked: int, seen_before: bool, defer: bool = True, waited: int | None = None
) -> Decision:
    """2 replicas of 2 slots, all busy, and `unlocked` jobs waiting, the oldest for `waited` s
    (None: undated)."""
    spec = make_spec(jobs_per_replica=2, defer_small_queues=defer)
    history = History(last_active_time=NOW, queue_seen=seen_before)
    oldest = None if waited is None else NOW - timedelta(seconds=waited)
    return decide(
        spec=spec,
        observation=Observation(
            now=NOW,
            current_replicas=2,
            backlog=Backlog(unlocked=unlocked, locked=4, oldest_waiting_created=oldest),
        ),
        history=history,
    )


def test_a_small_queue_younger_than_the_polling_interval_adds_no_replica() -> None:
    decision = small_queue(unlocked=2, seen_before=True, waited=3)
    assert decision.desired_replicas == 2
    assert decision.message == (
        "2 unlocked + 4 locked jobs at 2 per replica recommend 2; 2 waiting, the oldest for 3s: "
        "the jobs in flight free their slots first, so no replica is added unless one waits the "
        "whole polling interval (15s); 2 -> 2"
    )


def test_a_small_queue_whose_oldest_waited_the_polling_interval_adds_a_replica() -> None:
    assert small_queue(unlocked=1, seen_before=False, waited=15).desired_replicas == 3


def test_a_small_queue_seen_for_the_first_time_adds_no_replica() -> None:
    decision = small_queue(unlocked=1, seen_before=False)
    assert (decision.desired_replicas, decision.reason) == (2, Reason.STABLE)
    assert decision.message == (
        "1 unlocked + 4 locked jobs at 2 per replica recommend 2; 1 waiting, first seen now: "
        "the jobs in flight free their slots first, so no replica is added unless the queue is "
        "still there next time; 2 -> 2"
    )
    assert decision.history.queue_seen
    assert decision.history.recommendations[-1].replicas == 2


def test_a_small_queue_seen_again_adds_a_replica() -> None:
    assert small_queue(unlocked=1, seen_before=True).desired_replicas == 3


def test_a_queue_of_up_to_the_jobs_in_flight_waits_for_their_slots() -> None:
    # 3 waiting, 4 running: each running job frees a slot; 4 replicas by the count.
    assert small_queue(unlocked=3, seen_before=False, waited=5).desired_replicas == 2


def test_a_queue_longer_than_the_jobs_in_flight_scales_at_once() -> None:
    # 5 waiting, 4 running: one would wait for a slot however soon they end.
    assert small_queue(unlocked=5, seen_before=False, waited=1).desired_replicas == 5


def test_without_defer_small_queues_a_first_queue_scales_at_once() -> None:
    assert small_queue(unlocked=1, seen_before=False, defer=False).desired_replicas == 3


def test_an_observation_without_a_queue_forgets_the_one_seen_before() -> None:
    spec = make_spec(jobs_per_replica=2, defer_small_queues=True)
    decision = decide(
        spec=spec,
        observation=Observation(now=NOW, current_replicas=2, backlog=Backlog(0, 4)),
        history=History(last_active_time=NOW, queue_seen=True),
    )
    assert not decision.history.queue_seen


# --- stabilization windows --------------------------------------------------------------------


def test_scale_down_goes_only_to_the_highest_recommendation_in_its_window() -> None:
    spec = make_spec(behavior=ScalingBehavior())
    decision = run(spec=spec, current=10, unlocked=8, history=recommended((200, 8), (100, 5)))
    assert (decision.desired_replicas, decision.reason) == (8, Reason.SCALE_DOWN)
    assert "stabilization window" in decision.message


def test_recommendations_older_than_the_scale_down_window_do_not_hold_the_pool() -> None:
    spec = make_spec(behavior=ScalingBehavior())
    decision = run(spec=spec, current=10, unlocked=8, history=recommended((301, 9), (100, 2)))
    assert decision.desired_replicas == 2


def test_a_fresh_history_holds_the_current_count_against_scale_down() -> None:
    spec = make_spec(behavior=ScalingBehavior())
    decision = run(spec=spec, current=6, unlocked=4, history=History(last_active_time=NOW))
    assert (decision.desired_replicas, decision.reason) == (6, Reason.STABLE)


def test_scale_up_goes_only_to_the_lowest_recommendation_in_its_window() -> None:
    up = replace(UNLIMITED, stabilization_window=timedelta(seconds=60))
    spec = make_spec(behavior=ScalingBehavior(scale_up=up, scale_down=UNLIMITED))
    decision = run(spec=spec, current=2, unlocked=40, history=recommended((30, 5), (90, 3)))
    assert (decision.desired_replicas, decision.reason) == (5, Reason.SCALE_UP)


def test_each_decision_records_its_unstabilized_recommendation() -> None:
    spec = make_spec(behavior=ScalingBehavior())
    decision = run(spec=spec, current=10, unlocked=8, history=recommended((100, 9)))
    assert decision.history.recommendations[-1] == Recommendation(time=NOW, replicas=2)


def test_history_forgets_recommendations_no_window_can_see() -> None:
    spec = make_spec(behavior=ScalingBehavior())
    decision = run(spec=spec, current=3, unlocked=12, history=recommended((400, 9), (100, 3)))
    assert [r.replicas for r in decision.history.recommendations] == [3, 3]


# --- rate policies ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("select", "expected"),
    [(SelectPolicy.MAX, 6), (SelectPolicy.MIN, 4)],
)
def test_default_scale_up_doubles_or_adds_four_pods_choosing_by_select_policy(
    select: SelectPolicy, expected: int
) -> None:
    up = replace(default_scale_up_rules(), select_policy=select)
    spec = make_spec(behavior=ScalingBehavior(scale_up=up), max_replicas=100)
    decision = run(spec=spec, current=2, unlocked=400)
    assert (decision.desired_replicas, decision.reason) == (expected, Reason.SCALE_UP)
    assert "policies allow at most" in decision.message


def test_scale_ups_within_a_policy_period_count_against_it() -> None:
    spec = make_spec(behavior=ScalingBehavior(), max_replicas=100)
    history = History(
        scale_events=(ScaleEvent(time=NOW - timedelta(seconds=5), change=4),),
        last_active_time=NOW,
    )
    decision = run(spec=spec, current=6, unlocked=400, history=history)
    assert (decision.desired_replicas, decision.reason) == (6, Reason.STABLE)


def test_scale_ups_older_than_the_policy_period_no_longer_count() -> None:
    spec = make_spec(behavior=ScalingBehavior(), max_replicas=100)
    history = History(
        scale_events=(ScaleEvent(time=NOW - timedelta(seconds=15), change=4),),
        last_active_time=NOW,
    )
    decision = run(spec=spec, current=6, unlocked=400, history=history)
    assert decision.desired_replicas == 12


def test_scale_down_is_limited_by_a_pods_policy() -> None:
    down = ScalingRules(
        stabilization_window=timedelta(0),
        policies=(ScalingPolicy(type=PolicyType.PODS, value=3, period=timedelta(seconds=60)),),
    )
    spec = make_spec(behavior=ScalingBehavior(scale_up=UNLIMITED, scale_down=down))
    decision = run(spec=spec, current=10, unlocked=8)
    assert (decision.desired_replicas, decision.reason) == (7, Reason.SCALE_DOWN)
    assert "policies allow at least 7" in decision.message


def test_scale_down_with_min_select_policy_takes_the_smallest_step() -> None:
    down = ScalingRules(
        stabilization_window=timedelta(0),
        policies=(
            ScalingPolicy(type=PolicyType.PODS, value=1, period=timedelta(seconds=60)),
            ScalingPolicy(type=PolicyType.PERCENT, value=50, period=timedelta(seconds=60)),
        ),
        select_policy=SelectPolicy.MIN,
    )
    spec = make_spec(behavior=ScalingBehavior(scale_up=UNLIMITED, scale_down=down))
    assert run(spec=spec, current=10, unlocked=4).desired_replicas == 9


@pytest.mark.parametrize("direction", ["scale_up", "scale_down"])
def test_a_disabled_direction_never_scales_that_way(direction: str) -> None:
    disabled = ScalingRules(
        stabilization_window=timedelta(0), policies=(), select_policy=SelectPolicy.DISABLED
    )
    spec = make_spec(behavior=replace(FREE, **{direction: disabled}))
    unlocked = 40 if direction == "scale_up" else 4
    decision = run(spec=spec, current=5, unlocked=unlocked)
    assert (decision.desired_replicas, decision.reason) == (5, Reason.STABLE)


def test_a_change_is_recorded_as_a_scale_event() -> None:
    decision = run(spec=make_spec(), current=2, unlocked=20)
    assert decision.history.scale_events == (ScaleEvent(time=NOW, change=3),)


def test_no_change_records_no_scale_event() -> None:
    decision = run(spec=make_spec(), current=2, unlocked=8)
    assert decision.history.scale_events == ()


# --- failed probes ----------------------------------------------------------------------------

FALLBACK = FallbackSpec(failure_threshold=3, replicas=4)


def test_a_failed_probe_below_the_threshold_holds_the_current_count() -> None:
    decision = run_failed(spec=make_spec(fallback=FALLBACK), current=7, failures=2)
    assert (decision.desired_replicas, decision.reason) == (7, Reason.PROBE_FAILED_HOLDING)
    assert "connection refused" in decision.message


def test_a_failed_probe_leaves_the_history_untouched_while_holding() -> None:
    history = recommended((10, 3))
    decision = run_failed(spec=make_spec(fallback=FALLBACK), current=7, failures=1, history=history)
    assert decision.history == history


def test_without_a_fallback_failed_probes_hold_the_count_indefinitely() -> None:
    decision = run_failed(spec=make_spec(), current=7, failures=1000)
    assert (decision.desired_replicas, decision.reason) == (7, Reason.PROBE_FAILED_HOLDING)


@pytest.mark.parametrize(
    ("behavior", "current", "expected"),
    [
        (FallbackBehavior.STATIC, 7, 4),
        (FallbackBehavior.STATIC, 1, 4),
        (FallbackBehavior.CURRENT_REPLICAS_IF_HIGHER, 7, 7),
        (FallbackBehavior.CURRENT_REPLICAS_IF_HIGHER, 1, 4),
        (FallbackBehavior.CURRENT_REPLICAS_IF_LOWER, 7, 4),
        (FallbackBehavior.CURRENT_REPLICAS_IF_LOWER, 1, 1),
    ],
)
def test_at_the_threshold_the_fallback_behavior_picks_the_count(
    behavior: FallbackBehavior, current: int, expected: int
) -> None:
    spec = make_spec(fallback=replace(FALLBACK, behavior=behavior))
    decision = run_failed(spec=spec, current=current, failures=3)
    assert (decision.desired_replicas, decision.reason) == (expected, Reason.FALLBACK)


def test_the_fallback_count_is_clamped_to_min_and_max() -> None:
    spec = make_spec(max_replicas=3, fallback=FALLBACK)
    assert run_failed(spec=spec, current=1, failures=5).desired_replicas == 3


# --- pause ------------------------------------------------------------------------------------


def test_a_paused_pool_runs_its_paused_replicas_whatever_the_backlog() -> None:
    spec = make_spec(paused=True, paused_replicas=0)
    decision = run(spec=spec, current=5, unlocked=100, locked=10)
    assert (decision.desired_replicas, decision.reason) == (0, Reason.PAUSED)


def test_a_paused_pool_without_paused_replicas_keeps_its_current_count() -> None:
    decision = run(spec=make_spec(paused=True), current=5, unlocked=100)
    assert (decision.desired_replicas, decision.reason) == (5, Reason.PAUSED)


def test_pause_overrides_a_failed_probe_and_keeps_the_history() -> None:
    spec = make_spec(paused=True, fallback=FALLBACK)
    history = recommended((10, 3))
    decision = run_failed(spec=spec, current=5, failures=10, history=history)
    assert (decision.desired_replicas, decision.reason, decision.history) == (
        5,
        Reason.PAUSED,
        history,
    )


# --- messages and validation ------------------------------------------------------------------


def test_the_message_states_the_backlog_and_the_change() -> None:
    decision = run(spec=make_spec(), current=2, unlocked=15, locked=5)
    assert decision.message == ("15 unlocked + 5 locked jobs at 4 per replica recommend 5; 2 -> 5")


@pytest.mark.parametrize(
    "overrides",
    [
        {"min_replicas": 5, "max_replicas": 4},
        {"min_replicas": -1},
        {"jobs_per_replica": 0},
        {"activation_backlog": -1},
        {"tolerance": -0.1},
    ],
)
def test_an_impossible_spec_is_rejected(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"."):
        make_spec(**overrides)


# --- properties -------------------------------------------------------------------------------

seconds = st.integers(min_value=0, max_value=600).map(lambda s: timedelta(seconds=s))
policies = st.builds(
    ScalingPolicy,
    type=st.sampled_from(PolicyType),
    value=st.integers(min_value=1, max_value=200),
    period=st.integers(min_value=1, max_value=300).map(lambda s: timedelta(seconds=s)),
)
rules = st.one_of(
    st.builds(
        ScalingRules,
        stabilization_window=seconds,
        policies=st.lists(policies, min_size=1, max_size=3).map(tuple),
        select_policy=st.sampled_from([SelectPolicy.MAX, SelectPolicy.MIN]),
    ),
    st.just(
        ScalingRules(
            stabilization_window=timedelta(0), policies=(), select_policy=SelectPolicy.DISABLED
        )
    ),
)


@st.composite
def specs(draw: st.DrawFn, *, paused: bool = False) -> ScalingSpec:
    low = draw(st.integers(min_value=0, max_value=5))
    return ScalingSpec(
        min_replicas=low,
        max_replicas=draw(st.integers(min_value=low, max_value=20)),
        jobs_per_replica=draw(st.integers(min_value=1, max_value=10)),
        activation_backlog=draw(st.integers(min_value=0, max_value=5)),
        cooldown_period=draw(seconds),
        release_idle_after=draw(st.none() | seconds),
        defer_small_queues=draw(st.booleans()),
        tolerance=draw(st.sampled_from([0.0, 0.1, 0.5])),
        behavior=ScalingBehavior(scale_up=draw(rules), scale_down=draw(rules)),
        fallback=draw(
            st.none()
            | st.builds(
                FallbackSpec,
                failure_threshold=st.integers(min_value=1, max_value=5),
                replicas=st.integers(min_value=0, max_value=30),
                behavior=st.sampled_from(FallbackBehavior),
            )
        ),
        paused=paused,
    )


moments = seconds.map(lambda ago: NOW - ago)
histories = st.builds(
    History,
    recommendations=st.lists(
        st.builds(Recommendation, time=moments, replicas=st.integers(0, 30)), max_size=5
    ).map(tuple),
    scale_events=st.lists(
        st.builds(ScaleEvent, time=moments, change=st.integers(-10, 10)), max_size=5
    ).map(tuple),
    last_active_time=st.none() | moments,
    queue_seen=st.booleans(),
    arrivals_stopped=st.booleans(),
)


@st.composite
def backlogs(draw: st.DrawFn) -> Backlog:
    locked = draw(st.integers(0, 200))
    return Backlog(
        unlocked=draw(st.just(0) | st.integers(0, 200)),
        locked=locked,
        holders=draw(st.none() | st.integers(0, locked)),
        newest_created=draw(st.none() | moments),
    )


observations = st.builds(
    Observation,
    now=st.just(NOW),
    current_replicas=st.integers(0, 30),
    backlog=st.one_of(backlogs(), st.just(ProbeFailed(error="timeout"))),
    consecutive_failures=st.integers(0, 10),
)


@given(spec=specs(), observation=observations, history=histories)
def test_property_an_unpaused_pool_always_lands_within_min_and_max(
    spec: ScalingSpec, observation: Observation, history: History
) -> None:
    decision = decide(spec=spec, observation=observation, history=history)
    if decision.reason is Reason.PROBE_FAILED_HOLDING:
        # Holding is no change at all: an unknown backlog gives no reason to move.
        assert decision.desired_replicas == observation.current_replicas
    else:
        assert spec.min_replicas <= decision.desired_replicas <= spec.max_replicas


@given(spec=specs(), observation=observations, history=histories)
def test_property_releasing_replicas_that_hold_no_job_keeps_every_holder(
    spec: ScalingSpec, observation: Observation, history: History
) -> None:
    decision = decide(spec=spec, observation=observation, history=history)
    backlog = observation.backlog
    if "hold no job" in decision.message:
        assert isinstance(backlog, Backlog)
        assert backlog.holders is not None
        assert backlog.unlocked == 0
        kept = min(backlog.holders, spec.max_replicas, observation.current_replicas)
        assert kept <= decision.desired_replicas < observation.current_replicas


@given(spec=specs(), observation=observations, history=histories)
def test_property_a_pool_with_locked_jobs_never_goes_to_zero(
    spec: ScalingSpec, observation: Observation, history: History
) -> None:
    decision = decide(spec=spec, observation=observation, history=history)
    backlog = observation.backlog
    if isinstance(backlog, Backlog) and backlog.locked > 0 and spec.max_replicas > 0:
        assert decision.desired_replicas > 0


@given(spec=specs(), observation=observations, history=histories)
def test_property_a_failed_probe_below_the_threshold_never_scales_down(
    spec: ScalingSpec, observation: Observation, history: History
) -> None:
    failed = replace(observation, backlog=ProbeFailed(error="timeout"))
    decision = decide(spec=spec, observation=failed, history=history)
    threshold = spec.fallback.failure_threshold if spec.fallback else None
    if threshold is None or failed.consecutive_failures < threshold:
        assert decision.desired_replicas == failed.current_replicas


@given(
    spec=specs(paused=True),
    paused_replicas=st.none() | st.integers(0, 50),
    observation=observations,
    history=histories,
)
def test_property_a_paused_pool_is_frozen(
    spec: ScalingSpec, paused_replicas: int | None, observation: Observation, history: History
) -> None:
    spec = replace(spec, paused_replicas=paused_replicas)
    decision = decide(spec=spec, observation=observation, history=history)
    expected = observation.current_replicas if paused_replicas is None else paused_replicas
    assert (decision.desired_replicas, decision.history) == (expected, history)


@settings(max_examples=50, deadline=None)
@given(
    policy=policies,
    min_replicas=st.integers(0, 2),
    jobs=st.lists(st.integers(0, 400), min_size=1, max_size=30),
    step=st.integers(min_value=1, max_value=30),
)
def test_property_scale_up_never_exceeds_what_the_policy_allows_per_period(
    policy: ScalingPolicy, min_replicas: int, jobs: list[int], step: int
) -> None:
    """Drive a pool through a backlog series; no period may grow beyond the policy's allowance.

    The allowance is measured from the replica count at the start of each trailing period, as
    HPA does (less `PERIOD_SLACK`); reaching the floor (``max(min, 1)``) is exempt, as the floor
    is not rate-limited.
    """
    spec = ScalingSpec(
        min_replicas=min_replicas,
        max_replicas=1000,
        jobs_per_replica=1,
        behavior=ScalingBehavior(
            scale_up=ScalingRules(stabilization_window=timedelta(0), policies=(policy,)),
            scale_down=UNLIMITED,
        ),
    )
    replicas = min_replicas
    trace: list[tuple[datetime, int]] = [(NOW - timedelta(days=1), replicas)]
    history = History()
    for index, unlocked in enumerate(jobs):
        now = NOW + timedelta(seconds=index * step)
        observation = Observation(
            now=now, current_replicas=replicas, backlog=Backlog(unlocked=unlocked, locked=0)
        )
        decision = decide(spec=spec, observation=observation, history=history)
        if decision.desired_replicas > replicas:
            counted = (
                policy.period - PERIOD_SLACK if policy.period > PERIOD_SLACK else policy.period
            )
            start = [count for at, count in trace if at <= now - counted][-1]
            # Replica counts set strictly inside the period count as growth already spent.
            if policy.type is PolicyType.PODS:
                allowance = start + policy.value
            else:
                allowance = -(-start * (100 + policy.value) // 100)
            assert decision.desired_replicas <= max(allowance, min_replicas, 1)
        replicas = decision.desired_replicas
        history = decision.history
        trace.append((now, replicas))


def test_a_tick_a_little_early_still_gets_the_next_periods_allowance() -> None:
    """Ticks 15 s apart, a timer a few ms early: "4 pods per 15 s" allows 4 more at each tick."""
    spec = make_spec(jobs_per_replica=2, behavior=ScalingBehavior())
    first = decide(
        spec=spec,
        observation=Observation(now=NOW, current_replicas=0, backlog=Backlog(12, 0)),
        history=History(),
    )
    assert first.desired_replicas == 4
    early = NOW + timedelta(seconds=14.99)
    second = decide(
        spec=spec,
        observation=Observation(now=early, current_replicas=4, backlog=Backlog(4, 8)),
        history=first.history,
    )
    assert second.desired_replicas == 6


# --- which limit applied ----------------------------------------------------------------------


def test_a_clamp_by_max_replicas_is_named_as_such_not_as_the_policies() -> None:
    """Default policies would allow 8 (2 doubled, or 2 + 4); maxReplicas 5 is what holds it."""
    spec = make_spec(behavior=ScalingBehavior(), max_replicas=5)
    decision = run(spec=spec, current=2, unlocked=400)
    assert (decision.desired_replicas, decision.reason) == (5, Reason.SCALE_UP)
    assert "capped at maxReplicas 5" in decision.message
    assert "policies" not in decision.message


def test_the_policies_are_named_when_they_hold_the_count_below_max_replicas() -> None:
    spec = make_spec(behavior=ScalingBehavior(), max_replicas=100)
    decision = run(spec=spec, current=2, unlocked=400)
    assert decision.desired_replicas == 6
    assert "scale-up policies allow at most 6 now" in decision.message
    assert "maxReplicas" not in decision.message


def test_an_activation_capped_by_max_replicas_says_so() -> None:
    spec = make_spec(behavior=ScalingBehavior(), max_replicas=3)
    decision = run(spec=spec, current=0, unlocked=400)
    assert (decision.desired_replicas, decision.reason) == (3, Reason.ACTIVATED)
    assert "capped at maxReplicas 3" in decision.message
    assert "policies" not in decision.message
