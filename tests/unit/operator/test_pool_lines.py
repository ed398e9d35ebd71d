"""The per-pool series' text kept per pool (`pool_lines`, through `metrics._PoolSeries`).

What /metrics serves of the per-pool series must stay exactly what prometheus-client rendered
before the text was kept (as of 85b33b2: families built from the records at every scrape), for
any pools, label values that need escaping included; and the text of an idle pool must not be
rendered again, while a changed or forgotten pool's must follow at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from flowable_worker_operator import metrics
from flowable_worker_operator.scaling import Backlog, Decision, History, Reason
from flowable_worker_operator.status import CONDITION_TYPES

# --- the rendering as of 85b33b2, verbatim but for taking the records as an argument -----------

_POOL_LABELS = ("namespace", "pool")
_CONDITION_STATUSES = ("True", "False", "Unknown")
_GAUGES = (
    (
        "backlog_jobs",
        "Jobs of the pool's topic at the last successful probe: state=unlocked (waiting) or "
        "locked (in flight)",
        ("state",),
    ),
    ("replicas", "Replicas of the pool's workload after the last tick", ()),
    ("desired_replicas", "Replicas the last decision asked for", ()),
    (
        "workload_replicas",
        "Replicas the pool's workload reports in its /scale status (pods that exist, ready or not)",
        (),
    ),
    ("min_replicas", "The pool's spec.scaling.minReplicas", ()),
    ("max_replicas", "The pool's spec.scaling.maxReplicas", ()),
    (
        "probe_consecutive_failures",
        "Backlog probes failed in a row (0 after a success); the fallback starts at its threshold",
        (),
    ),
    (
        "condition",
        "The pool's status conditions after the last tick, as kube-state-metrics shows a pod's: 1 "
        "on the series of the condition's status (True, False, Unknown), 0 on the other two",
        ("condition", "status"),
    ),
)
_DECISIONS_HELP = (
    "Scaling decisions by reason (ScaleUp, ScaleDown, Stable, Idle, Activated, CooledDown, "
    "Fallback, Paused, ProbeFailedHolding)"
)
PREFIX = "flowable_pool_"


class _Before(Collector):
    def __init__(self, pools: dict[tuple[str, str], metrics._Pool]) -> None:
        self.pools = pools

    def collect(self) -> list[Metric]:
        gauges = {
            name: GaugeMetricFamily(PREFIX + name, text, labels=[*_POOL_LABELS, *extra])
            for name, text, extra in _GAUGES
        }
        decisions = CounterMetricFamily(
            PREFIX + "decisions", _DECISIONS_HELP, labels=[*_POOL_LABELS, "reason"]
        )
        for (namespace, name), pool in self.pools.items():
            _add(gauges, decisions, (namespace, name), pool)
        return [*gauges.values(), decisions]


def _add(
    gauges: dict[str, GaugeMetricFamily],
    decisions: CounterMetricFamily,
    labels: tuple[str, str],
    pool: metrics._Pool,
) -> None:
    if pool.backlog is not None:
        gauges["backlog_jobs"].add_metric([*labels, "unlocked"], pool.backlog.unlocked)
        gauges["backlog_jobs"].add_metric([*labels, "locked"], pool.backlog.locked)
    for name, value in (
        ("replicas", pool.replicas),
        ("desired_replicas", pool.desired_replicas),
        ("workload_replicas", pool.workload_replicas),
        ("probe_consecutive_failures", pool.probe_failures),
    ):
        if value is not None:
            gauges[name].add_metric(labels, value)
    if pool.replica_bounds is not None:
        gauges["min_replicas"].add_metric(labels, pool.replica_bounds[0])
        gauges["max_replicas"].add_metric(labels, pool.replica_bounds[1])
    for kind, current in pool.conditions.items():
        for text in _CONDITION_STATUSES:
            gauges["condition"].add_metric([*labels, kind, text], 1 if text == current else 0)
    for reason, (count, created) in pool.decisions.items():
        decisions.add_metric([*labels, reason], count, created=created)


# --- ticks ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tick:
    backlog: Backlog | None = None
    replicas: int | None = None
    workload_replicas: int | None = None
    replica_bounds: tuple[int, int] | None = None
    decision: Decision | None = None
    probe_failures: int = 0
    conditions: tuple[dict[str, str | None], ...] = ()


def _record(series: metrics._PoolSeries, key: tuple[str, str], tick: Tick) -> None:
    series.record(
        key,
        backlog=tick.backlog,
        replicas=tick.replicas,
        workload_replicas=tick.workload_replicas,
        replica_bounds=tick.replica_bounds,
        decision=tick.decision,
        probe_failures=tick.probe_failures,
        conditions=tick.conditions,
    )


def _text(series: metrics._PoolSeries) -> str:
    """What /metrics serves of the per-pool series."""
    return series.snapshot().render().decode()


def _before(series: metrics._PoolSeries) -> str:
    return generate_latest(_Before(series.pools)).decode()


def _decision(desired: int, reason: Reason = Reason.STABLE) -> Decision:
    return Decision(desired_replicas=desired, reason=reason, message="", history=History())


# Label values that need escaping, and some that merely look odd.
_names = st.one_of(
    st.sampled_from(["shop", 'a"b', "back\\slash", "new\nline", "\\n", '\\"', "{x}", "ü€", ""]),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=6),
)
_counts = st.one_of(st.integers(0, 20), st.integers(0, 10**17))
_ticks = st.builds(
    Tick,
    backlog=st.none() | st.builds(Backlog, unlocked=_counts, locked=_counts),
    replicas=st.none() | _counts,
    workload_replicas=st.none() | _counts,
    replica_bounds=st.none() | st.tuples(_counts, _counts),
    decision=st.none() | st.builds(_decision, st.integers(0, 10**9), st.sampled_from(list(Reason))),
    probe_failures=st.integers(0, 5),
    conditions=st.lists(
        st.fixed_dictionaries(
            {
                "type": st.sampled_from([*CONDITION_TYPES, "SomeoneElses"]),
                "status": st.sampled_from(["True", "False", "Unknown", "Maybe", None]),
            }
        ),
        max_size=4,
    ).map(tuple),
)
# (pool index, tick) records a tick, (pool index, None) forgets the pool.
_steps = st.lists(st.tuples(st.integers(0, 4), st.none() | _ticks), max_size=25)


@settings(max_examples=300, deadline=None)
@given(keys=st.lists(st.tuples(_names, _names), min_size=1, max_size=5, unique=True), steps=_steps)
def test_the_text_is_what_prometheus_client_rendered_before(
    keys: list[tuple[str, str]], steps: list[tuple[int, Tick | None]]
) -> None:
    series = metrics._PoolSeries()
    for index, tick in steps:
        key = keys[index % len(keys)]
        if tick is None:
            series.forget(key)
        else:
            _record(series, key, tick)
        assert _text(series) == _before(series)
    # And what `collect` gives readers such as `get_sample_value` is the same series.
    assert generate_latest(series).decode() == _before(series)


IDLE = Tick(
    backlog=Backlog(unlocked=0, locked=0),
    replicas=1,
    workload_replicas=1,
    replica_bounds=(0, 10),
    decision=_decision(1),
    conditions=tuple({"type": kind, "status": "True"} for kind in CONDITION_TYPES),
)


def test_an_idle_pool_renders_only_its_decision_counter_again() -> None:
    series = metrics._PoolSeries()
    _record(series, ("shop", "orders"), IDLE)
    before = series.lines.renders

    _record(series, ("shop", "orders"), IDLE)

    assert series.lines.renders == before + 1  # the decisions counted, nothing else
    assert 'flowable_pool_decisions_total{namespace="shop",pool="orders",reason="Stable"} 2.0' in (
        _text(series)
    )
    _record(series, ("shop", "orders"), Tick(probe_failures=0))  # no decision: nothing moved
    assert series.lines.renders == before + 1
    assert _text(series) == _before(series)


def test_a_changed_pool_is_rendered_again_and_the_others_are_not() -> None:
    series = metrics._PoolSeries()
    for name in ("a", "b", "c"):
        _record(series, ("shop", name), IDLE)
    before = series.lines.renders

    busy = Tick(
        backlog=Backlog(unlocked=7, locked=2),
        replicas=IDLE.replicas,
        workload_replicas=IDLE.workload_replicas,
        replica_bounds=IDLE.replica_bounds,
        conditions=({"type": "Ready", "status": "False"},),
    )
    _record(series, ("shop", "b"), busy)

    assert series.lines.renders == before + 2  # b's backlog and b's conditions
    text = _text(series)
    assert 'flowable_pool_backlog_jobs{namespace="shop",pool="b",state="unlocked"} 7.0' in text
    assert 'flowable_pool_backlog_jobs{namespace="shop",pool="a",state="unlocked"} 0.0' in text
    ready = 'flowable_pool_condition{condition="Ready",namespace="shop",pool="b",status="False"}'
    assert f"{ready} 1.0" in text
    assert text == _before(series)


def test_a_forgotten_pool_leaves_the_text_and_comes_back_last() -> None:
    series = metrics._PoolSeries()
    for name in ("a", "b", "c"):
        _record(series, ("shop", name), IDLE)

    series.forget(("shop", "b"))

    text = _text(series)
    assert 'pool="b"' not in text
    assert 'pool="a"' in text
    assert 'pool="c"' in text
    assert len(series.lines) == 2
    _record(series, ("shop", "b"), IDLE)
    replicas = [line for line in _text(series).splitlines() if line.startswith("flowable_pool_rep")]
    assert [line.split('pool="')[1][0] for line in replicas] == ["a", "c", "b"]
    assert _text(series) == _before(series)


def test_no_pool_still_gives_every_family_its_header_but_no_created_family() -> None:
    series = metrics._PoolSeries()
    text = _text(series)
    assert "# TYPE flowable_pool_decisions_total counter" in text
    assert "flowable_pool_decisions_created" not in text
    assert text == _before(series)


def _families(text: str) -> Iterable[str]:
    return (line.split()[2] for line in text.splitlines() if line.startswith("# TYPE"))


def test_the_operator_registry_serves_the_same_pool_series_as_before() -> None:
    key = ("pool-lines-test", "orders")
    try:
        metrics.record_tick(*key, **vars(IDLE), change=0)
        pools = metrics._POOL_SERIES
        assert _text(pools) == _before(pools)
        page = set(_families(generate_latest(metrics.REGISTRY).decode()))
        assert set(_families(_text(pools))) <= page
    finally:
        metrics.forget_pool(*key)
