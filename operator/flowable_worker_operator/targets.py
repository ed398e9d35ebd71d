"""The workload a pool scales, through the Kubernetes API: the worker Deployment it owns, or a
`scaleTargetRef`.

A thin synchronous shell over the `kubernetes` client (the operator calls it through
`asyncio.to_thread`): create or update the owned Deployment and its PodDisruptionBudget (built by
`manifests`, which is pure), read and set replicas through the `/scale` subresource, and mark pods
with `controller.kubernetes.io/pod-deletion-cost` so that a scale-down removes idle workers before
busy ones. The owned Deployment and its `/scale` are read from the operator's `DeploymentCache`
when it holds them (an unchanged pool's tick then costs no request), by GET otherwise; the
Deployment is read and written as raw JSON, its models' deserialization being most of a GET's cost.

What this module must never do: decide a replica count (that is `scaling`), or undo one. A template
change replaces the Deployment's spec but keeps its live `spec.replicas`. It never takes over a
Deployment it does not control either: a same-named one owned by someone else is an error the
operator reports, not a workload to overwrite.

Problems the operator must report rather than crash on (a missing target, a foreign Deployment, a
kind without `/scale`) raise `TargetError` subclasses whose message is one line for a condition.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from flowable_worker_operator.deployment_cache import CachedDeployment, DeploymentCache
from flowable_worker_operator.manifests import (
    MANAGER,
    TEMPLATE_HASH_ANNOTATION,
    ScaleTarget,
    build_deployment,
    build_pod_disruption_budget,
    deployment_name,
    scale_target,
)
from flowable_worker_operator.spec import KIND, Pool

__all__ = [
    "DELETION_COST_ANNOTATION",
    "BudgetAction",
    "DeploymentState",
    "NotControlledError",
    "Scale",
    "TargetError",
    "TargetNotFoundError",
    "WorkloadRefusedError",
    "cached_scale",
    "ensure_deployment",
    "ensure_pod_disruption_budget",
    "live_pods",
    "read_scale",
    "set_deletion_costs",
    "set_replicas",
]

DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
# pod-deletion-cost is an int32; a pod never holds more locks than this, but a bad count must
# not make the annotation invalid (the API server would refuse the patch).
_MAX_COST = 2**31 - 1


# --- errors -----------------------------------------------------------------------------------


class TargetError(Exception):
    """The pool's workload cannot be acted on; `str(error)` is one line for a condition."""


class TargetNotFoundError(TargetError):
    """The Deployment, StatefulSet or scaleTargetRef does not exist (or has no /scale)."""


class NotControlledError(TargetError):
    """A same-named Deployment exists that this pool does not control; it is left alone."""


class WorkloadRefusedError(TargetError):
    """The API server refused the worker Deployment built from the spec (400/422): something in
    `spec.worker` (a template label over 63 bytes, a bad quantity...) that only it checks."""


# --- the owned Deployment (I/O) ---------------------------------------------------------------


@dataclass(frozen=True)
class DeploymentState:
    """The owned Deployment after `ensure_deployment`, and what it took to get there."""

    name: str
    action: Literal["created", "updated", "unchanged"]
    replicas: int
    ready_replicas: int
    template_hash: str
    resource_version: str


