"""Keep `metadata.managedFields` out of the pool objects kopf holds in memory.

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

from collections.abc import Mapping
from typing import Any

__all__ = ["drop_managed_fields"]


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
