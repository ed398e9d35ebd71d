"""Pools that count the same jobs: noticed, so that each pool can say so.

Flowable's workers acquire by topic, so two pools on one topic of one engine both see (and scale
for) the whole backlog, and their workers take each other's jobs: three pools on one topic run
three times the pods the work needs. The operator cannot tell which pool a job "belongs" to (the
engine does not know either), so it reports the overlap instead of guessing a split: the
`SharedBacklog` condition and a Warning Event on each pool, naming the others. How to split or
share a topic on purpose is in docs/pool-resource.md ("Several pools on one topic").

Two pools overlap when they ask the same engine (its base URL and external-job API path, whatever
the credentials) about the same jobs: a selector of one and a selector of the other can match the
same job (same element id; definitions equal or either one every definition; tenants equal or
either one every tenant). Pools with disjoint selectors on one topic (e.g. one per tenant) do not
overlap: each job is counted once.

The registry lives in memory, in the one operator process that acts: each tick records what its
pool counted; a pool leaves it when it stops counting (a failed probe, a tick stopped by a bad
spec, its ticks' end, its shard moving away: `reconcile`, `handlers`), and an entry nobody
removed lapses after a long while (`reconcile.OVERLAP_LAPSE_INTERVALS`), never because the
operator merely ticks late. Pools this operator does not watch (other namespaces under
`--namespace`, other replicas' shards) are not seen.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from flowable_worker_operator.backlog import Selector
from flowable_worker_operator.engines import Engine

__all__ = ["Overlaps", "overlaps", "shared_message"]

_SHOWN_POOLS = 10


def overlaps(one: Selector, other: Selector) -> bool:
    """True when some job could match both selectors (both already resolved from keys)."""
    if one.element_id != other.element_id:
        return False
    if None not in (one.tenant_id, other.tenant_id) and one.tenant_id != other.tenant_id:
        return False
    if one.every_definition or other.every_definition:
        return True
    return (one.process_definition_id, one.scope_definition_id) == (
        other.process_definition_id,
        other.scope_definition_id,
    )


@dataclass(frozen=True)
class _Counted:
    engine: tuple[str, str]
    selectors: dict[str, tuple[Selector, ...]]  # by element id
    until: datetime

    def index_keys(self) -> list[tuple[tuple[str, str], str]]:
        """Where the index files this pool: two pools can overlap only if they share one."""
        return [(self.engine, element) for element in self.selectors]


def _location(engine: Engine) -> tuple[str, str]:
    """Where the jobs are: two pools reaching one engine with different credentials still
    count (and acquire) the same jobs."""
    return engine.client.base_url.rstrip("/"), engine.client.external_job_api_path.strip("/")


class Overlaps:
    """What each pool counted at its last tick, to find the pools counting the same jobs.

    Indexed by (engine, element id): `overlaps` needs one selector of each pool on the same
    element of the same engine, so a tick compares its pool only with the pools filed under its
    own keys (the few others on its topic), never with every pool the operator watches. Lapsed
    entries are dropped when a tick meets them, and by a sweep of the whole registry once per
    as many records as it holds, so the cost per tick stays independent of the pool count.
    """

    def __init__(self) -> None:
        self._pools: dict[str, _Counted] = {}
        self._index: dict[tuple[tuple[str, str], str], set[str]] = {}
        self._since_sweep = 0

    def record(
        self,
        pool: str,
        engine: Engine,
        selectors: Iterable[Selector],
        now: datetime,
        *,
        lapse: timedelta,
    ) -> tuple[str, ...]:
        """Remember what `pool` (`namespace/name`) counts until `now + lapse`, and answer the
        other pools, sorted, whose selectors overlap its own and that have not lapsed."""
        by_element: dict[str, tuple[Selector, ...]] = {}
        for selector in selectors:
            by_element[selector.element_id] = (*by_element.get(selector.element_id, ()), selector)
        mine = _Counted(_location(engine), by_element, now + lapse)
        self._sweep(now)
        self.forget(pool)
        self._pools[pool] = mine
        candidates: set[str] = set()
        for key in mine.index_keys():
            filed = self._index.setdefault(key, set())
            candidates.update(filed)
            filed.add(pool)
        found: list[str] = []
        for name in candidates:
            theirs = self._pools[name]
            if theirs.until < now:
                self.forget(name)
            elif _any_overlap(mine, theirs):
                found.append(name)
        return tuple(sorted(found))

    def forget(self, pool: str) -> None:
        """`pool` counts nothing any more (it stopped, or cannot be measured)."""
        gone = self._pools.pop(pool, None)
        if gone is None:
            return
        for key in gone.index_keys():
            filed = self._index.get(key)
            if filed is not None:
                filed.discard(pool)
                if not filed:
                    del self._index[key]

    def __len__(self) -> int:
        """Pools remembered (for tests)."""
        return len(self._pools)

    def _sweep(self, now: datetime) -> None:
        """Drop every lapsed entry, once per as many records as there are entries: O(1) per
        record on average, and no lapsed pool is kept for long even if no tick meets it."""
        self._since_sweep += 1
        if self._since_sweep < len(self._pools):
            return
        self._since_sweep = 0
        for name in [name for name, c in self._pools.items() if c.until < now]:
            self.forget(name)


def _any_overlap(one: _Counted, other: _Counted) -> bool:
    return any(
        overlaps(mine, theirs)
        for element, selectors in one.selectors.items()
        for mine in selectors
        for theirs in other.selectors.get(element, ())
    )


def shared_message(others: Sequence[str]) -> str:
    """What the SharedBacklog condition and the Warning say: who else counts these jobs, what
    that does, and what to do about it."""
    shown = ", ".join(others[:_SHOWN_POOLS])
    more = len(others) - _SHOWN_POOLS
    names = shown + (f" and {more} more" if more > 0 else "")
    return (
        f"the jobs this pool counts are also counted by {len(others)} other pool(s): {names}; "
        "each scales for all of them and their workers take each other's jobs; give each pool "
        'a topic of its own, or disjoint backlog.selectors (docs/pool-resource.md, "Several '
        'pools on one topic")'
    )
