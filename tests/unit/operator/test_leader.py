"""Leader election: the pure Lease decisions (tables and properties), the elector against an
in-memory API server that enforces resourceVersion, `serve.lead`, and the CLI flags."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowable_worker_operator import config as operator_config
from flowable_worker_operator import main as cli
from flowable_worker_operator import metrics, serve
from flowable_worker_operator.leader import (
    LeaderElector,
    LeadershipLostError,
    LeaseConflictError,
    LeaseRecord,
    acquired,
    can_acquire,
    default_identity,
    is_expired,
    lease_body,
    parse_lease,
    released,
    renewed,
)

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
S = timedelta(seconds=1)
LEASE = timedelta(seconds=15)


def record(
    holder: str = "a", renew: datetime | None = T0, duration: timedelta = LEASE
) -> LeaseRecord:
    return LeaseRecord(holder, duration, T0 if renew else None, renew, 3, "7")


# --- pure decisions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lease", "identity", "now", "expired", "may_take"),
    [
        (record("a"), "b", T0, False, False),  # just renewed by a
        (record("a"), "b", T0 + 14 * S, False, False),
        (record("a"), "b", T0 + 15 * S, True, True),  # renewTime + leaseDuration reached
        (record("a"), "b", T0 + 60 * S, True, True),
        (record("a"), "a", T0 + 1 * S, False, True),  # its own: a renewal
        (record(""), "b", T0, False, True),  # released: free at once
        (record("a", renew=None), "b", T0, True, True),  # never renewed
        (record("a", duration=S), "b", T0 + S, True, True),  # a released lease's 1 s
        (record("a"), "b", T0 - 5 * S, False, False),  # our clock behind theirs
    ],
)
def test_expiry_and_who_may_take_the_lease(
    lease: LeaseRecord, identity: str, now: datetime, expired: bool, may_take: bool
) -> None:
    assert is_expired(lease, now) is expired
    assert can_acquire(lease, identity, now) is may_take


times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
durations = st.integers(min_value=1, max_value=3600).map(lambda s: timedelta(seconds=s))
names = st.sampled_from(["", "a", "b", "pod-1_abc123"])
records = st.builds(
    LeaseRecord,
    holder=names,
    lease_duration=durations,
    acquire_time=st.none() | times,
    renew_time=st.none() | times,
    transitions=st.integers(min_value=0, max_value=10_000),
    resource_version=st.none() | st.integers(min_value=1).map(str),
)


@given(records, names.filter(bool), times)
def test_a_live_lease_of_another_holder_is_never_taken(
    lease: LeaseRecord, identity: str, now: datetime
) -> None:
    if lease.holder and lease.holder != identity and lease.renew_time is not None:
        assert can_acquire(lease, identity, now) == (now >= lease.renew_time + lease.lease_duration)


@given(records, names.filter(bool), times, durations)
def test_taking_over_counts_a_transition_and_renewing_does_not(
    lease: LeaseRecord, identity: str, now: datetime, duration: timedelta
) -> None:
    after = acquired(lease, identity, now, duration)
    assert (after.holder, after.renew_time, after.lease_duration) == (identity, now, duration)
    if lease.holder == identity:
        assert after.transitions == lease.transitions
        assert after.acquire_time == lease.acquire_time
    else:
        assert after.transitions == lease.transitions + 1
        assert after.acquire_time == now
    assert after.resource_version == lease.resource_version  # the replace is conditional
    assert not is_expired(after, now)
    assert can_acquire(after, identity, now)


@given(records, times, names.filter(bool))
def test_a_released_lease_is_free_for_anyone_at_once(
    lease: LeaseRecord, now: datetime, identity: str
) -> None:
    free = released(lease, now)
    assert free.holder == ""
    assert free.lease_duration == S
    assert free.transitions == lease.transitions
    assert can_acquire(free, identity, now)


def test_a_new_lease_starts_with_no_transitions() -> None:
    new = acquired(None, "a", T0, LEASE)
    assert new == LeaseRecord("a", LEASE, T0, T0, 0)
    assert renewed(new, T0 + S, LEASE) == LeaseRecord("a", LEASE, T0, T0 + S, 0)


@given(records.filter(lambda r: r.lease_duration >= S))
def test_the_lease_body_round_trips(lease: LeaseRecord) -> None:
    body = lease_body("l", "ns", lease)
    assert body["apiVersion"] == "coordination.k8s.io/v1"
    assert parse_lease(body) == lease


def test_times_are_micro_times_with_six_digits_even_on_a_whole_second() -> None:
    spec = lease_body("l", "ns", acquired(None, "a", T0, LEASE))["spec"]
    assert spec == {
        "holderIdentity": "a",
        "leaseDurationSeconds": 15,
        "leaseTransitions": 0,
        "acquireTime": "2025-01-01T12:00:00.000000Z",
        "renewTime": "2025-01-01T12:00:00.000000Z",
    }


def test_an_empty_or_odd_lease_reads_as_free() -> None:
    lease = parse_lease({"metadata": {"resourceVersion": "1"}, "spec": {"renewTime": "garbage"}})
    assert lease == LeaseRecord("", timedelta(0), None, None, 0, "1")
    assert can_acquire(lease, "a", T0)


def test_identities_are_the_hostname_and_a_random_suffix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTNAME", "operator-7d9f-x2")
    first, second = default_identity(), default_identity()
    assert first.startswith("operator-7d9f-x2_")
    assert first != second


# --- the elector against an in-memory API server --------------------------------------------------


class FakeLeases:
    """Leases as the API server keeps them: a replace must carry the current resourceVersion."""

    def __init__(self) -> None:
        self.leases: dict[tuple[str, str], dict[str, Any]] = {}
        self.version = 0
        self.failing = False
        self.hanging = False
        self.writes = 0

    async def _call(self) -> None:
        await asyncio.sleep(0)  # let concurrent callers interleave, as real requests do
        if self.hanging:
            await asyncio.Event().wait()
        if self.failing:
            raise OSError("connection refused")

    def _stored(self, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        self.writes += 1
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.leases[(stored["metadata"]["namespace"], stored["metadata"]["name"])] = stored
        return copy.deepcopy(stored)

    async def read_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        await self._call()
        found = self.leases.get((namespace, name))
        return copy.deepcopy(found) if found else None

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        await self._call()
        if (namespace, body["metadata"]["name"]) in self.leases:
            raise LeaseConflictError("AlreadyExists")
        return self._stored(body)

    async def replace_lease(
        self, namespace: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        await self._call()
        current = self.leases[(namespace, name)]
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise LeaseConflictError("Conflict")
        return self._stored(body)

    def holder(self) -> str:
        return parse_lease(self.leases[("ops", "op")]).holder

    def spec(self) -> dict[str, Any]:
        return dict(self.leases[("ops", "op")]["spec"])


# leaseDurationSeconds is a whole number: the shortest lease is 1 s.
FAST = {
    "lease_duration": timedelta(seconds=1),
    "renew_deadline": timedelta(seconds=0.5),
    "retry_period": timedelta(seconds=0.05),
}


def elector(api: FakeLeases, identity: str) -> LeaderElector:
    return LeaderElector(api, namespace="ops", name="op", identity=identity, **FAST)


@contextlib.contextmanager
def stopping(*electors: LeaderElector) -> Iterator[None]:
    try:
        yield
    finally:
        for each in electors:
            if each._renewer is not None:
                each._renewer.cancel()


def crash(leader: LeaderElector) -> None:
    """Stop renewing without a word, as a SIGKILLed process would."""
    assert leader._renewer is not None
    leader._renewer.cancel()


def test_durations_must_leave_room_to_stop_before_others_take_over() -> None:
    with pytest.raises(ValueError, match="renew_deadline < lease_duration"):
        LeaderElector(
            FakeLeases(),
            namespace="ops",
            name="op",
            identity="a",
            lease_duration=timedelta(seconds=10),
            renew_deadline=timedelta(seconds=10),
        )


async def test_the_first_elector_creates_the_lease_and_renews_it() -> None:
    api = FakeLeases()
    a = elector(api, "a")
    with stopping(a):
        await asyncio.wait_for(a.acquire(), 1)
        assert a.is_leader
        spec = api.spec()
        assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("a", 0)
        first_renewal = spec["renewTime"]
        await asyncio.sleep(0.2)
        assert api.spec()["renewTime"] > first_renewal
        assert api.spec()["acquireTime"] == spec["acquireTime"]
        assert not a.lost.is_set()


async def test_a_standby_waits_while_the_leader_renews_and_takes_over_after_expiry() -> None:
    api = FakeLeases()
    a, b = elector(api, "a"), elector(api, "b")
    with stopping(a, b):
        await a.acquire()
        waiting = asyncio.ensure_future(b.acquire())
        await asyncio.sleep(1.5)  # longer than the lease: renewals keep it alive
        assert not waiting.done()
        assert api.holder() == "a"
        crash(a)
        loop = asyncio.get_running_loop()
        crashed_at = loop.time()
        await asyncio.wait_for(waiting, 2)
        assert 0.9 <= loop.time() - crashed_at <= 1 + 0.3
        assert b.is_leader
        assert (api.holder(), api.spec()["leaseTransitions"]) == ("b", 1)


async def test_of_two_standbys_racing_for_an_expired_lease_exactly_one_wins() -> None:
    api = FakeLeases()
    a = elector(api, "a")
    await a.acquire()
    crash(a)
    await asyncio.sleep(1.1)
    contenders = [elector(api, name) for name in ("b", "c")]
    wins = await asyncio.gather(*(c._try_write(renewal=False) for c in contenders))
    assert sorted(wins) == [False, True]
    winner = contenders[wins.index(True)]
    assert api.holder() == winner.identity
    assert api.spec()["leaseTransitions"] == 1


async def test_renewals_failing_past_the_deadline_signal_loss_before_the_lease_expires() -> None:
    api = FakeLeases()
    a = elector(api, "a")
    await a.acquire()
    loop = asyncio.get_running_loop()
    api.failing = True
    failing_since = loop.time()
    await asyncio.wait_for(a.lost.wait(), 2)
    lost_after = loop.time() - failing_since
    assert 0.5 - 0.06 <= lost_after < 1  # renew_deadline after the last renewal
    assert not a.is_leader
    api.failing = False
    writes = api.writes
    await a.release()  # no longer the leader: leaves the Lease alone
    assert api.writes == writes
    assert api.holder() == "a"


async def test_a_hung_api_call_does_not_outlive_the_renew_deadline() -> None:
    api = FakeLeases()
    a = elector(api, "a")
    await a.acquire()
    api.hanging = True
    await asyncio.wait_for(a.lost.wait(), 1)


async def test_a_lease_taken_by_someone_else_is_lost_at_the_next_renewal() -> None:
    api = FakeLeases()
    a = elector(api, "a")
    await a.acquire()
    lease = api.leases[("ops", "op")]
    api._stored({**lease, "spec": {**lease["spec"], "holderIdentity": "intruder"}})
    await asyncio.wait_for(a.lost.wait(), 0.2)
    assert api.holder() == "intruder"


async def test_a_clean_release_frees_the_lease_for_a_standby_at_once() -> None:
    api = FakeLeases()
    a, b = elector(api, "a"), elector(api, "b")
    with stopping(b):
        await a.acquire()
        waiting = asyncio.ensure_future(b.acquire())
        await asyncio.sleep(0.1)
        await a.release()
        spec = api.spec()
        assert (spec["holderIdentity"], spec["leaseDurationSeconds"]) == ("", 1)
        await asyncio.wait_for(waiting, 0.2)  # a retry period, not a lease duration
        assert api.holder() == "b"
        assert not a.lost.is_set()


# --- serve.lead: kopf only while leading ----------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_signal_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serve, "_on_signals", lambda callback: None)


async def test_kopf_runs_only_once_leading_and_a_stopped_leader_releases() -> None:
    api = FakeLeases()
    a, b = elector(api, "a"), elector(api, "b")
    await a.acquire()
    ran = asyncio.Event()

    async def run(stop: asyncio.Event) -> None:
        assert metrics.LEADER._value.get() == 1
        ran.set()

    leading = asyncio.ensure_future(serve.lead(b, run))
    await asyncio.sleep(0.2)
    assert not ran.is_set()  # a standby: kopf has not started
    await a.release()
    await asyncio.wait_for(leading, 1)
    assert ran.is_set()
    assert api.spec()["holderIdentity"] == ""  # b released it on the way out


async def test_a_lost_lease_stops_kopf_and_raises() -> None:
    api = FakeLeases()
    b = elector(api, "b")
    stopped: list[bool] = []

    async def run(stop: asyncio.Event) -> None:
        await stop.wait()
        stopped.append(True)

    leading = asyncio.ensure_future(serve.lead(b, run))
    await asyncio.sleep(0.1)
    api.failing = True
    with pytest.raises(LeadershipLostError, match="lost the leader-election Lease ops/op"):
        await asyncio.wait_for(leading, 2)
    assert stopped == [True]
    assert metrics.LEADER._value.get() == 0


async def test_kopf_that_ignores_its_stop_flag_is_cancelled_in_time() -> None:
    api = FakeLeases()
    b = elector(api, "b")

    async def run(stop: asyncio.Event) -> None:
        await asyncio.Event().wait()

    leading = asyncio.ensure_future(serve.lead(b, run))
    await asyncio.sleep(0.1)
    api.failing = True
    with pytest.raises(LeadershipLostError):
        await asyncio.wait_for(leading, 2)


# --- the CLI ------------------------------------------------------------------------------------


def test_leader_election_is_off_by_default() -> None:
    assert cli.parse_args([]).leader_election is None


def test_flags_and_environment_turn_it_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTNAME", "op-0")
    config = cli.parse_args(
        ["--leader-election", "--leader-election-namespace", "ops", "--leader-election-name", "x"]
    ).leader_election
    assert config is not None
    assert (config.namespace, config.name) == ("ops", "x")
    assert config.identity.startswith("op-0_")

    monkeypatch.setenv("FLOWABLE_OPERATOR_LEADER_ELECTION", "true")
    monkeypatch.setenv("FLOWABLE_OPERATOR_LEADER_ELECTION_NAMESPACE", "ops")
    from_env = cli.parse_args([]).leader_election
    assert from_env is not None
    assert (from_env.namespace, from_env.name) == ("ops", "flowable-worker-operator")
    assert cli.parse_args(["--no-leader-election"]).leader_election is None


def test_the_lease_namespace_defaults_to_the_pods(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    account = tmp_path / "namespace"
    account.write_text("flowable-worker-operator\n")
    monkeypatch.setattr(operator_config, "SERVICE_ACCOUNT_NAMESPACE", account)
    config = cli.parse_args(["--leader-election"]).leader_election
    assert config is not None
    assert config.namespace == "flowable-worker-operator"


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--leader-election"], {}, "--leader-election needs --leader-election-namespace"),
        (
            ["--leader-election", "--leader-election-namespace", "Not_A_NS"],
            {},
            "is not a namespace name",
        ),
        (
            ["--leader-election", "--leader-election-namespace", "ops"],
            {"FLOWABLE_OPERATOR_LEADER_ELECTION_NAME": "Bad Name"},
            "is not a valid Lease name",
        ),
        ([], {"FLOWABLE_OPERATOR_LEADER_ELECTION": "maybe"}, "not a boolean: 'maybe'"),
    ],
)
def test_bad_leader_election_settings_exit_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    env: dict[str, str],
    message: str,
) -> None:
    monkeypatch.setattr(operator_config, "SERVICE_ACCOUNT_NAMESPACE", tmp_path / "absent")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_:
        cli.parse_args(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert message in err
