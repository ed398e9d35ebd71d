"""The overlap registry, indexed: the same answers as comparing every pool with every other, and
an overlap that survives a late operator but not a pool that stopped counting.

The property replays random histories (records on two engines, a few elements, definitions and
tenants, time moving on, pools forgotten) against `_Scan`, the registry as it was before it was
indexed: a tick compared its pool with every pool remembered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from flowable_worker import ClientSettings
from flowable_worker_operator.backlog import ProbeResult, Selector
from flowable_worker_operator.engines import Engine
from flowable_worker_operator.overlap import Overlaps, overlaps
from flowable_worker_operator.reconcile import PoolState, Reconciler
from flowable_worker_operator.scaling import Backlog

from .test_reconcile import NOW, FakeProber, FakeWorkload, body, condition

ENGINES = (
    Engine(ClientSettings(base_url="http://flowable:8080")),
    Engine(ClientSettings(base_url="http://flowable:8080/", token="t")),  # same jobs
    Engine(ClientSettings(base_url="http://other:8080")),
)


@dataclass
class _Scan:
    """The registry before the index: every record compares with every entry not lapsed."""

    pools: dict[str, tuple[Engine, tuple[Selector, ...], datetime]]

    def record(
        self,
        pool: str,
        engine: Engine,
        selectors: tuple[Selector, ...],
        now: datetime,
        lapse: timedelta,
    ) -> tuple[str, ...]:
        self.pools = {n: p for n, p in self.pools.items() if p[2] >= now}
        self.pools[pool] = (engine, selectors, now + lapse)
        where = _where(engine)
        return tuple(sorted(
            name for name, (theirs, their_selectors, _) in self.pools.items()
            if name != pool and _where(theirs) == where
            and any(overlaps(a, b) for a in selectors for b in their_selectors)
        ))  # fmt: skip


def _where(engine: Engine) -> tuple[str, str]:
    return engine.client.base_url.rstrip("/"), engine.client.external_job_api_path.strip("/")


_selectors = st.builds(
    Selector,
    element_id=st.sampled_from(["check", "mail", "ship"]),
    process_definition_id=st.sampled_from([None, "inv:1:a", "inv:2:b"]),
    tenant_id=st.sampled_from([None, "", "acme", "globex"]),
)
_records = st.tuples(
    st.sampled_from(["a/one", "a/two", "b/one", "b/three", "c/four"]),
    st.sampled_from(range(len(ENGINES))),
    st.lists(_selectors, min_size=1, max_size=3).map(tuple),
    st.integers(min_value=0, max_value=40),  # seconds since the previous step
    st.booleans(),  # forget the pool instead
)


@settings(max_examples=300)
@given(steps=st.lists(_records, max_size=40))
def test_the_index_answers_as_the_scan_of_every_pool(
    steps: list[tuple[str, int, tuple[Selector, ...], int, bool]],
) -> None:
    indexed, scan = Overlaps(), _Scan({})
    now, lapse = NOW, timedelta(seconds=45)
    for pool, engine, selectors, elapsed, forget in steps:
        now += timedelta(seconds=elapsed)
        if forget:
            indexed.forget(pool)
            scan.pools.pop(pool, None)
            continue
        expected = scan.record(pool, ENGINES[engine], selectors, now, lapse)
        assert indexed.record(pool, ENGINES[engine], selectors, now, lapse=lapse) == expected
    assert len(indexed) <= len({step[0] for step in steps})


def test_lapsed_entries_nobody_meets_are_swept() -> None:
    registry = Overlaps()
    lapse = timedelta(seconds=30)
    for n in range(50):
        registry.record(f"a/{n}", ENGINES[0], [Selector(f"e{n}")], NOW, lapse=lapse)
    later = NOW + timedelta(minutes=1)
    for _ in range(60):
        registry.record("b/alone", ENGINES[0], [Selector("other")], later, lapse=lapse)
    assert len(registry) == 1


# -- in the tick: late is not gone ---------------------------------------------------------------


class _Counting(FakeProber):
    async def backlog(self, engine: Engine, topic: str, selectors: object) -> ProbeResult:
        return ProbeResult(Backlog(1, 0), (Selector("check"),))


def _pool(name: str) -> dict[str, object]:
    pool = body()
    pool["metadata"] = {**pool["metadata"], "name": name}
    return pool


async def test_an_operator_ticking_late_keeps_the_shared_backlog_without_flapping() -> None:
    reconciler = Reconciler(workload=FakeWorkload(replicas=1), prober=_Counting())
    first, second = PoolState(), PoolState()
    await reconciler.tick(_pool("one"), first, NOW)
    await reconciler.tick(_pool("two"), second, NOW)
    shared = await reconciler.tick(_pool("one"), first, NOW)  # each has been told of the other
    # Every tick 5 intervals (75 s) late: before, an entry lapsed after 3 intervals, so each
    # pool found the other gone, then back, a write and a Warning each time.
    seen = []
    for late in range(1, 6):
        at = NOW + late * timedelta(seconds=75)
        for pool, state in (("one", first), ("two", second)):
            outcome = await reconciler.tick(_pool(pool), state, at)
            seen.append(condition(outcome, "SharedBacklog")["status"])
            assert not [e for e in outcome.events if e.reason == "SharedBacklog"]
    assert condition(shared, "SharedBacklog")["status"] == "True"
    assert seen == ["True"] * 10


async def test_a_pool_that_stops_at_a_bad_spec_leaves_the_registry_at_once() -> None:
    reconciler = Reconciler(workload=FakeWorkload(replicas=1), prober=_Counting())
    first = PoolState()
    await reconciler.tick(_pool("one"), first, NOW)
    broken = _pool("two")
    await reconciler.tick(broken, PoolState(), NOW)
    assert (
        condition(await reconciler.tick(_pool("one"), first, NOW), "SharedBacklog")["status"]
        == "True"
    )
    broken["spec"] = {**broken["spec"], "topic": ""}  # type: ignore[dict-item]
    stopped = await reconciler.tick(broken, PoolState(), NOW + timedelta(seconds=1))
    assert condition(stopped, "Ready")["reason"] == "InvalidSpec"
    alone = await reconciler.tick(_pool("one"), first, NOW + timedelta(seconds=15))
    assert condition(alone, "SharedBacklog")["status"] == "False"
