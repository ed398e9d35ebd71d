"""The tick's Kubernetes writes, refused for a pool whose shard this replica no longer holds.

With `--shards`, a pool's tick checks ownership first (`handlers`), but a tick takes
time (a slow engine, a slow API server): the shard may be given back or lost while it runs. Every
write of the tick goes through here and is checked again at the moment it is made, so a replica
that lost a shard stops writing at once, not at its next tick. Reads pass through.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from flowable_worker_operator.engines import Engine
from flowable_worker_operator.reconcile import Workload
from flowable_worker_operator.spec import Pool
from flowable_worker_operator.targets import Scale

__all__ = ["NotOwnedError", "OwnedWorkload"]


class NotOwnedError(RuntimeError):
    """The pool's shard moved to another replica during the tick: the write was not made."""


class OwnedWorkload:
    """`reconcile.Workload` around another one; `owns(namespace, name)` decides each write."""

    def __init__(self, inner: Workload, owns: Callable[[str, str], bool]) -> None:
        self._inner = inner
        self._owns = owns

    def _check(self, pool: Pool) -> None:
        if not self._owns(pool.namespace, pool.name):
            raise NotOwnedError(
                f"pool {pool.namespace}/{pool.name}: its shard is no longer held by this replica"
            )

    async def engine(self, pool: Pool) -> Engine:
        return await self._inner.engine(pool)

    async def ensure(self, pool: Pool, *, initial_replicas: int) -> None:
        self._check(pool)
        await self._inner.ensure(pool, initial_replicas=initial_replicas)

    async def scale(self, pool: Pool) -> Scale:
        return await self._inner.scale(pool)

    async def set_replicas(self, pool: Pool, replicas: int) -> None:
        self._check(pool)
        await self._inner.set_replicas(pool, replicas)

    async def set_deletion_costs(
        self, pool: Pool, selector: str, locks_by_pod: Mapping[str, int]
    ) -> int:
        self._check(pool)
        return await self._inner.set_deletion_costs(pool, selector, locks_by_pod)

    async def live_pods(self, pool: Pool, selector: str) -> frozenset[str]:
        self._check(pool)
        return await self._inner.live_pods(pool, selector)
