"""The pool's status conditions, kept the way Kubernetes tools expect (`metav1.Condition`).

Pure: the caller passes the current conditions, the generation and the time; these functions
return new lists and never read a clock. `lastTransitionTime` moves only when a condition's status
changes, so `kubectl describe` shows how long a pool has been Ready (or not), not when the
operator last looked. Conditions are kept in one fixed order, so status patches are stable and
a diff shows what changed rather than a reshuffle.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "ACTIVE",
    "CONDITION_TYPES",
    "ENGINE_REACHABLE",
    "FALLBACK",
    "PAUSED",
    "READY",
    "SHARED_BACKLOG",
    "ConditionUpdate",
    "condition_status",
    "find_condition",
    "format_time",
    "keep_heartbeats",
    "parse_time",
    "set_condition",
    "set_conditions",
]

READY = "Ready"
ACTIVE = "Active"
FALLBACK = "Fallback"
PAUSED = "Paused"
ENGINE_REACHABLE = "EngineReachable"
SHARED_BACKLOG = "SharedBacklog"
CONDITION_TYPES: tuple[str, ...] = (
    READY,
    ACTIVE,
    FALLBACK,
    PAUSED,
    ENGINE_REACHABLE,
    SHARED_BACKLOG,
)
"""Every condition a pool reports, in the order they are listed."""

MESSAGE_LIMIT = 1024
"""The most characters of a condition's message: whatever a tick has to say (every problem of
an engine with hundreds of models, an error's text), the status write stays far below the
CRD's 32768-character limit, so it can never be refused for its size."""

_STATUS_TEXT: dict[bool | None, str] = {True: "True", False: "False", None: "Unknown"}
_TEXT_STATUS = {text: value for value, text in _STATUS_TEXT.items()}