def ensure_deployment(
    apps_api: Any,
    pool: Pool,
    *,
    default_image: str,
    initial_replicas: int,
    secrets_hash: str | None = None,
    cache: DeploymentCache | None = None,
) -> DeploymentState:
    """Make the pool's worker Deployment match its spec, writing only when something changed.

    `secrets_hash`: the fingerprint of the Secret values the pods read (`build_deployment`).
    `cache`: the operator's watch of its Deployments; what it holds is read instead of a GET (an
    unchanged Deployment then costs no request at all), what it does not is read by GET, and what
    is written goes into it.

    Missing: created with `initial_replicas`. Hash annotation differs: the spec is replaced (PUT
    with the live resourceVersion, so a concurrent writer makes us re-read, never clobbers) but
    `spec.replicas` stays as it is live: scaling is the scaler's, and a template edit must not
    undo it. Same hash: nothing is written. A same-named Deployment this pool does not control
    raises `NotControlledError`.
    """
    name = deployment_name(pool)
    for attempt in range(5):
        # The cache first; after a conflict (it may be behind), the API server.
        live = cache.get(pool.namespace, name) if cache is not None and attempt == 0 else None
        if live is None:
            live = _read_deployment(apps_api, pool.namespace, name)
        if live is None:
            body = build_deployment(
                pool,
                default_image=default_image,
                replicas=initial_replicas,
                secrets_hash=secrets_hash,
            )
            try:
                created = _raw(
                    apps_api.create_namespaced_deployment(
                        namespace=pool.namespace,
                        body=body,
                        field_manager=MANAGER,
                        _preload_content=False,
                    )
                )
            except ApiException as error:
                if error.status == 409:  # created meanwhile: look again
                    continue
                raise _refused(error, name) from None
            return _written(cache, created, "created")
        _check_controlled(pool, live)
        annotations = live.annotations
        body = build_deployment(
            pool,
            default_image=default_image,
            replicas=live.replicas,
            secrets_hash=secrets_hash,
        )
        wanted = body["metadata"]["annotations"][TEMPLATE_HASH_ANNOTATION]
        if annotations.get(TEMPLATE_HASH_ANNOTATION) == wanted:
            return _state(live, "unchanged")
        metadata = body["metadata"]
        # Keep what others put on the object (kubectl, the deployment controller's revision).
        metadata["labels"] = {**live.labels, **metadata["labels"]}
        metadata["annotations"] = {**annotations, **metadata["annotations"]}
        metadata["resourceVersion"] = live.resource_version
        if live.finalizers:
            metadata["finalizers"] = list(live.finalizers)
        try:
            updated = _raw(
                apps_api.replace_namespaced_deployment(
                    name=name,
                    namespace=pool.namespace,
                    body=body,
                    field_manager=MANAGER,
                    _preload_content=False,
                )
            )
        except ApiException as error:
            if error.status in (404, 409):  # deleted or changed meanwhile: look again
                if cache is not None:
                    cache.forget(pool.namespace, name)
                continue
            raise _refused(error, name) from None
        return _written(cache, updated, "updated")
    raise TargetError(f"Deployment {pool.namespace}/{name} kept changing while being updated")


def _read_deployment(apps_api: Any, namespace: str, name: str) -> CachedDeployment | None:
    """GET the Deployment as raw JSON (the client's models cost more than the request), None if
    it does not exist."""
    try:
        response = apps_api.read_namespaced_deployment(
            name=name, namespace=namespace, _preload_content=False
        )
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    return CachedDeployment.from_json(_raw(response))


def _raw(response: Any) -> dict[str, Any]:
    """The JSON body of a `_preload_content=False` answer."""
    try:
        body: dict[str, Any] = json.loads(response.data)
    finally:
        response.release_conn()
    return body


def _written(
    cache: DeploymentCache | None,
    answer: Mapping[str, Any],
    action: Literal["created", "updated"],
) -> DeploymentState:
    """The state after a write, which goes into the cache at once: the next tick must not write
    again before the watch reports this one."""
    if cache is not None:
        cache.put(answer)
    return _state(CachedDeployment.from_json(answer), action)


_REFUSAL_CHARS = 1024


def _refused(error: ApiException, name: str) -> Exception:
    """A 400/422 for the Deployment as `WorkloadRefusedError` with the API server's message
    (about the spec the pool's author wrote, capped); any other status stays as it was."""
    return _refusal(error, f"the worker Deployment {name} built from spec.worker")


