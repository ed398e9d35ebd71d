"""The pool's status conditions, kept the way Kubernetes tools expect (`metav1.Condition`).

Pure: the caller passes the current conditions, the generation and the time; these functions
return new lists and never read a clock. `lastTransitionTime` moves only when a condition's status
changes, so `kubectl describe` shows how long a pool has been Ready (or not), not when the
operator last looked. Conditions are kept in one fixed order, so status patches are stable and
a diff shows what changed rather than a reshuffle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    "condition_status",
    "find_condition",
    "format_time",
    "set_condition",
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

_STATUS_TEXT = {True: "True", False: "False", None: "Unknown"}
_TEXT_STATUS = {text: value for value, text in _STATUS_TEXT.items()}


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC to the second (`2026-11-28T10:00:00Z`), as metav1.Time serializes.

    A naive datetime is taken as UTC: the operator's clock is `datetime.now(UTC)`, and guessing
    a local zone would shift every timestamp.
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
    text = _STATUS_TEXT[status]
    previous = find_condition(conditions, type)
    if (
        previous is not None
        and previous.get("status") == text
        and previous.get("lastTransitionTime")
    ):
        transition = str(previous["lastTransitionTime"])
    else:
        transition = format_time(now)
    updated: dict[str, Any] = {
        "type": type,
        "status": text,
        "observedGeneration": generation,
        "lastTransitionTime": transition,
        "reason": reason,
        "message": message
        if len(message) <= MESSAGE_LIMIT
        else f"{message[: MESSAGE_LIMIT - 15]}... (truncated)",
    }
    others = [dict(c) for c in conditions if c.get("type") != type]
    return sorted([*others, updated], key=_order)


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