@functools.lru_cache(maxsize=1024)
def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC to the second (`2026-11-28T10:00:00Z`), as metav1.Time serializes.

    A naive datetime is taken as UTC: the operator's clock is `datetime.now(UTC)`, and guessing
    a local zone would shift every timestamp.
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: object) -> datetime | None:
    """A Kubernetes timestamp (metav1.Time or MicroTime, RFC 3339) read back; None when absent or
    unreadable. One without a zone is taken as UTC, as `format_time` does, so that it compares
    with the operator's clock instead of raising."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


ConditionUpdate = tuple[str, bool | None, str, str]
"""A condition to set: (type, status, reason, message); status None means Unknown."""


def set_condition(
    conditions: Sequence[Mapping[str, Any]],
    *,
    type: str,
    status: bool | None,
    reason: str,
    message: str,
    generation: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """`conditions` with `type` set; `lastTransitionTime` kept when its status did not change.

    `status=None` means Unknown (e.g. EngineReachable before the first probe). The result is
    sorted by `CONDITION_TYPES`; a condition of another type (written by someone else, or by a
    newer operator) is kept, after ours, by name.
    """
    return set_conditions(
        conditions, [(type, status, reason, message)], generation=generation, now=now
    )


def set_conditions(
    conditions: Sequence[Mapping[str, Any]],
    updates: Iterable[ConditionUpdate],
    *,
    generation: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """`conditions` with every update applied at once, each as `set_condition` sets one.

    A type updated twice takes its last update, and its `lastTransitionTime` is judged against
    the condition in `conditions` (the one a reader has seen), never against an update made a
    moment before: Ready set True and then False by a later check of the same tick is a Ready
    that stayed False, not one that changed twice. One copy and one sort for a tick's conditions,
    where one `set_condition` per type copied and sorted them all each time.
    """
    latest: dict[str, tuple[bool | None, str, str]] = {}
    for kind, status, reason, message in updates:
        latest[kind] = (status, reason, message)
    updated = [dict(c) for c in conditions if c.get("type") not in latest]
    moved: str | None = None
    for kind, (status, reason, message) in latest.items():
        text = _STATUS_TEXT[status]
        previous = find_condition(conditions, kind)
        if (
            previous is not None
            and previous.get("status") == text
            and previous.get("lastTransitionTime")
        ):
            transition = str(previous["lastTransitionTime"])
        else:
            transition = moved = moved or format_time(now)
        updated.append(
            {
                "type": kind,
                "status": text,
                "observedGeneration": generation,
                "lastTransitionTime": transition,
                "reason": reason,
                "message": message
                if len(message) <= MESSAGE_LIMIT
                else f"{message[: MESSAGE_LIMIT - 15]}... (truncated)",
            }
        )
    return sorted(updated, key=_order)


def find_condition(
    conditions: Sequence[Mapping[str, Any]], condition_type: str
) -> Mapping[str, Any] | None:
    """The condition of `condition_type`, or None if the pool has none yet."""
    return next((c for c in conditions if c.get("type") == condition_type), None)


def condition_status(conditions: Sequence[Mapping[str, Any]], condition_type: str) -> bool | None:
    """True/False for a condition that says so; None when it is Unknown or absent."""
    condition = find_condition(conditions, condition_type)
    if condition is None:
        return None
    return _TEXT_STATUS.get(str(condition.get("status")))


def _order(condition: Mapping[str, Any]) -> tuple[int, str]:
    kind = str(condition.get("type", ""))
    rank = CONDITION_TYPES.index(kind) if kind in CONDITION_TYPES else len(CONDITION_TYPES)
    return rank, kind


HEARTBEATS: tuple[tuple[str, ...], ...] = (
    ("probe", "lastSuccessTime"),
    ("backlog", "observedTime"),
    ("lastActiveTime",),
)
"""Status fields (paths) that move on every successful tick while telling a reader nothing new:
`lastActiveTime` moves on every tick of a pool that has work (one job held for an hour: the
same backlog, replicas and conditions, a new `lastActiveTime` every interval)."""


def keep_heartbeats(status: Mapping[str, Any], previous: Mapping[str, Any]) -> dict[str, Any]:
    """`status`, with the heartbeat timestamps of `previous` when nothing else changed.

    An idle pool measured every 15 s would otherwise write its status on every tick only because
    `probe.lastSuccessTime` and `backlog.observedTime` moved, and a busy pool whose backlog and
    replicas stay the same because `lastActiveTime` did too: one PATCH per pool per interval, the
    API server's CPU and etcd's history spent on nothing. Kept, they make the new status equal to
    the one written, and the caller writes nothing. They move whenever anything else changes (a
    backlog, a condition, an error), so each tells when the status as shown was last found
    different; how fresh the measurement is now is the operator's to tell (its `/metrics` and the
    `Ready` condition, which turns False when probes fail), not etcd's. (A refresh every few
    minutes, as there was, cost an idle 10,000-pool operator 500 PATCHes per interval.) A
    heartbeat absent or unreadable in `previous` is written. Only the keys of `status` are
    compared: what others keep in the object's status (kopf's progress) is not ours to weigh.
    """
    present = [at for at in HEARTBEATS if _heartbeat(status, at) is not None]
    skip: dict[str, Any] = {}
    for at in present:
        node = skip
        for section in at[:-1]:
            node = node.setdefault(section, {})
        node[at[-1]] = True
    stored = {k: previous.get(k) for k in status}
    if not _same_as_stored(status, stored, skip):
        return dict(status)
    for at in present:
        before = _heartbeat(previous, at)
        if before == _heartbeat(status, at):
            continue
        if before is None or parse_time(before) is None:
            return dict(status)
    # Copied along the heartbeats' paths only: the rest is shared with `status`, which is
    # never changed (a deep copy of every condition was most of this function's cost).
    kept = dict(status)
    for at in present:
        *sections, key = at
        inner = kept
        for section in sections:
            inner[section] = dict(inner[section])
            inner = inner[section]
        inner[key] = _heartbeat(previous, at)
    return kept


def _heartbeat(status: Mapping[str, Any], at: tuple[str, ...]) -> str | None:
    value: Any = status
    for key in at:
        value = value.get(key) if _is_mapping(value) else None
    return value if isinstance(value, str) else None


def _is_mapping(value: object) -> bool:
    """`isinstance(value, Mapping)`, with the plain dict a status is made of checked first:
    the ABC's check is most of the cost of comparing a status at every tick."""
    return type(value) is dict or isinstance(value, Mapping)


def _same_as_stored(written: Any, stored: Any, skip: Mapping[str, Any] | None = None) -> bool:
    """Whether `written` equals `stored` as the API server keeps it: a None in `written` is an
    absent field (a status patch's null removes it), a None in `stored` too, lists and tuples
    alike. `skip`: keys not compared, as a tree (`{"probe": {"lastSuccessTime": True}}`).

    One walk with no copies: this runs for every pool at every tick."""
    if _is_mapping(written):
        if not _is_mapping(stored):
            return False
        for key, value in written.items():
            inner = skip.get(key) if skip is not None else None
            if inner is True:
                continue
            before = stored.get(key)
            # Plain equality first (at C speed; equal values are equal with or without nulls and
            # skipped keys): an idle pool's conditions are, and then need no walk.
            if value != before and not _same_as_stored(value, before, inner):
                return False
        skipped = () if skip is None else [key for key, inner in skip.items() if inner is True]
        return not any(
            value is not None and key not in written and key not in skipped
            for key, value in stored.items()
        )
    if isinstance(written, list | tuple):
        if not isinstance(stored, list | tuple) or len(written) != len(stored):
            return False
        return all(w == s or _same_as_stored(w, s) for w, s in zip(written, stored, strict=True))
    if written is None or stored is None:
        return written is stored
    return bool(written == stored)
