"""Sharding: several operator replicas share the pools, each pool ticked by one replica at a time.

Leader election (`leader`) makes replicas standbys: capacity stays that of one process. With
`--shards K`, the pools are split into K shards by a stable hash of `namespace/name`, and each
shard is a `coordination.k8s.io/v1` Lease that one replica at a time holds. A replica ticks only
the pools of shards it holds, so capacity grows with replicas and no pool is scaled by two.

How replicas find each other and share fairly:
- Each replica keeps a *member* Lease of its own (`<prefix>-member-<hash of identity>`), renewed
  like the shards. The live members (unexpired member Leases) are who shares.
- With M members, each aims at between floor(K/M) and ceil(K/M) shards: it takes free or expired
  shards while it holds fewer than ceil(K/M); a member holding more than floor(K/M) while another
  holds fewer gives one shard back per round (the fullest first, ties by identity, so that not
  every replica gives at once). A new replica thus gets its share within a few rounds; a dead one's
  shards expire and are taken by the others.
- All shard and member Leases carry the label `flowable-worker.io/lease-set=<prefix>`: one LIST a
  round reads them all, instead of a GET per shard.

Why no pool is scaled by two replicas at once: a shard is taken only when it is free or expired
(`renewTime + leaseDurationSeconds` passed), writes are optimistic (a replace carries the
`resourceVersion` read, so of two takers the API server lets one win), and a holder stops acting
on a shard once no renewal has succeeded for `renew_deadline` (< `lease_duration`), before anyone
may take it. A shard given back is first marked not owned (no new tick starts on its pools), and
released only once no tick of it is in flight (`ShardKeeper.busy`).

Writes: each round renews the held shards whose last renewal is older than `renew_every`, and the
member Lease likewise: with the defaults (15 s leases, renewed every 5 s) K shards cost K/5 + 0.2
writes a second across all replicas, whatever the number of pools.

`plan` is a pure function of what the LIST showed and a time; `ShardKeeper` does the I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from flowable_worker_operator.leader import (
    KubernetesLeases,
    LeaseConflictError,
    LeaseRecord,
    acquired,
    can_acquire,
    is_expired,
    lease_body,
    parse_lease,
    released,
)

__all__ = [
    "LEASE_SET_LABEL",
    "Plan",
    "ShardKeeper",
    "ShardLeaseApi",
    "member_lease_name",
    "plan",
    "shard_lease_name",
    "shard_of",
]

log = logging.getLogger(__name__)

LEASE_SET_LABEL = "flowable-worker.io/lease-set"
"""On every shard and member Lease: the prefix they share (one LIST with this selector)."""

Clock = Callable[[], datetime]


def shard_of(namespace: str, name: str, shards: int) -> int:
    """The pool's shard: CRC-32 of `namespace/name`, so every replica (and every release of the
    operator) agrees without talking, and pools spread evenly."""
    return zlib.crc32(f"{namespace}/{name}".encode()) % shards


def shard_lease_name(prefix: str, shard: int) -> str:
    return f"{prefix}-shard-{shard}"


def member_lease_name(prefix: str, identity: str) -> str:
    """A Lease name from any identity (pod names with a random suffix): short and valid."""
    return f"{prefix}-member-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"


# --- the pure decision ------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """One round's writes: shards to take, to renew, and one to give back (or none)."""

    take: tuple[int, ...] = ()
    renew: tuple[int, ...] = ()
    give_back: int | None = None


def plan(
    shards: Mapping[int, LeaseRecord | None],
    members: Iterable[str],
    identity: str,
    now: datetime,
    *,
    renew_every: timedelta,
) -> Plan:
    """What `identity` should write this round, given every shard's Lease (None: not created yet)
    and the live members (this replica counts even when absent from `members`).

    Pure: the same inputs give the same plan, so each rule is tested on its own."""
    live = sorted(set(members) | {identity})
    count = len(shards)
    floor_share, ceil_share = count // len(live), math.ceil(count / len(live))
    held: dict[str, list[int]] = {member: [] for member in live}
    free: list[int] = []
    for shard, record in sorted(shards.items()):
        if record is None or not record.holder or is_expired(record, now):
            if record is not None and record.holder == identity:
                held[identity].append(shard)  # ours, late: renew it if nobody took it
            else:
                free.append(shard)
        elif record.holder in held:
            held[record.holder].append(shard)
        # held by a replica whose member Lease expired: its shard Lease expires soon, then free
    mine = held[identity]
    renew = tuple(shard for shard in mine if _due(shards[shard], now, renew_every))
    want = max(0, ceil_share - len(mine))
    # Start the search at an offset of our own so that replicas do not all race for shard 0.
    offset = zlib.crc32(identity.encode()) % count if count else 0
    ordered = sorted(free, key=lambda shard: (shard - offset) % count)
    take = tuple(
        shard
        for shard in ordered[:want]
        if (record := shards[shard]) is None or can_acquire(record, identity, now)
    )
    give_back: int | None = None
    short = any(len(held[member]) < floor_share for member in live if member != identity)
    if not free and short and len(mine) > floor_share:
        fullest = max(live, key=lambda member: (len(held[member]), member))
        if fullest == identity:
            give_back = mine[-1]
    return Plan(take=take, renew=renew, give_back=give_back)