def _refusal(error: ApiException, what: str) -> Exception:
    """A 400/422 about `what` as `WorkloadRefusedError` with the API server's message, capped;
    any other status stays as it was."""
    if error.status not in (400, 422):
        return error
    try:
        message = str(json.loads(error.body or "{}").get("message") or "")
    except (ValueError, AttributeError):
        message = ""
    message = message or f"HTTP {error.status}"
    if len(message) > _REFUSAL_CHARS:
        message = message[:_REFUSAL_CHARS] + "..."
    return WorkloadRefusedError(f"the API server refused {what}: {message}")


def _check_controlled(pool: Pool, live: CachedDeployment) -> None:
    for ref in live.owners:
        if ref.controller and ref.uid == pool.uid:
            return
    owner = next((f"{r.kind} {r.name}" for r in live.owners if r.controller), "nobody")
    raise NotControlledError(
        f"Deployment {pool.namespace}/{live.name} exists and is controlled by {owner}, "
        f"not by {KIND} {pool.name}; rename or delete it, or use scaleTargetRef to scale it"
    )


def _state(
    deployment: CachedDeployment, action: Literal["created", "updated", "unchanged"]
) -> DeploymentState:
    return DeploymentState(
        name=deployment.name,
        action=action,
        replicas=deployment.replicas,
        ready_replicas=deployment.ready_replicas,
        template_hash=deployment.annotations.get(TEMPLATE_HASH_ANNOTATION, ""),
        resource_version=deployment.resource_version,
    )


def _read_or_none(read: Any) -> Any:
    try:
        return read()
    except ApiException as error:
        if error.status == 404:
            return None
        raise


# --- the worker pods' PodDisruptionBudget -----------------------------------------------------


BudgetAction = Literal["created", "updated", "deleted", "unchanged"]


def ensure_pod_disruption_budget(policy_api: Any, pool: Pool) -> BudgetAction:
    """Create, patch or delete the pool's PodDisruptionBudget to match `worker.podDisruptionBudget`.

    Only a budget this pool controls is ever changed or deleted: a same-named one of someone
    else's raises `NotControlledError`, as for the Deployment. Without a budget in the spec and
    without the right to read budgets (RBAC from before this field), there is nothing of ours
    to delete, so that is not an error: older installs keep scaling.
    """
    name = deployment_name(pool)
    wanted = build_pod_disruption_budget(pool)

    def read() -> Any:
        return policy_api.read_namespaced_pod_disruption_budget(name=name, namespace=pool.namespace)

    if wanted is None:
        try:
            live = _read_or_none(read)
        except ApiException as error:
            if error.status == 403:
                return "unchanged"
            raise
        if live is None or not _is_controlled(pool, live):
            return "unchanged"
        try:
            policy_api.delete_namespaced_pod_disruption_budget(name=name, namespace=pool.namespace)
        except ApiException as error:
            if error.status != 404:
                raise
        return "deleted"
    live = _read_or_none(read)
    if live is None:
        try:
            policy_api.create_namespaced_pod_disruption_budget(
                namespace=pool.namespace, body=wanted, field_manager=MANAGER
            )
        except ApiException as error:
            if error.status == 409:  # created meanwhile: the next tick compares it
                return "unchanged"
            raise _budget_refused(error, name) from None
        return "created"
    if not _is_controlled(pool, live):
        raise NotControlledError(
            f"PodDisruptionBudget {pool.namespace}/{name} exists and is not controlled by "
            f"{KIND} {pool.name}; rename or delete it, or remove worker.podDisruptionBudget"
        )
    spec = wanted["spec"]
    current = {
        "maxUnavailable": live.spec.max_unavailable,
        "minAvailable": live.spec.min_available,
        "selector": {"matchLabels": dict(live.spec.selector.match_labels or {})},
    }
    target = {
        "maxUnavailable": spec.get("maxUnavailable"),
        "minAvailable": spec.get("minAvailable"),
        "selector": spec["selector"],
    }
    if current == target:
        return "unchanged"
    try:
        # A merge patch: the field not wanted is sent as null, so switching between
        # maxUnavailable and minAvailable removes the other in the same write.
        policy_api.patch_namespaced_pod_disruption_budget(
            name=name,
            namespace=pool.namespace,
            body={"metadata": {"labels": wanted["metadata"]["labels"]}, "spec": target},
            field_manager=MANAGER,
            _content_type="application/merge-patch+json",
        )
    except ApiException as error:
        if error.status == 404:  # deleted meanwhile: the next tick creates it
            return "unchanged"
        raise _budget_refused(error, name) from None
    return "updated"


