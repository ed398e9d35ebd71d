"""flowable_pool_condition and the build_info gauges of both components.

The condition gauge is what alerts and dashboards select pools by (`status="False"` == 1), so it
must follow the status a tick wrote, bound its labels to the operator's own conditions, and leave
/metrics with the pool; build_info must carry the one project version.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

import flowable_worker_operator.metrics as metrics
from flowable_worker import __version__
from flowable_worker.metrics import WorkerMetrics
from flowable_worker_operator.scaling import Backlog, Decision, History, Reason
from flowable_worker_operator.status import CONDITION_TYPES

NAMESPACE, POOL = "shop", "condition-metrics"


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def _tick(conditions: list[dict[str, str]]) -> None:
    metrics.record_tick(
        NAMESPACE,
        POOL,
        backlog=None,
        replicas=None,
        workload_replicas=None,
        replica_bounds=None,
        decision=None,
        probe_failures=0,
        conditions=conditions,
        change=0,
    )


def _condition(condition: str, status: str) -> float | None:
    return _value(
        metrics.REGISTRY,
        "flowable_pool_condition",
        namespace=NAMESPACE,
        pool=POOL,
        condition=condition,
        status=status,
    )


def test_each_condition_has_one_series_at_1_for_its_status() -> None:
    try:
        _tick([{"type": "Ready", "status": "False"}, {"type": "Paused", "status": "True"}])

        assert [_condition("Ready", s) for s in ("True", "False", "Unknown")] == [0, 1, 0]
        assert [_condition("Paused", s) for s in ("True", "False", "Unknown")] == [1, 0, 0]

        _tick([{"type": "Ready", "status": "True"}, {"type": "Paused", "status": "False"}])
        assert [_condition("Ready", s) for s in ("True", "False", "Unknown")] == [1, 0, 0]
        assert _condition("Paused", "True") == 0
    finally:
        metrics.forget_pool(NAMESPACE, POOL)


def test_foreign_conditions_are_left_out_and_odd_statuses_read_unknown() -> None:
    try:
        _tick([{"type": "SomeoneElses", "status": "True"}, {"type": "Active", "status": "Maybe"}])

        assert _condition("SomeoneElses", "True") is None
        assert _condition("Active", "Unknown") == 1
    finally:
        metrics.forget_pool(NAMESPACE, POOL)


def test_forget_pool_drops_every_condition_series() -> None:
    _tick([{"type": kind, "status": "True"} for kind in CONDITION_TYPES])
    assert _condition("EngineReachable", "True") == 1

    metrics.forget_pool(NAMESPACE, POOL)

    for kind in CONDITION_TYPES:
        for status in ("True", "False", "Unknown"):
            assert _condition(kind, status) is None


def test_both_components_export_their_version_as_build_info() -> None:
    assert _value(metrics.REGISTRY, "flowable_pool_build_info", version=__version__) == 1
    worker = WorkerMetrics()
    assert _value(worker.registry, "flowable_worker_build_info", version=__version__) == 1


def _full_tick(*, unlocked: int, replicas: int) -> None:
    metrics.record_tick(
        NAMESPACE,
        POOL,
        backlog=Backlog(unlocked=unlocked, locked=0),
        replicas=replicas,
        workload_replicas=replicas,
        replica_bounds=(0, 10),
        decision=Decision(
            desired_replicas=replicas, reason=Reason.STABLE, message="", history=History()
        ),
        probe_failures=0,
        conditions=[{"type": "Ready", "status": "True"}],
        change=0,
    )


def _pool_value(name: str, **labels: str) -> float | None:
    return _value(metrics.REGISTRY, name, namespace=NAMESPACE, pool=POOL, **labels)


def test_every_tick_counts_its_decision_and_the_gauges_show_the_last_values() -> None:
    try:
        for _ in range(3):
            _full_tick(unlocked=4, replicas=1)
        assert _pool_value("flowable_pool_decisions_total", reason="Stable") == 3
        assert _pool_value("flowable_pool_backlog_jobs", state="unlocked") == 4
        _full_tick(unlocked=9, replicas=3)
        assert _pool_value("flowable_pool_backlog_jobs", state="unlocked") == 9
        assert _pool_value("flowable_pool_replicas") == 3
        assert _pool_value("flowable_pool_decisions_total", reason="Stable") == 4
    finally:
        metrics.forget_pool(NAMESPACE, POOL)


def test_a_forgotten_pool_recorded_again_gets_every_series_back() -> None:
    try:
        _full_tick(unlocked=4, replicas=1)
        metrics.forget_pool(NAMESPACE, POOL)  # e.g. its shard went to another replica and back
        assert _pool_value("flowable_pool_replicas") is None
        _full_tick(unlocked=4, replicas=1)  # the same values as before it was forgotten
        assert _pool_value("flowable_pool_replicas") == 1
        assert _pool_value("flowable_pool_backlog_jobs", state="unlocked") == 4
        assert _pool_value("flowable_pool_condition", condition="Ready", status="True") == 1
        assert _pool_value("flowable_pool_decisions_total", reason="Stable") == 1
    finally:
        metrics.forget_pool(NAMESPACE, POOL)
