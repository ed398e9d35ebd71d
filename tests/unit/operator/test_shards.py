"""Sharding: the pure plan, and keepers sharing shards through a fake API server with optimistic
writes (resourceVersion), on a fake clock: fair shares, takeover after a replica dies, and never
two replicas acting on one shard at the same moment."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowable_worker_operator.leader import LeaseConflictError, LeaseRecord
from flowable_worker_operator.shards import (
    LEASE_SET_LABEL,
    ShardKeeper,
    member_lease_name,
    plan,
    shard_of,
)

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=15)
EVERY = timedelta(seconds=5)


def held(holder: str, renewed: datetime) -> LeaseRecord:
    return LeaseRecord(holder, LEASE, renewed, renewed, 0, "1")


# --- shard_of -------------------------------------------------------------------------------


def test_shard_of_is_stable_and_spreads() -> None:
    assert shard_of("ns", "pool-1", 8) == shard_of("ns", "pool-1", 8)
    counts = Counter(shard_of("ns", f"pool-{i}", 8) for i in range(8000))
    assert set(counts) == set(range(8))
    assert min(counts.values()) > 800  # 1000 each on average


def test_member_lease_name_is_a_valid_short_name() -> None:
    name = member_lease_name("fwo", "operator-7d9c_ab12cd" * 10)
    assert name.startswith("fwo-member-")
    assert len(name) == len("fwo-member-") + 12


# --- plan -----------------------------------------------------------------------------------


def test_alone_takes_every_free_shard() -> None:
    decided = plan(dict.fromkeys(range(4)), [], "a", T0, renew_every=EVERY)
    assert sorted(decided.take) == [0, 1, 2, 3]
    assert decided.renew == ()
    assert decided.give_back is None


def test_takes_only_up_to_its_fair_share() -> None:
    shards: dict[int, LeaseRecord | None] = {0: held("b", T0), 1: None, 2: None, 3: None}
    decided = plan(shards, ["a", "b"], "a", T0, renew_every=EVERY)
    assert len(decided.take) == 2
    assert 0 not in decided.take


def test_a_live_holder_keeps_its_shard_and_an_expired_one_is_free() -> None:
    shards = {0: held("b", T0), 1: held("c", T0 - LEASE - timedelta(seconds=1))}
    decided = plan(shards, ["a", "b"], "a", T0, renew_every=EVERY)
    assert decided.take == (1,)


def test_renews_only_what_is_due() -> None:
    shards = {0: held("a", T0 - EVERY), 1: held("a", T0 - timedelta(seconds=1))}
    assert plan(shards, ["a"], "a", T0, renew_every=EVERY).renew == (0,)


def test_the_fullest_gives_one_back_to_a_newcomer() -> None:
    shards = {shard: held("a", T0) for shard in range(4)}
    assert plan(shards, ["a", "b"], "a", T0, renew_every=EVERY).give_back is not None
    # the newcomer itself gives nothing and finds nothing free yet
    decided = plan(shards, ["a", "b"], "b", T0, renew_every=EVERY)
    assert decided.give_back is None
    assert decided.take == ()


def test_a_balanced_split_is_left_alone() -> None:
    shards = {0: held("a", T0), 1: held("a", T0), 2: held("b", T0)}
    for me in ("a", "b"):
        assert plan(shards, ["a", "b"], me, T0, renew_every=EVERY).give_back is None


# --- keepers through a fake API server --------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class FakeLeases:
    """Leases with resourceVersions: a replace with a stale one is a conflict, like the API."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.writes = 0

    def _stored(self, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        self.writes += 1
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.objects[stored["metadata"]["name"]] = stored
        return copy.deepcopy(stored)

    async def list_leases(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        key, value = label_selector.split("=")
        return [
            copy.deepcopy(item)
            for item in self.objects.values()
            if item["metadata"].get("labels", {}).get(key) == value
        ]

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        if body["metadata"]["name"] in self.objects:
            raise LeaseConflictError("exists")
        return self._stored(body)

    async def replace_lease(
        self, namespace: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        current = self.objects.get(name)
        if current is None or current["metadata"]["resourceVersion"] != body["metadata"].get(
            "resourceVersion"
        ):
            raise LeaseConflictError("stale")
        return self._stored(body)

    async def delete_lease(self, namespace: str, name: str) -> None:
        self.objects.pop(name, None)


class Partitioned(FakeLeases):
    """A replica cut off from the API server: every call fails."""

    def __init__(self) -> None:
        super().__init__()

    async def list_leases(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        raise ConnectionError("unreachable")


def keeper(api: Any, identity: str, clock: Clock, shards: int = 8) -> ShardKeeper:
    return ShardKeeper(
        api=api, namespace="ops", prefix="fwo", identity=identity, shards=shards, clock=clock
    )


async def rounds(keepers: list[ShardKeeper], clock: Clock, count: int, step: float = 2.0) -> None:
    """Every live keeper runs one round per step, as `run` does every retry_period."""
    for _ in range(count):
        for each in keepers:
            # A partitioned replica's round fails; `run` logs it and goes on.
            with contextlib.suppress(ConnectionError):
                await each.round()
            each._expire()
            assert_no_shard_owned_twice(keepers)
        clock.now += timedelta(seconds=step)
        assert_no_shard_owned_twice(keepers)


def assert_no_shard_owned_twice(keepers: list[ShardKeeper]) -> None:
    owners = Counter(shard for each in keepers for shard in each.owned())
    assert all(count == 1 for count in owners.values()), owners


def owned_counts(keepers: list[ShardKeeper]) -> list[int]:
    return [len(each.owned()) for each in keepers]


async def test_one_replica_owns_every_shard_and_labels_its_leases() -> None:
    api, clock = FakeLeases(), Clock()
    a = keeper(api, "a", clock)
    await rounds([a], clock, 1)
    assert a.owned() == frozenset(range(8))
    labels = [item["metadata"]["labels"][LEASE_SET_LABEL] for item in api.objects.values()]
    assert labels == ["fwo"] * 9  # 8 shards and the member Lease
    assert a.owns("ns", "anything")


async def test_a_newcomer_gets_its_share_without_overlap() -> None:
    api, clock = FakeLeases(), Clock()
    a, b = keeper(api, "a", clock), keeper(api, "b", clock)
    await rounds([a], clock, 2)
    await rounds([a, b], clock, 12)
    assert owned_counts([a, b]) == [4, 4]
    pools = [("ns", f"p{i}") for i in range(200)]
    assert all(a.owns(*pool) != b.owns(*pool) for pool in pools)


async def test_a_killed_replicas_shards_move_within_two_lease_durations() -> None:
    api, clock = FakeLeases(), Clock()
    a, b, c = (keeper(api, name, clock) for name in "abc")
    await rounds([a, b, c], clock, 15)
    assert sorted(owned_counts([a, b, c])) == [2, 3, 3]
    killed_at = clock.now
    # SIGKILL c: it never runs again (its memory is gone with it).
    survivors = [a, b]
    while sum(owned_counts(survivors)) < 8:
        await rounds(survivors, clock, 1, step=1.0)
        assert clock.now - killed_at <= 2 * LEASE
    assert sorted(owned_counts(survivors)) == [4, 4]


async def test_a_partitioned_replica_stops_acting_before_anyone_takes_over() -> None:
    api, clock = FakeLeases(), Clock()
    a, b = keeper(api, "a", clock), keeper(api, "b", clock)
    await rounds([a, b], clock, 12)
    assert owned_counts([a, b]) == [4, 4]
    a.api = Partitioned()  # a keeps running, but reaches nothing
    # rounds() checks after every step that no shard is owned by both
    await rounds([a, b], clock, 20, step=1.0)
    assert owned_counts([a, b]) == [0, 8]


async def test_a_shard_is_given_back_only_when_no_tick_of_it_is_in_flight() -> None:
    api, clock = FakeLeases(), Clock()
    a = keeper(api, "a", clock, shards=2)
    in_flight = {0, 1}
    a.busy = lambda shard: shard in in_flight
    await rounds([a], clock, 1)
    b = keeper(api, "b", clock, shards=2)
    await rounds([a, b], clock, 3)
    assert len(a.owned()) == 1, "the shard being given back is no longer acted on"
    assert len(b.owned()) == 0, "but it is not released while its tick runs"
    in_flight.clear()
    await rounds([a, b], clock, 3)
    assert owned_counts([a, b]) == [1, 1]


async def test_stop_gives_everything_back_at_once() -> None:
    api, clock = FakeLeases(), Clock()
    a, b = keeper(api, "a", clock), keeper(api, "b", clock)
    await rounds([a, b], clock, 12)
    await a.stop()
    assert a.owned() == frozenset()
    assert member_lease_name("fwo", "a") not in api.objects
    await rounds([b], clock, 2)
    assert owned_counts([b]) == [8]


async def test_idle_writes_are_bounded_by_shards_not_pools() -> None:
    api, clock = FakeLeases(), Clock()
    a = keeper(api, "a", clock)
    await rounds([a], clock, 5)
    before = api.writes
    await rounds([a], clock, 30)  # 60 s
    # 8 shards + 1 member Lease, each renewed every 5 s (rounds every 2 s land on 6 s): 10 times
    assert api.writes - before <= 9 * 60 / 5


async def test_changed_wakes_a_waiter_when_ownership_moves() -> None:
    api, clock = FakeLeases(), Clock()
    a = keeper(api, "a", clock)
    waiter = asyncio.ensure_future(a.changed())
    await asyncio.sleep(0)
    assert not waiter.done()
    await a.round()
    await asyncio.sleep(0)
    assert waiter.done()


def test_keeper_refuses_impossible_timings() -> None:
    with pytest.raises(ValueError, match="renew_deadline < lease_duration"):
        ShardKeeper(
            api=FakeLeases(),
            namespace="ops",
            prefix="fwo",
            identity="a",
            shards=4,
            renew_deadline=timedelta(seconds=20),
        )
    with pytest.raises(ValueError, match="at least 1"):
        keeper(FakeLeases(), "a", Clock(), shards=0)


@settings(max_examples=40, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["round", "kill", "join", "cut", "heal"]), st.integers(0, 3)),
        min_size=5,
        max_size=60,
    ),
    shards=st.integers(1, 6),
)
def test_no_shard_is_ever_acted_on_by_two_replicas(
    steps: list[tuple[str, int]], shards: int
) -> None:
    """Random joins, SIGKILLs, partitions and heals: at no instant do two live replicas own one
    shard; and once everything is healed and quiet, every shard has an owner."""

    async def play() -> None:
        api, clock = FakeLeases(), Clock()
        live: dict[str, ShardKeeper] = {"r0": keeper(api, "r0", clock, shards)}
        joined = 1
        for action, which in steps:
            names = sorted(live)
            target = live[names[which % len(names)]] if names else None
            if action == "join":
                name = f"r{joined}"
                joined += 1
                live[name] = keeper(api, name, clock, shards)
            elif action == "kill" and target is not None and len(live) > 1:
                del live[target.identity]
            elif action == "cut" and target is not None:
                target.api = Partitioned()
            elif action == "heal" and target is not None:
                target.api = api
            await rounds(list(live.values()), clock, 1, step=1.0 + which)
        for each in live.values():
            each.api = api
        await rounds(list(live.values()), clock, 40)
        assert sum(owned_counts(list(live.values()))) == shards

    asyncio.run(play())


async def test_a_replica_whose_loop_hangs_stops_acting_at_the_deadline() -> None:
    """A LIST that never answers keeps `run` from expiring anything: `owned` itself looks at the
    clock, so the pools stop being ticked before the Leases can expire for the others."""
    api, clock = FakeLeases(), Clock()
    a = keeper(api, "a", clock)
    await a.round()
    assert len(a.owned()) == 8
    clock.now += timedelta(seconds=9)
    assert len(a.owned()) == 8
    clock.now += timedelta(seconds=1)
    assert a.owned() == frozenset()