def _is_controlled(pool: Pool, live: Any) -> bool:
    return any(
        ref.controller and ref.uid == pool.uid for ref in live.metadata.owner_references or []
    )


def _budget_refused(error: ApiException, name: str) -> Exception:
    """A 400/422 for the budget as `WorkloadRefusedError`, with the API server's message."""
    return _refusal(
        error, f"the PodDisruptionBudget {name} built from spec.worker.podDisruptionBudget"
    )


# --- scaling through /scale (I/O) -------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    """A `/scale` subresource: wanted replicas, replicas that exist now, and their pods' selector.

    `current_replicas` is the scale's `status.replicas` (pods the workload has, ready or not);
    `selector` is the label-selector text to list those pods with (empty if the kind has none).
    """

    replicas: int
    current_replicas: int
    selector: str


def cached_scale(pool: Pool, cache: DeploymentCache) -> Scale | None:
    """The pool's own Deployment's `/scale` from `cache` (its spec.replicas, status.replicas and
    selector), or None when the cache cannot answer: a `scaleTargetRef`, a Deployment it does not
    hold, or a selector it cannot format. Makes no request, so the event loop may call it."""
    if pool.spec.scale_target_ref is not None:
        return None
    cached = cache.get(pool.namespace, deployment_name(pool))
    if cached is None or cached.selector is None:
        return None
    return Scale(
        replicas=cached.replicas,
        current_replicas=cached.status_replicas,
        selector=cached.selector,
    )


def read_scale(api_client: Any, pool: Pool, cache: DeploymentCache | None = None) -> Scale:
    """The pool's workload as its `/scale` subresource shows it; `TargetNotFoundError` if gone.

    The pool's own Deployment is read from `cache` when it holds it (`cached_scale`); a
    `scaleTargetRef` always by GET."""
    if cache is not None:
        cached = cached_scale(pool, cache)
        if cached is not None:
            return cached
    target = scale_target(pool)
    typed = _typed_scale_calls(api_client, target)
    if typed is not None:
        read, _patch = typed
        scale = _call(target, lambda: read(name=target.name, namespace=target.namespace))
        return Scale(
            replicas=scale.spec.replicas or 0,
            current_replicas=scale.status.replicas or 0,
            selector=scale.status.selector or "",
        )
    resource = _dynamic_scale(api_client, target)
    body = _call(target, lambda: resource.get(name=target.name, namespace=target.namespace))
    spec = body.spec or {}
    status = body.status or {}
    return Scale(
        replicas=int(spec.get("replicas") or 0),
        current_replicas=int(status.get("replicas") or 0),
        selector=str(status.get("selector") or ""),
    )


def set_replicas(api_client: Any, pool: Pool, replicas: int) -> None:
    """Set the workload's replicas through `/scale` (as HPA does), nothing else of it."""
    if replicas < 0:
        raise ValueError(f"replicas must not be negative, got {replicas}")
    target = scale_target(pool)
    body = {"spec": {"replicas": replicas}}
    typed = _typed_scale_calls(api_client, target)
    if typed is not None:
        _read, patch = typed
        _call(
            target,
            lambda: patch(
                name=target.name, namespace=target.namespace, body=body, field_manager=MANAGER
            ),
        )
        return
    resource = _dynamic_scale(api_client, target)
    _call(
        target,
        lambda: resource.patch(
            body=body,
            name=target.name,
            namespace=target.namespace,
            content_type="application/merge-patch+json",
            field_manager=MANAGER,
        ),
    )


