"""Leader election on a `coordination.k8s.io/v1` Lease, the way Kubernetes' own controllers do it.

Several operator replicas may run; only the one holding the Lease acts. The Lease's fields are
those of client-go's `leaderelection` package: `holderIdentity`, `leaseDurationSeconds`,
`acquireTime`, `renewTime`, `leaseTransitions`.

- **Acquire**: read the Lease; create it if missing; take it when it is free (no holder, as after a
  release) or expired (`renewTime + leaseDurationSeconds` has passed). Writes are optimistic: a
  replace carries the `resourceVersion` that was read, so of two standbys taking an expired Lease
  at once the API server lets one win and answers the other 409 Conflict; the loser tries again
  every `retry_period`.
- **Renew**: the leader rewrites `renewTime` every `retry_period`. When no renewal succeeded for
  `renew_deadline`, or the Lease names someone else, leadership is lost: `lost` is set, and the
  operator stops acting and exits ("leader or exit": it comes back as a standby). As
  `renew_deadline < lease_duration`, a leader that cannot renew stops before anyone may take over.
- **Release** on a clean shutdown: `holderIdentity` empty and `leaseDurationSeconds` 1, so a
  standby takes over at its next try instead of waiting out the lease.

Expiry compares the holder's `renewTime` with this process's clock (client-go instead times how
long it has seen the same record): the replicas' clocks must agree to within
`lease_duration - renew_deadline` (5 s by default), which NTP-synchronised nodes do.
`leaseDurationSeconds` is a whole number of seconds, 1 at least.

The decisions (`is_expired`, `can_acquire`, `acquired`, `renewed`, `released`) are pure functions
of a `LeaseRecord` and a time; `LeaderElector` does the I/O. The official client is synchronous:
its calls run in a worker thread (`asyncio.to_thread`), as in `kube.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from flowable_worker_operator.status import parse_time

__all__ = [
    "KubernetesLeases",
    "LeaderElector",
    "LeadershipLostError",
    "LeaseApi",
    "LeaseConflictError",
    "LeaseRecord",
    "acquired",
    "can_acquire",
    "default_identity",
    "is_expired",
    "lease_body",
    "parse_lease",
    "released",
    "renewed",
]

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

RELEASED_DURATION = timedelta(seconds=1)
"""What a released Lease says (client-go's value): any standby may take it at once."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def default_identity() -> str:
    """The pod's name ($HOSTNAME in a pod) and a short random suffix: unique per process, and
    still telling which pod holds the Lease."""
    host = os.environ.get("HOSTNAME") or socket.gethostname() or "operator"
    return f"{host}_{secrets.token_hex(3)}"


# --- the Lease's fields, and the pure decisions ------------------------------------------------


@dataclass(frozen=True)
class LeaseRecord:
    """The leader-election fields of a Lease's spec, plus the version a replace must carry."""

    holder: str
    """`holderIdentity`; empty when nobody holds it (never taken, or released)."""
    lease_duration: timedelta
    acquire_time: datetime | None
    renew_time: datetime | None
    transitions: int
    resource_version: str | None = None


def _format_time(moment: datetime) -> str:
    """A MicroTime as the API server wants it: RFC 3339, always six fractional digits, UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_lease(lease: Mapping[str, Any]) -> LeaseRecord:
    """A Lease object (as JSON) to its record; missing or unreadable fields read as absent."""
    spec = lease.get("spec") or {}
    meta = lease.get("metadata") or {}
    duration = spec.get("leaseDurationSeconds")
    transitions = spec.get("leaseTransitions")
    return LeaseRecord(
        holder=str(spec.get("holderIdentity") or ""),
        lease_duration=timedelta(seconds=duration if isinstance(duration, int) else 0),
        acquire_time=parse_time(spec.get("acquireTime")),
        renew_time=parse_time(spec.get("renewTime")),
        transitions=transitions if isinstance(transitions, int) else 0,
        resource_version=meta.get("resourceVersion"),
    )


def lease_body(name: str, namespace: str, record: LeaseRecord) -> dict[str, Any]:
    """The Lease object to create or replace (with `resourceVersion` when the record has one)."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if record.resource_version is not None:
        metadata["resourceVersion"] = record.resource_version
    spec: dict[str, Any] = {
        "holderIdentity": record.holder,
        "leaseDurationSeconds": max(1, round(record.lease_duration.total_seconds())),
        "leaseTransitions": record.transitions,
    }
    if record.acquire_time is not None:
        spec["acquireTime"] = _format_time(record.acquire_time)
    if record.renew_time is not None:
        spec["renewTime"] = _format_time(record.renew_time)
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": spec,
    }


