"""The operator's Kubernetes I/O behind the `reconcile.Workload` protocol, plus status writes.

The official `kubernetes` client is synchronous; every call here runs in a worker thread
(`asyncio.to_thread`) so one slow API call never stalls the event loop that kopf and every other
pool's tick share. One `ApiClient` (one connection pool) serves all pools. The pools' worker
Deployments (and their `/scale`) are read from the operator's `DeploymentCache` when one is given,
so an unchanged pool's tick makes no request for them.

Secrets (the engine's, and those the worker pods read) go through one `SecretCache` shared by every
pool: a Secret several pools name, or that the probe and the pod template both need, is read once,
and then again only when due (found: after 30 s; missing or forbidden: after 5 s, doubling up to
30 s), or at once for a pool whose spec changed (a new `metadata.generation`, or a pool of the same
name recreated). `secret_cache` says why this is a cache read by name and not a watch.

An idle pool's tick makes no request and no thread hand-off here: what the caches answer is
answered on the event loop (`SecretCache.read_cached`, `targets.cached_scale`), and `ensure` is
skipped while nothing it compares has changed since it last made the Deployment right: the pool
(uid, generation, spec), the fingerprint of the Secret values its pods read, and the cached
Deployment's resourceVersion. Any change to the Deployment by anyone (an edit, a delete, its
status) gives it a new resourceVersion, or takes it out of the cache, and so runs `ensure` again,
which repairs what needs repairing; a rotated Secret changes the fingerprint once the Secret cache
reads it again. Building the Deployment to compare its template hash was, with the thread
hand-offs, about a third of an idle tick's cost (docs/benchmarks.md, "The cost of a tick").
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from flowable_worker_operator import targets
from flowable_worker_operator.deployment_cache import DeploymentCache
from flowable_worker_operator.engines import Engine, resolve_engine
from flowable_worker_operator.manifests import deployment_name
from flowable_worker_operator.secret_cache import SecretCache
from flowable_worker_operator.secrethash import SecretContent, secret_refs, secrets_hash
from flowable_worker_operator.spec import GROUP, PLURAL, VERSION, Pool, PoolSpec

__all__ = ["ClusterWorkload"]


class ClusterWorkload:
    """Deployments, scale subresources, pods, Secrets and pool status, through one API client.

    `secrets`: where Secrets are read (default: a `SecretCache` over this client's
    `read_namespaced_secret`)."""

    def __init__(
        self,
        api_client: Any,
        *,
        default_image: str,
        deployments: DeploymentCache | None = None,
        secrets: SecretCache | None = None,
    ) -> None:
        self._api_client = api_client
        self._deployments = deployments
        self._apps = k8s.AppsV1Api(api_client)
        self._core = k8s.CoreV1Api(api_client)
        # Read through `self._core` at call time, not bound now: tests replace `_core`.
        self._secrets = (
            secrets
            if secrets is not None
            else SecretCache(
                lambda name, namespace: self._core.read_namespaced_secret(name, namespace)
            )
        )
        # (namespace, name) -> (uid, generation) of the pool at its last tick here: a change
        # (a spec edited, a pool recreated under the same name) reads its Secrets again at once.
        self._seen: dict[tuple[str, str], tuple[str, int]] = {}
        self._custom = k8s.CustomObjectsApi(api_client)
        self._policy = k8s.PolicyV1Api(api_client)
        self._default_image = default_image
        # (namespace, name) -> (uid, worker.podDisruptionBudget) last made true: the budget is
        # read and written when the spec changes (and once per pool after a start), not on
        # every tick, which would double the API calls of a pool that has none.
        self._budgets: dict[tuple[str, str], tuple[str, object]] = {}
        # (namespace, name) -> what the Deployment was last made right for (`_Ensured`).
        self._ensured: dict[tuple[str, str], _Ensured] = {}

    async def engine(self, pool: Pool) -> Engine:
        self._refresh_if_changed(pool)
        return await asyncio.to_thread(
            resolve_engine, self._secrets, pool.namespace, pool.spec.engine
        )

    def _refresh_if_changed(self, pool: Pool) -> None:
        """A pool seen before with another generation or uid: its Secrets are read again at this
        tick (once: `engine` and `ensure` both ask, the first re-reads). A pool seen for the first
        time (a new one, or every pool after a restart) reads what is not cached yet, and takes
        what is, which is at most `secret_cache.REFRESH_SECONDS` old."""
        key = (pool.namespace, pool.name)
        seen = (pool.uid, pool.generation)
        before = self._seen.get(key)
        self._seen[key] = seen
        if before is not None and before != seen:
            self._secrets.refresh(pool.namespace, _secret_names(pool))

    async def ensure(self, pool: Pool, *, initial_replicas: int) -> None:
        self._refresh_if_changed(pool)
        refs = secret_refs(pool)
        secrets = self._secret_contents(pool.namespace, refs, self._secrets.read_cached)
        if secrets is None:  # one is due: read in a thread
            secrets = await asyncio.to_thread(self._read_secrets, pool.namespace, refs)
        digest = secrets_hash(refs, secrets)
        key = (pool.namespace, pool.name)
        if not self._deployment_unchanged(pool, digest):
            self._ensured.pop(key, None)
            state = await asyncio.to_thread(
                targets.ensure_deployment,
                self._apps,
                pool,
                default_image=self._default_image,
                initial_replicas=initial_replicas,
                secrets_hash=digest,
                cache=self._deployments,
            )
            if self._deployments is not None:
                self._ensured[key] = _Ensured(
                    pool.uid, pool.generation, pool.spec, digest, state.resource_version
                )
        wanted = (pool.uid, pool.spec.worker.pod_disruption_budget if pool.spec.worker else None)
        if self._budgets.get(key) != wanted:
            await asyncio.to_thread(targets.ensure_pod_disruption_budget, self._policy, pool)
            self._budgets[key] = wanted

    def _deployment_unchanged(self, pool: Pool, digest: str | None) -> bool:
        """The cached Deployment is the very version `ensure_deployment` last found right (or
        wrote) for this pool as it is now, with these Secret values: nothing to compare again.
        False without a cache entry (no watch, not listed yet, deleted): then it is read."""
        if self._deployments is None:
            return False
        held = self._ensured.get((pool.namespace, pool.name))
        if held is None:
            return False
        live = self._deployments.get(pool.namespace, deployment_name(pool))
        return live is not None and held == _Ensured(
            pool.uid, pool.generation, pool.spec, digest, live.resource_version
        )

    def _read_secrets(
        self, namespace: str, refs: Sequence[tuple[str, str]]
    ) -> dict[str, SecretContent | None]:
        """`_secret_contents` through the Secret cache's reads, which ask the API server for
        what is due (so: in a thread)."""
        read = self._secret_contents(namespace, refs, self._secrets.read_namespaced_secret)
        if read is None:  # the cache's read answers a Secret or raises, never None
            raise RuntimeError(f"a read of the Secrets of namespace {namespace} answered nothing")
        return read

    def _secret_contents(
        self,
        namespace: str,
        refs: Sequence[tuple[str, str]],
        read: Callable[[str, str], Any],
    ) -> dict[str, SecretContent | None] | None:
        """The Secrets the worker pods read (`secrethash`), each once through `read`; a missing
        one is None (the pods cannot start without it, and the engine's Secrets are reported by
        the probe). None when `read` answers None (`SecretCache.read_cached`: one is due)."""
        read_now: dict[str, SecretContent | None] = {}
        for name in dict.fromkeys(name for name, _key in refs):
            try:
                secret = read(name, namespace)
            except ApiException as error:
                if error.status == 404:
                    read_now[name] = None
                    continue
                if error.status == 403:
                    raise targets.TargetError(
                        f"not allowed to read Secret {namespace}/{name}, which the worker pods "
                        "use (check the operator's RBAC)"
                    ) from None
                raise
            if secret is None:
                return None
            data = {str(key): str(value) for key, value in (secret.data or {}).items()}
            uid = secret.metadata.uid if secret.metadata is not None else None
            read_now[name] = SecretContent(uid=uid or "", data=data)
        return read_now

    async def scale(self, pool: Pool) -> targets.Scale:
        if self._deployments is not None:
            cached = targets.cached_scale(pool, self._deployments)
            if cached is not None:
                return cached
        return await asyncio.to_thread(
            targets.read_scale, self._api_client, pool, self._deployments
        )

    async def set_replicas(self, pool: Pool, replicas: int) -> None:
        await asyncio.to_thread(targets.set_replicas, self._api_client, pool, replicas)

    async def live_pods(self, pool: Pool, selector: str) -> frozenset[str]:
        return await asyncio.to_thread(targets.live_pods, self._core, pool.namespace, selector)

    async def set_deletion_costs(
        self, pool: Pool, selector: str, locks_by_pod: Mapping[str, int]
    ) -> int:
        return await asyncio.to_thread(
            targets.set_deletion_costs, self._core, pool.namespace, selector, locks_by_pod
        )

    async def write_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Merge-patch the pool's status subresource (lists such as conditions are replaced)."""
        await asyncio.to_thread(self._write_status, namespace, name, {"status": dict(status)})

    def _write_status(self, namespace: str, name: str, body: dict[str, Any]) -> None:
        """The PATCH, its answer (the whole pool) read and dropped unparsed: nothing uses it, and
        the client's deserialization of it was more than half of a write's cost (py-spy, 10,000
        new pools writing their first statuses). A refusal still raises `ApiException`."""
        response: Any = self._custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, body, _preload_content=False
        )
        try:
            response.drain_conn()
        finally:
            response.release_conn()


@dataclass(frozen=True, slots=True)
class _Ensured:
    """What a pool's Deployment was last made right for. The spec is held as the object the tick
    parsed (the reconciler keeps one per change), so comparing it is an identity check on an
    unchanged pool, and a spec changed without a new generation still counts as changed."""

    uid: str
    generation: int
    spec: PoolSpec
    secrets_hash: str | None
    resource_version: str


def _secret_names(pool: Pool) -> set[str]:
    """Every Secret the pool's tick reads: the engine's (also without a worker) and the pods'."""
    engine = pool.spec.engine
    refs = (engine.auth_secret_ref, engine.tls.ca_secret_ref, engine.tls.client_cert_secret_ref)
    names = {ref.name for ref in refs if ref is not None}
    return names | {name for name, _key in secret_refs(pool)}