def _due(record: LeaseRecord | None, now: datetime, renew_every: timedelta) -> bool:
    return record is None or record.renew_time is None or now - record.renew_time >= renew_every


# --- the API ----------------------------------------------------------------------------------


class ShardLeaseApi(Protocol):
    """What the keeper needs of the API server: Leases as plain JSON objects."""

    async def list_leases(self, namespace: str, label_selector: str) -> list[dict[str, Any]]: ...

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create it; `LeaseConflictError` if it exists."""
        ...

    async def replace_lease(
        self, namespace: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Replace it; `LeaseConflictError` if its resourceVersion moved on."""
        ...

    async def delete_lease(self, namespace: str, name: str) -> None: ...


class KubernetesShardLeases(KubernetesLeases):
    """`ShardLeaseApi` through the official client, raw JSON: leader election's Lease calls, plus
    the LIST of a set and the delete of a replica's own member Lease."""

    async def list_leases(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        response = await asyncio.to_thread(
            self._api.list_namespaced_lease,
            namespace,
            label_selector=label_selector,
            _preload_content=False,
            _request_timeout=self._timeout,
        )
        items = json.loads(getattr(response, "data", b"{}")).get("items") or []
        return [item for item in items if isinstance(item, dict)]

    async def delete_lease(self, namespace: str, name: str) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            await asyncio.to_thread(
                self._api.delete_namespaced_lease, name, namespace, _request_timeout=self._timeout
            )
        except ApiException as error:
            if error.status != 404:
                raise


# --- the keeper -------------------------------------------------------------------------------


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Held:
    record: LeaseRecord
    renewed_at: datetime
    """The renewTime of the last successful write: acting stops `renew_deadline` later."""


@dataclass
class ShardKeeper:
    """Holds this replica's share of the K shard Leases; `owns(namespace, name)` says whether to
    tick a pool. `run()` is the loop (a task for the operator's lifetime); `stop()` gives every
    shard back so the others take them at once instead of waiting out the Leases."""

    api: ShardLeaseApi
    namespace: str
    prefix: str
    identity: str
    shards: int
    lease_duration: timedelta = timedelta(seconds=15)
    renew_deadline: timedelta = timedelta(seconds=10)
    renew_every: timedelta = timedelta(seconds=5)
    retry_period: timedelta = timedelta(seconds=2)
    clock: Clock = _utcnow
    busy: Callable[[int], bool] = lambda _shard: False
    """Whether a tick of a pool of this shard is in flight (a shard is given back only when not)."""
    on_change: Callable[[frozenset[int]], object] = lambda _owned: None
    """Told the owned shards after each change (the operator's gauge)."""
    _held: dict[int, _Held] = field(default_factory=dict)
    _member: LeaseRecord | None = None
    _giving_back: set[int] = field(default_factory=set)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        if self.shards < 1:
            raise ValueError("shards must be at least 1")
        if not self.renew_every < self.renew_deadline < self.lease_duration:
            raise ValueError("need renew_every < renew_deadline < lease_duration")

    # --- what the pools ask ---

    def owned(self) -> frozenset[int]:
        """Shards this replica may act on now: held, renewed within `renew_deadline`, and not
        being given back."""
        now = self.clock()
        return frozenset(
            shard
            for shard, held in self._held.items()
            if now - held.renewed_at < self.renew_deadline and shard not in self._giving_back
        )

    def owns(self, namespace: str, name: str) -> bool:
        return shard_of(namespace, name, self.shards) in self.owned()

    async def changed(self) -> None:
        """Return at the next change of ownership (a pool that is not ours waits on this)."""
        await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
        self.on_change(self.owned())

    # --- the loop ---

    @property
    def _selector(self) -> str:
        return f"{LEASE_SET_LABEL}={self.prefix}"

    async def run(self) -> None:
        """Rounds every `retry_period` until cancelled; a failed round is logged and retried."""
        while True:
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("shards: round failed: %s", error)
            self._expire()
            await asyncio.sleep(self.retry_period.total_seconds())

    async def round(self) -> None:
        """One LIST, then the plan's writes (each optimistic)."""
        items = await self.api.list_leases(self.namespace, self._selector)
        now = self.clock()
        by_name = {str((item.get("metadata") or {}).get("name")): item for item in items}
        records: dict[int, LeaseRecord | None] = {}
        for shard in range(self.shards):
            item = by_name.get(shard_lease_name(self.prefix, shard))
            records[shard] = None if item is None else parse_lease(item)
        member_prefix = f"{self.prefix}-member-"
        members = [
            record.holder
            for name, item in by_name.items()
            if name.startswith(member_prefix)
            and (record := parse_lease(item)).holder
            and not is_expired(record, now)
        ]
        await self._keep_member(by_name.get(member_lease_name(self.prefix, self.identity)), now)
        # A shard now held by someone else (taken after our Lease expired) is not ours.
        for shard, found in records.items():
            if shard in self._held and (found is None or found.holder != self.identity):
                self._drop(shard, "held by " + (found.holder if found else "nobody"))
        decided = plan(records, members, self.identity, now, renew_every=self.renew_every)
        for shard in decided.take:
            await self._write(shard, records[shard], now, taking=True)
        for shard in decided.renew:
            await self._write(shard, records[shard], now, taking=False)
        if decided.give_back is not None:
            await self._give_back(decided.give_back, records[decided.give_back], now)

    def _expire(self) -> None:
        """Renewals failing past the deadline: stop acting on those shards (not an exit, unlike
        leader election: the other shards are unaffected)."""
        now = self.clock()
        for shard, held in list(self._held.items()):
            if now - held.renewed_at >= self.renew_deadline:
                self._drop(shard, f"no renewal for {self.renew_deadline.total_seconds():g}s")

    def _drop(self, shard: int, why: str) -> None:
        del self._held[shard]
        self._giving_back.discard(shard)
        log.warning("shards: %s lost shard %d: %s", self.identity, shard, why)
        self._notify()

    async def _write(
        self, shard: int, record: LeaseRecord | None, now: datetime, *, taking: bool
    ) -> None:
        name = shard_lease_name(self.prefix, shard)
        new = acquired(record, self.identity, now, self.lease_duration)
        body = _labelled(lease_body(name, self.namespace, new), self.prefix)
        try:
            if record is None:
                written = await self.api.create_lease(self.namespace, body)
            else:
                written = await self.api.replace_lease(self.namespace, name, body)
        except LeaseConflictError:
            log.debug("shards: someone else wrote shard %d first", shard)
            if not taking:
                self._drop(shard, "someone else wrote its Lease")
            return
        first = shard not in self._held
        # Acting stops `renew_deadline` after the renewTime written, not after the answer came:
        # others count the Lease's expiry from that renewTime too.
        self._held[shard] = _Held(parse_lease(written), now)
        if first:
            log.info("shards: %s took shard %d of %d", self.identity, shard, self.shards)
            self._notify()

    async def _give_back(self, shard: int, record: LeaseRecord | None, now: datetime) -> None:
        if shard not in self._giving_back:
            self._giving_back.add(shard)  # no new tick starts on its pools from now on
            self._notify()
        if self.busy(shard) or record is None:
            return  # next round, once its ticks are done
        body = _labelled(
            lease_body(shard_lease_name(self.prefix, shard), self.namespace, released(record, now)),
            self.prefix,
        )
        with contextlib.suppress(LeaseConflictError):
            await self.api.replace_lease(self.namespace, shard_lease_name(self.prefix, shard), body)
        self._held.pop(shard, None)
        self._giving_back.discard(shard)
        log.info("shards: %s gave shard %d back", self.identity, shard)

    async def _keep_member(self, item: dict[str, Any] | None, now: datetime) -> None:
        name = member_lease_name(self.prefix, self.identity)
        record = None if item is None else parse_lease(item)
        mine = record is not None and record.holder == self.identity
        if mine and not _due(record, now, self.renew_every):
            return
        new = acquired(record, self.identity, now, self.lease_duration)
        body = _labelled(lease_body(name, self.namespace, new), self.prefix)
        with contextlib.suppress(LeaseConflictError):
            if record is None:
                self._member = parse_lease(await self.api.create_lease(self.namespace, body))
            else:
                self._member = parse_lease(await self.api.replace_lease(self.namespace, name, body))

    async def stop(self) -> None:
        """A clean shutdown: stop acting, give every shard back, delete the member Lease."""
        held = dict(self._held)
        self._held.clear()
        self._notify()
        now = self.clock()
        for shard, entry in held.items():
            name = shard_lease_name(self.prefix, shard)
            body = _labelled(
                lease_body(name, self.namespace, released(entry.record, now)), self.prefix
            )
            try:
                await self.api.replace_lease(self.namespace, name, body)
            except Exception as error:  # it expires on its own within lease_duration
                log.warning("shards: could not give shard %d back: %s", shard, error)
        with contextlib.suppress(Exception):
            await self.api.delete_lease(
                self.namespace, member_lease_name(self.prefix, self.identity)
            )


def _labelled(body: dict[str, Any], prefix: str) -> dict[str, Any]:
    body["metadata"].setdefault("labels", {})[LEASE_SET_LABEL] = prefix
    return body
