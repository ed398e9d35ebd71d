"""What a tick reuses instead of redoing: work whose inputs did not change, or that another pool
did an instant ago. Each reuse must be invisible in the outcome: the same status, the same
decision as without it; only the number of calls behind it drops."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import pytest

from flowable_worker_operator import reconcile
from flowable_worker_operator.engines import Engine, EngineConfigError
from flowable_worker_operator.reconcile import PoolState, Reconciler
from flowable_worker_operator.scaling import Reason
from flowable_worker_operator.spec import PAUSED_REPLICAS_ANNOTATION, Pool
from tests.unit.operator.test_reconcile import ENGINE, NOW, FakeProber, FakeWorkload, body


@dataclass
class CountingWorkload(FakeWorkload):
    """Counts engine resolutions (each a read of the pool's Secrets in the operator)."""

    resolved: list[tuple[str, str]] = field(default_factory=list)
    failures_left: int = 0

    async def engine(self, pool: Pool) -> Engine:
        self.resolved.append((pool.namespace, pool.name))
        if self.failures_left:
            self.failures_left -= 1
            raise EngineConfigError("Secret billing/flowable not found")
        return ENGINE


def pool(
    name: str, namespace: str = "billing", url: str = "http://flowable:8080"
) -> dict[str, Any]:
    made = body(spec={"engine": {"url": url}})
    made["metadata"] = {**made["metadata"], "name": name, "namespace": namespace, "uid": name}
    return made


async def test_pools_of_a_namespace_naming_one_engine_share_its_resolution_within_the_window() -> (
    None
):
    workload = CountingWorkload()
    reconciler = Reconciler(workload=workload, prober=FakeProber(), engine_max_age=60.0)
    for name in ("a", "b", "c"):
        await reconciler.tick(pool(name), PoolState(), NOW)
    assert workload.resolved == [("billing", "a")]


async def test_another_namespace_or_another_engine_is_resolved_on_its_own() -> None:
    workload = CountingWorkload()
    reconciler = Reconciler(workload=workload, prober=FakeProber(), engine_max_age=60.0)
    await reconciler.tick(pool("a"), PoolState(), NOW)
    await reconciler.tick(pool("b", namespace="shipping"), PoolState(), NOW)
    await reconciler.tick(pool("c", url="http://other:8080"), PoolState(), NOW)
    assert workload.resolved == [("billing", "a"), ("shipping", "b"), ("billing", "c")]


async def test_without_a_window_every_tick_resolves_its_engine() -> None:
    workload = CountingWorkload()
    reconciler = Reconciler(workload=workload, prober=FakeProber())
    state = PoolState()
    await reconciler.tick(pool("a"), state, NOW)
    await reconciler.tick(pool("a"), state, NOW)
    assert len(workload.resolved) == 2


async def test_a_failed_resolution_is_not_shared_with_later_ticks() -> None:
    workload = CountingWorkload(failures_left=1)
    reconciler = Reconciler(workload=workload, prober=FakeProber(), engine_max_age=60.0)
    failed = await reconciler.tick(pool("a"), PoolState(), NOW)
    assert failed.status["probe"]["consecutiveFailures"] == 1
    fixed = await reconciler.tick(pool("b"), PoolState(), NOW)
    assert fixed.status["probe"]["consecutiveFailures"] == 0
    assert workload.resolved == [("billing", "a"), ("billing", "b")]


async def test_a_shared_resolution_gives_the_same_outcome_as_a_fresh_one() -> None:
    fresh = await Reconciler(workload=CountingWorkload(), prober=FakeProber()).tick(
        pool("a"), PoolState(), NOW
    )
    workload = CountingWorkload()
    sharing = Reconciler(workload=workload, prober=FakeProber(), engine_max_age=60.0)
    await sharing.tick(pool("a"), PoolState(), NOW)
    shared = await sharing.tick(copy.deepcopy(pool("a")), PoolState(), NOW)
    assert len(workload.resolved) == 1
    assert shared.status == fresh.status
    assert shared.decision == fresh.decision


async def test_an_unchanged_pool_is_read_once_and_any_change_is_read_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reads: list[int] = []
    real = reconcile.parse_pool

    def counting(body: Any, **kwargs: Any) -> Pool:
        reads.append(1)
        return real(body, **kwargs)

    monkeypatch.setattr(reconcile, "parse_pool", counting)
    reconciler = Reconciler(workload=FakeWorkload(), prober=FakeProber())
    state, made = PoolState(), pool("a")
    for _ in range(3):
        await reconciler.tick(copy.deepcopy(made), state, NOW)
    assert len(reads) == 1
    changed = copy.deepcopy(made)
    changed["spec"]["scaling"] = {"maxReplicas": 3}  # the same generation: compared by value
    outcome = await reconciler.tick(changed, state, NOW)
    assert len(reads) == 2
    assert outcome.decision is not None
    assert outcome.decision.desired_replicas <= 3
    paused = copy.deepcopy(changed)
    paused["metadata"]["annotations"] = {PAUSED_REPLICAS_ANNOTATION: "2"}
    outcome = await reconciler.tick(paused, state, NOW)
    assert len(reads) == 3
    assert outcome.decision is not None
    assert outcome.decision.reason is Reason.PAUSED


async def test_a_bad_spec_stays_refused_with_the_same_message_without_being_read_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reconciler = Reconciler(workload=FakeWorkload(), prober=FakeProber())
    state, bad = PoolState(), pool("a")
    bad["spec"]["scaling"] = {"minReplicas": 5, "maxReplicas": 2}
    first = await reconciler.tick(bad, state, NOW)
    monkeypatch.setattr(reconcile, "parse_pool", lambda *_a, **_k: pytest.fail("read again"))
    second = await reconciler.tick(copy.deepcopy(bad), state, NOW)
    assert first.status == second.status
    assert first.status["conditions"][0]["reason"] == "InvalidSpec"
    assert second.events == ()  # warned once per problem and generation, as before
