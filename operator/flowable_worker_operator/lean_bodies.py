"""Keep the pool objects kopf holds in memory lean: no `metadata.managedFields`, strings shared.

The operator keeps the last body it saw of every pool, for as long as the pool lives: the pool's
ticks read it (`handlers`; kopf kept it too while each pool had a kopf daemon). Most of that body is
`metadata.managedFields`, the API server's record of which field manager set which field, kept
as a tree of nested objects: of a pool with a written status, 32.5 KB of Python objects of which
17.8 KB were managedFields (docs/benchmarks.md, "500 MB at 10,000 pools"). At 10,000 pools
that is 180 MB held for nothing: neither the operator nor kopf reads it (kopf keeps its own state
in annotations and `status.kopf`; the operator writes status by merge patch, not server-side apply).

The API server has no option to leave it out of a watch, so it is dropped from each event's body
as the pool's event handler sees it, before the body is kept. kopf offers no
public way to the raw body behind its `Body` view; the view's source attribute is used, and
anything unexpected there leaves the body as it is (it then costs memory, never correctness).
`tests/unit/operator/test_lean_bodies.py` checks this against the installed kopf, so an upgrade
that moves the attribute fails a test instead of silently bringing the memory back.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

__all__ = ["SHARED_VALUE_LENGTH", "drop_managed_fields", "share_strings"]

SHARED_VALUE_LENGTH = 64
"""String values up to this many characters are shared (names, kinds, reasons, timestamps);
longer ones (messages) are mostly one pool's own."""


def drop_managed_fields(body: Mapping[str, Any]) -> bool:
    """Remove `metadata.managedFields` from the raw object behind `body` (a kopf `Body` or a
    plain dict); True if there was something to remove."""
    raw = getattr(body, "_src", body)
    if not isinstance(raw, dict):
        return False
    metadata = raw.get("metadata")
    if not isinstance(metadata, dict):
        return False
    return metadata.pop("managedFields", None) is not None


def share_strings(body: Mapping[str, Any]) -> None:
    """Make the keys and short string values of the raw object behind `body` the interpreter's
    shared copies (`sys.intern`), in place.

    The JSON decoder gives each event's body its own copy of every key (`apiVersion`,
    `lastTransitionTime`, ...) and value (`Ready`, `True`, the namespace): 91 strings, 7 KB of
    each kept pool, nearly all equal to another pool's (docs/benchmarks.md, "Memory at 10,000
    pools"). Shared, each is held once. The body means the same afterwards: equal strings in,
    equal strings out; only which object holds them changes. Runs once per event, never per
    tick."""
    raw = getattr(body, "_src", body)
    if isinstance(raw, dict):
        _share(raw)


def _share(node: dict[str, Any] | list[Any]) -> None:
    if isinstance(node, dict):
        items = list(node.items())
        node.clear()
        for key, value in items:
            node[sys.intern(key) if type(key) is str else key] = _shared(value)
    else:
        for index, value in enumerate(node):
            node[index] = _shared(value)


def _shared(value: Any) -> Any:
    if isinstance(value, dict | list):
        _share(value)
        return value
    if type(value) is str and len(value) <= SHARED_VALUE_LENGTH:
        return sys.intern(value)
    return value