def is_expired(record: LeaseRecord, now: datetime) -> bool:
    """No renewal within `leaseDurationSeconds`: the holder is presumed gone. A Lease without a
    `renewTime` has never been held, and so is expired."""
    if record.renew_time is None:
        return True
    return now >= record.renew_time + record.lease_duration


def can_acquire(record: LeaseRecord, identity: str, now: datetime) -> bool:
    """May `identity` write itself into this Lease now? Its own, a free one, or an expired one."""
    return record.holder == identity or not record.holder or is_expired(record, now)


def acquired(
    record: LeaseRecord | None, identity: str, now: datetime, duration: timedelta
) -> LeaseRecord:
    """The record after `identity` takes (or creates, when `record` is None) the Lease.

    Taking it from someone else (or from nobody, after a release) is a transition; writing it
    while already holding it is a renewal (`renewed`)."""
    if record is None:
        return LeaseRecord(identity, duration, now, now, 0)
    if record.holder == identity:
        return renewed(record, now, duration)
    return replace(
        record,
        holder=identity,
        lease_duration=duration,
        acquire_time=now,
        renew_time=now,
        transitions=record.transitions + 1,
    )


def renewed(record: LeaseRecord, now: datetime, duration: timedelta) -> LeaseRecord:
    """The holder's renewal: only `renewTime` (and the duration it promises) move."""
    return replace(record, lease_duration=duration, renew_time=now)


def released(record: LeaseRecord, now: datetime) -> LeaseRecord:
    """A clean shutdown: no holder, a 1 s lease, so the next standby to look takes it."""
    return replace(
        record,
        holder="",
        lease_duration=RELEASED_DURATION,
        acquire_time=now,
        renew_time=now,
    )


# --- the API ----------------------------------------------------------------------------------


class LeadershipLostError(RuntimeError):
    """The Lease was lost while acting: the operator stopped, and exits non-zero."""


class LeaseConflictError(Exception):
    """409: someone else wrote the Lease first (a create that found it, a stale resourceVersion)."""