def _typed_scale_calls(api_client: Any, target: ScaleTarget) -> tuple[Any, Any] | None:
    """The typed client's read/patch of `/scale` for apps/v1 Deployments and StatefulSets."""
    if target.api_version != "apps/v1":
        return None
    apps = k8s.AppsV1Api(api_client)
    if target.kind == "Deployment":
        return apps.read_namespaced_deployment_scale, apps.patch_namespaced_deployment_scale
    if target.kind == "StatefulSet":
        return apps.read_namespaced_stateful_set_scale, apps.patch_namespaced_stateful_set_scale
    return None


_dynamic_clients: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _dynamic_scale(api_client: Any, target: ScaleTarget) -> Any:
    """The `/scale` subresource of any kind, found through API discovery (cached per client)."""
    from kubernetes.dynamic import DynamicClient
    from kubernetes.dynamic.exceptions import ResourceNotFoundError

    dynamic = _dynamic_clients.get(api_client)
    if dynamic is None:
        dynamic = _dynamic_clients[api_client] = DynamicClient(api_client)  # type: ignore[no-untyped-call]
    try:
        resource = dynamic.resources.get(api_version=target.api_version, kind=target.kind)
    except ResourceNotFoundError:
        raise TargetNotFoundError(f"{target}: the API server does not serve this kind") from None
    scale = resource.subresources.get("scale")
    if scale is None:
        raise TargetNotFoundError(f"{target}: this kind has no /scale subresource")
    return scale


def _call(target: ScaleTarget, request: Any) -> Any:
    """Run one request for `target`, a 404 turned into `TargetNotFoundError`."""
    from kubernetes.dynamic.exceptions import NotFoundError

    try:
        return request()
    except NotFoundError:
        raise TargetNotFoundError(f"{target} not found") from None
    except ApiException as error:
        if error.status == 404:
            raise TargetNotFoundError(f"{target} not found") from None
        raise


# --- pod-deletion-cost (I/O) ------------------------------------------------------------------


def live_pods(core_api: Any, namespace: str, selector: str) -> frozenset[str]:
    """The names of the pods matching `selector` that are not terminating.

    A worker's `workerId` is its pod name, so these are the names a job's `lockOwner` can take
    for a replica that still counts: the operator releases replicas that hold no job only when
    every lock owner is one of them (a lock held under another name, or by a pod already gone,
    says nothing about which replicas are idle).
    """
    pods = core_api.list_namespaced_pod(namespace=namespace, label_selector=selector).items
    return frozenset(pod.metadata.name for pod in pods if pod.metadata.deletion_timestamp is None)


def set_deletion_costs(
    core_api: Any, namespace: str, selector: str, locks_by_pod: Mapping[str, int]
) -> int:
    """Mark each pod matching `selector` with the number of jobs it has locked; return patches.

    The ReplicaSet controller deletes pods with a lower `pod-deletion-cost` first, so set before
    lowering replicas this makes a scale-down take idle workers (cost 0) before busy ones. Only
    pods whose value changes are patched (a poll every few seconds must not write every pod), and
    pods already terminating or gone meanwhile are skipped.
    """
    pods = core_api.list_namespaced_pod(namespace=namespace, label_selector=selector).items
    patched = 0
    for pod in pods:
        if pod.metadata.deletion_timestamp is not None:
            continue
        cost = str(min(max(locks_by_pod.get(pod.metadata.name, 0), 0), _MAX_COST))
        if (pod.metadata.annotations or {}).get(DELETION_COST_ANNOTATION) == cost:
            continue
        try:
            core_api.patch_namespaced_pod(
                name=pod.metadata.name,
                namespace=namespace,
                body={"metadata": {"annotations": {DELETION_COST_ANNOTATION: cost}}},
                field_manager=MANAGER,
            )
        except ApiException as error:
            if error.status == 404:
                continue
            raise
        patched += 1
    return patched
