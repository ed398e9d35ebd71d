"""Flowable's typed REST variables: what the engine accepts and how it hands them back.

The emulator keeps variables in their wire form (`{"name", "type", "value"}`) because tests care
about what crosses the wire, but it applies the engine's rules on the way in: a name is required,
only the 13 REST types are known (anything else is a 400), an untyped value gets the type Jackson
would give it, and a null value comes back without a `type` (the engine stores a null variable and
`EngineRestVariable` omits a null type). Time values come back at the precision a real Flowable
7.2 keeps (seen in the contract suite): `date` to the second, `instant` and `localDateTime` to the
millisecond.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from .errors import bad_request

REST_TYPES = frozenset(
    {
        "string",
        "integer",
        "long",
        "short",
        "double",
        "bigDecimal",
        "bigInteger",
        "boolean",
        "date",
        "instant",
        "localDate",
        "localDateTime",
        "json",
    }
)

_INT32 = 2**31
_INT64 = 2**63


def _deduced_type(value: Any) -> str | None:
    """The type Jackson's untyped mapping gives a raw JSON value (None for null)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        if -_INT32 <= value < _INT32:
            return "integer"
        return "long" if -_INT64 <= value < _INT64 else "bigInteger"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    return "json"


def normalize_variables(items: Any) -> dict[str, dict[str, Any]]:
    """Validate a request's `variables` list; return them by name in the form they read back as.

    Raises `ApiError` (400) with Flowable's messages. `None` or `[]` means no variables.
    """
    if items is None:
        return {}
    if not isinstance(items, list):
        raise bad_request("variables must be a list")
    result: dict[str, dict[str, Any]] = {}
    for item in items:
        if not isinstance(item, dict):
            raise bad_request("Variable name is required.")
        name = item.get("name")
        if not isinstance(name, str) or name == "":
            raise bad_request("Variable name is required.")
        declared = item.get("type")
        value = item.get("value")
        if declared is not None and declared not in REST_TYPES:
            raise bad_request(f"Variable '{name}' has unsupported type: '{declared}'.")
        kind = declared if declared is not None else _deduced_type(value)
        result[name] = readback(name, kind, value)
    return result


_FRACTION = re.compile(r"\.(\d+)")


def _with_fraction_digits(text: str, digits: int) -> str:
    """Cut a time text's fraction of a second to `digits` (0: drop it), as the engine prints it."""

    def cut(match: re.Match[str]) -> str:
        kept = match.group(1)[:digits]
        return f".{kept}" if kept.strip("0") else ""  # Java prints no fraction when it is zero

    return _FRACTION.sub(cut, text, count=1)


_PRECISION = {"date": 0, "instant": 3, "localDateTime": 3}


def readback(name: str, kind: str | None, value: Any) -> dict[str, Any]:
    """One variable as the engine serializes it: a null value has no `type` key."""
    if value is None:
        return {"name": name, "value": None}
    if kind in _PRECISION and isinstance(value, str):
        value = _with_fraction_digits(value, _PRECISION[kind])
    return {"name": name, "type": kind, "value": value}


def as_list(variables: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies in insertion order, safe to hand to callers."""
    return [dict(v) for v in variables.values()]


def merge(target: dict[str, dict[str, Any]], updates: Iterable[dict[str, Any]]) -> None:
    """Set each update on `target` by name, as completing a job sets instance variables."""
    for item in updates:
        target[item["name"]] = dict(item)