@runtime_checkable
class LeaseApi(Protocol):
    """What the elector needs of the API server: Leases as plain JSON objects."""

    async def read_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Lease, or None if there is none."""
        ...

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create it; `LeaseConflictError` if it exists."""
        ...

    async def replace_lease(
        self, namespace: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Replace it; `LeaseConflictError` if its resourceVersion moved on."""
        ...


class KubernetesLeases:
    """`LeaseApi` through the official client. Raw JSON in and out (`_preload_content=False`):
    the client's models would print a MicroTime without its fraction when it is 0, which the API
    server refuses."""

    def __init__(self, api_client: Any, *, request_timeout: float = 5.0) -> None:
        from kubernetes import client as k8s

        self._api = k8s.CoordinationV1Api(api_client)
        self._timeout = request_timeout

    async def read_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(self._read, namespace, name)

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return await asyncio.to_thread(
            self._write, self._api.create_namespaced_lease, namespace, body
        )

    async def replace_lease(
        self, namespace: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        return await asyncio.to_thread(
            self._write, self._api.replace_namespaced_lease, name, namespace, body
        )

    def _read(self, namespace: str, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            response = self._api.read_namespaced_lease(
                name, namespace, _preload_content=False, _request_timeout=self._timeout
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return _json(response)

    def _write(self, call: Callable[..., Any], *args: Any) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        try:
            response = call(*args, _preload_content=False, _request_timeout=self._timeout)
        except ApiException as error:
            if error.status == 409:
                raise LeaseConflictError(str(error.reason)) from None
            raise
        return _json(response)


def _json(response: Any) -> dict[str, Any]:
    loaded = json.loads(response.data)
    if not isinstance(loaded, dict):
        raise ValueError("the API server answered a Lease request with no object")
    return loaded


# --- the elector ------------------------------------------------------------------------------


class LeaderElector:
    """Hold one Lease: `await acquire()`, then watch `lost`; `await release()` on the way out.

    `api_client` is a Kubernetes `ApiClient`, or any `LeaseApi` (tests pass a fake)."""

    def __init__(
        self,
        api_client: Any,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: timedelta = timedelta(seconds=15),
        renew_deadline: timedelta = timedelta(seconds=10),
        retry_period: timedelta = timedelta(seconds=2),
        clock: Clock = _utcnow,
    ) -> None:
        if not retry_period < renew_deadline < lease_duration:
            raise ValueError("need retry_period < renew_deadline < lease_duration")
        if isinstance(api_client, LeaseApi):
            self._api: LeaseApi = api_client
        else:
            timeout = max(1.0, min(5.0, renew_deadline.total_seconds() / 2))
            self._api = KubernetesLeases(api_client, request_timeout=timeout)
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._clock = clock
        self.lost = asyncio.Event()
        """Set when leadership is lost: stop acting, and exit."""
        self._leading = False
        self._observed: LeaseRecord | None = None
        self._renewer: asyncio.Task[None] | None = None

    @property
    def is_leader(self) -> bool:
        return self._leading and not self.lost.is_set()

    async def acquire(self) -> None:
        """Return once this process holds the Lease; then keep renewing it in the background."""
        log.info(
            "leader election: waiting for Lease %s/%s as %s",
            self.namespace,
            self.name,
            self.identity,
        )
        while True:
            if await self._try_write(renewal=False):
                break
            await asyncio.sleep(self.retry_period.total_seconds())
        self._leading = True
        record = self._observed
        log.info(
            "leader election: %s holds Lease %s/%s (transitions: %d)",
            self.identity,
            self.namespace,
            self.name,
            record.transitions if record else 0,
        )
        self._renewer = asyncio.create_task(self._renew_loop(), name="lease renewal")

    async def release(self) -> None:
        """Stop renewing; if still the holder, give the Lease up so a standby takes it at once."""
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None
        if not self.is_leader:
            return
        self._leading = False
        try:
            current = await self._api.read_lease(self.namespace, self.name)
            if current is None:
                return
            record = parse_lease(current)
            if record.holder != self.identity:
                return
            body = lease_body(self.name, self.namespace, released(record, self._clock()))
            self._observed = parse_lease(
                await self._api.replace_lease(self.namespace, self.name, body)
            )
            log.info("leader election: %s released Lease %s/%s", self.identity, *self._where())
        except Exception as error:  # it expires on its own within lease_duration
            log.warning("leader election: could not release the Lease: %s", error)

    def _where(self) -> tuple[str, str]:
        return self.namespace, self.name

    async def _renew_loop(self) -> None:
        last_renewal = self._clock()
        while True:
            await asyncio.sleep(self.retry_period.total_seconds())
            left = self.renew_deadline - (self._clock() - last_renewal)
            try:
                # A hung API call must not outlive the deadline: that is when others may take
                # over, and this process must have stopped acting by then.
                ok = await asyncio.wait_for(
                    self._try_write(renewal=True), timeout=max(0.001, left.total_seconds())
                )
            except TimeoutError:
                ok = False
            if ok:
                last_renewal = self._clock()
                continue
            other = self._observed is not None and self._observed.holder != self.identity
            late = self._clock() - last_renewal >= self.renew_deadline
            if other or late:
                why = (
                    f"the Lease is held by {self._observed.holder or 'nobody'}"
                    if other and self._observed is not None
                    else f"no renewal for {self.renew_deadline.total_seconds():g}s"
                )
                log.error(
                    "leader election: %s lost Lease %s/%s: %s", self.identity, *self._where(), why
                )
                self._leading = False
                self.lost.set()
                return

    async def _try_write(self, *, renewal: bool) -> bool:
        """One attempt to create, take or renew the Lease; True if this process holds it now."""
        try:
            current = await self._api.read_lease(self.namespace, self.name)
            now = self._clock()
            if current is None:
                if renewal:  # deleted under us: someone may create it now; do not race them
                    self._observed = None
                    return False
                record = acquired(None, self.identity, now, self.lease_duration)
                body = lease_body(self.name, self.namespace, record)
                self._observed = parse_lease(await self._api.create_lease(self.namespace, body))
                return True
            record = parse_lease(current)
            self._observed = record
            if renewal and record.holder != self.identity:
                return False
            if not can_acquire(record, self.identity, now):
                return False
            record = acquired(record, self.identity, now, self.lease_duration)
            body = lease_body(self.name, self.namespace, record)
            self._observed = parse_lease(
                await self._api.replace_lease(self.namespace, self.name, body)
            )
            return True
        except asyncio.CancelledError:
            raise
        except LeaseConflictError:
            log.debug("leader election: someone else wrote Lease %s/%s first", *self._where())
            return False
        except Exception as error:
            log.warning("leader election: Lease %s/%s: %s", self.namespace, self.name, error)
            return False
