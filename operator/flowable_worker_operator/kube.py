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
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from flowable_worker_operator import targets
from flowable_worker_operator.deployment_cache import DeploymentCache
from flowable_worker_operator.engines import Engine, resolve_engine
from flowable_worker_operator.secret_cache import SecretCache
from flowable_worker_operator.secrethash import SecretContent, secret_refs, secrets_hash
from flowable_worker_operator.spec import GROUP, PLURAL, VERSION, Pool

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
        secrets = await asyncio.to_thread(self._read_secrets, pool.namespace, refs)
        await asyncio.to_thread(
            targets.ensure_deployment,
            self._apps,
            pool,
            default_image=self._default_image,
            initial_replicas=initial_replicas,
            secrets_hash=secrets_hash(refs, secrets),
            cache=self._deployments,
        )
        key = (pool.namespace, pool.name)
        wanted = (pool.uid, pool.spec.worker.pod_disruption_budget if pool.spec.worker else None)
        if self._budgets.get(key) != wanted:
            await asyncio.to_thread(targets.ensure_pod_disruption_budget, self._policy, pool)
            self._budgets[key] = wanted

    def _read_secrets(
        self, namespace: str, refs: Sequence[tuple[str, str]]
    ) -> dict[str, SecretContent | None]:
        """The Secrets the worker pods read (`secrethash`), each once; a missing one is None
        (the pods cannot start without it, and the engine's Secrets are reported by the probe)."""
        read: dict[str, SecretContent | None] = {}
        for name in dict.fromkeys(name for name, _key in refs):
            try:
                secret = self._secrets.read_namespaced_secret(name, namespace)
            except ApiException as error:
                if error.status == 404:
                    read[name] = None
                    continue
                if error.status == 403:
                    raise targets.TargetError(
                        f"not allowed to read Secret {namespace}/{name}, which the worker pods "
                        "use (check the operator's RBAC)"
                    ) from None
                raise
            data = {str(key): str(value) for key, value in (secret.data or {}).items()}
            uid = secret.metadata.uid if secret.metadata is not None else None
            read[name] = SecretContent(uid=uid or "", data=data)
        return read

    async def scale(self, pool: Pool) -> targets.Scale:
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
        await asyncio.to_thread(
            self._custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"status": dict(status)},
        )


def _secret_names(pool: Pool) -> set[str]:
    """Every Secret the pool's tick reads: the engine's (also without a worker) and the pods'."""
    engine = pool.spec.engine
    refs = (engine.auth_secret_ref, engine.tls.ca_secret_ref, engine.tls.client_cert_secret_ref)
    names = {ref.name for ref in refs if ref is not None}
    return names | {name for name, _key in secret_refs(pool)}
