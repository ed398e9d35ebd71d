"""The workload a pool scales: the worker Deployment it builds and owns, or a `scaleTargetRef`.

Two halves, as everywhere in the operator:

* `build_deployment` is pure: a `Pool` in, a Deployment manifest out (plus a stable hash of it),
  so every defaulting and merge rule is testable without a cluster.
* The rest is a thin synchronous shell over the `kubernetes` client (the operator calls it through
  `asyncio.to_thread`): create or update the owned Deployment, read and set replicas through the
  `/scale` subresource, and mark pods with `controller.kubernetes.io/pod-deletion-cost` so that a
  scale-down removes idle workers before busy ones.

What this module must never do: decide a replica count (that is `scaling`), or undo one. A template
change replaces the Deployment's spec but keeps its live `spec.replicas`. It never takes over a
Deployment it does not control either: a same-named one owned by someone else is an error the
operator reports, not a workload to overwrite.

Problems the operator must report rather than crash on (a missing target, a foreign Deployment, a
kind without `/scale`) raise `TargetError` subclasses whose message is one line for a condition.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shlex
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from flowable_worker.client.durations import format_duration
from flowable_worker_operator.secrethash import SECRETS_HASH_ANNOTATION
from flowable_worker_operator.spec import GROUP, KIND, VERSION, Pool, WorkerSpec

__all__ = [
    "CA_MOUNT_PATH",
    "CLIENT_CERT_MOUNT_PATH",
    "CONTAINER_NAME",
    "CONTAINER_SECURITY_DEFAULTS",
    "DEFAULT_RESOURCES",
    "DELETION_COST_ANNOTATION",
    "METRICS_PORT",
    "POD_SECURITY_DEFAULTS",
    "POOL_LABEL",
    "TEMPLATE_HASH_ANNOTATION",
    "DeploymentState",
    "NotControlledError",
    "Scale",
    "ScaleTarget",
    "TargetError",
    "TargetNotFoundError",
    "WorkloadRefusedError",
    "build_deployment",
    "build_pod_disruption_budget",
    "deployment_name",
    "ensure_deployment",
    "ensure_pod_disruption_budget",
    "read_scale",
    "scale_target",
    "set_deletion_costs",
    "set_replicas",
    "template_hash",
]

POOL_LABEL = f"{GROUP}/pool"
TEMPLATE_HASH_ANNOTATION = f"{GROUP}/template-hash"
DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
MANAGER = "flowable-worker-operator"
CONTAINER_NAME = "worker"
METRICS_PORT = 9464
CA_VOLUME = "flowable-ca"
CA_MOUNT_PATH = "/etc/flowable-worker/ca"
# The client certificate for mutual TLS with the engine, mounted read-only like the CA: files, not
# environment variables, so the key never shows in `kubectl describe pod` or the pod's env.
CLIENT_CERT_VOLUME = "flowable-client-cert"
CLIENT_CERT_MOUNT_PATH = "/etc/flowable-worker/client-cert"
TMP_VOLUME = "tmp"
METRICS_TLS_ENV = "FLOWABLE_WORKER_METRICS_TLS_CERT"
# What every worker pod gets unless its template sets the same field: the restricted Pod Security
# Standard, a read-only root filesystem (with the emptyDir above at /tmp, where Python and handlers
# may write), and small requests so the scheduler counts the pod. Merged per field, so setting one
# of them (say fsGroup) never drops the others.
POD_SECURITY_DEFAULTS: Mapping[str, Any] = {
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY_DEFAULTS: Mapping[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}
DEFAULT_RESOURCES: Mapping[str, Any] = {"requests": {"cpu": "100m", "memory": "128Mi"}}
# The worker's own grace ends this long before the kubelet's SIGKILL, so that handlers it must
# abandon are still unacquired (given back) rather than killed with their locks held.
GRACE_MARGIN = timedelta(seconds=5)
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


# --- the manifest (pure) ----------------------------------------------------------------------


def deployment_name(pool: Pool) -> str:
    """`<pool>-worker`: the Deployment a pool with `spec.worker` owns."""
    return f"{pool.name}-worker"


def build_deployment(
    pool: Pool, *, default_image: str, replicas: int, secrets_hash: str | None = None
) -> dict[str, Any]:
    """The worker Deployment for `pool`, with `spec.replicas = replicas` and a template hash.

    `secrets_hash` (`secrethash`) becomes the pod template's `flowable-worker.io/secrets-hash`
    annotation, set after the template merge so a template cannot hide it: a changed Secret value
    changes the template, and the Deployment controller replaces the pods.

    Defaults first (env from the spec, probes, metrics port, the restricted security context, a
    read-only root filesystem with an emptyDir at /tmp, no service-account token, small resource
    requests), then
    `worker.env`, then `worker.template` merged over them; see `_merge_pod_template` for the merge
    rules. The hash covers everything but `spec.replicas`, so a replica change alone never reads
    as a template change.
    """
    worker = pool.spec.worker
    if worker is None:
        raise ValueError(f"pool {pool.namespace}/{pool.name} has no spec.worker to build")
    name = deployment_name(pool)
    labels = {
        "app.kubernetes.io/name": "flowable-worker",
        "app.kubernetes.io/instance": pool.name,
        "app.kubernetes.io/managed-by": MANAGER,
        POOL_LABEL: pool.name,
    }
    worker_env = _merge_named(_worker_env(pool, worker), worker.env)
    # A worker told (through spec.worker.env) to serve its metrics port over TLS is probed and
    # scraped over HTTPS: the kubelet does not verify the certificate, so any certificate works.
    # Plain HTTP stays implicit, so the template (and its hash) of existing pools is unchanged.
    tls = any(e.get("name") == METRICS_TLS_ENV for e in worker_env)
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": worker.image or default_image,
        "env": worker_env,
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        "livenessProbe": _probe("/healthz", period=10, failures=3, tls=tls),
        "readinessProbe": _probe("/readyz", period=5, failures=1, tls=tls),
        "resources": copy.deepcopy(DEFAULT_RESOURCES),
        "securityContext": copy.deepcopy(CONTAINER_SECURITY_DEFAULTS),
        "volumeMounts": [{"name": TMP_VOLUME, "mountPath": "/tmp"}],
    }
    if worker.image_pull_policy is not None:
        container["imagePullPolicy"] = worker.image_pull_policy
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "terminationGracePeriodSeconds": worker.termination_grace_period_seconds,
        "automountServiceAccountToken": False,
        "securityContext": copy.deepcopy(POD_SECURITY_DEFAULTS),
        "volumes": [{"name": TMP_VOLUME, "emptyDir": {}}],
    }
    ca = pool.spec.engine.tls.ca_secret_ref
    if ca is not None:
        pod_spec["volumes"].append(
            {
                "name": CA_VOLUME,
                "secret": {"secretName": ca.name, "items": [{"key": ca.key, "path": ca.key}]},
            }
        )
        container["volumeMounts"].append(
            {"name": CA_VOLUME, "mountPath": CA_MOUNT_PATH, "readOnly": True}
        )
    client_cert = pool.spec.engine.tls.client_cert_secret_ref
    if client_cert is not None:
        keys = dict.fromkeys((client_cert.cert_key, client_cert.key_key))  # one item if equal
        pod_spec["volumes"].append(
            {
                "name": CLIENT_CERT_VOLUME,
                "secret": {
                    "secretName": client_cert.name,
                    "items": [{"key": key, "path": key} for key in keys],
                },
            }
        )
        container["volumeMounts"].append(
            {"name": CLIENT_CERT_VOLUME, "mountPath": CLIENT_CERT_MOUNT_PATH, "readOnly": True}
        )
    template = _merge_pod_template(
        {
            "metadata": {
                "labels": dict(labels),
                "annotations": {
                    "prometheus.io/scrape": "true",
                    "prometheus.io/port": str(METRICS_PORT),
                    "prometheus.io/path": "/metrics",
                    **({"prometheus.io/scheme": "https"} if tls else {}),
                },
            },
            "spec": pod_spec,
        },
        worker.template,
        selector={POOL_LABEL: pool.name},
    )
    if secrets_hash is not None:
        template["metadata"]["annotations"][SECRETS_HASH_ANNOTATION] = secrets_hash
    manifest: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": pool.namespace,
            "labels": labels,
            "annotations": {},
            "ownerReferences": [_owned_by(pool)],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {POOL_LABEL: pool.name}},
            "template": template,
        },
    }
    manifest["metadata"]["annotations"][TEMPLATE_HASH_ANNOTATION] = template_hash(manifest)
    return manifest


def template_hash(manifest: Mapping[str, Any]) -> str:
    """A stable hash of a Deployment manifest, ignoring `spec.replicas` and the hash itself."""
    content = copy.deepcopy(dict(manifest))
    content.get("spec", {}).pop("replicas", None)
    content.get("metadata", {}).get("annotations", {}).pop(TEMPLATE_HASH_ANNOTATION, None)
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _worker_env(pool: Pool, worker: WorkerSpec) -> list[dict[str, Any]]:
    """The worker's configuration as the environment variables `flowable-worker` reads."""
    engine = pool.spec.engine
    env: list[dict[str, Any]] = [
        {"name": "FLOWABLE_URL", "value": engine.url},
        {"name": "FLOWABLE_EXTERNAL_JOB_API_PATH", "value": engine.external_job_api_path},
        {"name": "FLOWABLE_TOPIC", "value": pool.spec.topic},
    ]
    handler = worker.handler
    handler_timeout = worker.handler_timeout
    if handler.python is not None:
        env.append({"name": "FLOWABLE_WORKER_HANDLER", "value": handler.python})
    elif handler.http is not None:
        env.append({"name": "FLOWABLE_WORKER_HANDLER_URL", "value": handler.http.url})
        # The worker's HTTP handler has no timeout of its own: it waits as long as the handler
        # timeout. So the endpoint's timeout becomes the handler timeout (the shorter one wins).
        if handler.http.timeout_seconds is not None:
            http_timeout = timedelta(seconds=handler.http.timeout_seconds)
            if handler_timeout is None or http_timeout < handler_timeout:
                handler_timeout = http_timeout
    elif handler.command is not None:
        # The worker shlex-splits this variable; shlex.join quotes so the argv comes back intact.
        env.append(
            {"name": "FLOWABLE_WORKER_HANDLER_COMMAND", "value": shlex.join(handler.command)}
        )
    env += [
        {"name": "FLOWABLE_WORKER_CONCURRENCY", "value": str(worker.concurrency)},
        {"name": "FLOWABLE_WORKER_LOCK_DURATION", "value": format_duration(worker.lock_duration)},
    ]
    if handler_timeout is not None:
        env.append(
            {"name": "FLOWABLE_WORKER_HANDLER_TIMEOUT", "value": format_duration(handler_timeout)}
        )
    env += [
        {
            "name": "FLOWABLE_REQUEST_TIMEOUT",
            "value": format_duration(timedelta(seconds=engine.timeout_seconds)),
        },
        {
            "name": "FLOWABLE_WORKER_GRACE_PERIOD",
            "value": format_duration(_grace_period(worker.termination_grace_period_seconds)),
        },
    ]
    if engine.auth_secret_ref is not None:
        secret = engine.auth_secret_ref.name
        for variable, key in (
            ("FLOWABLE_USERNAME", "username"),
            ("FLOWABLE_PASSWORD", "password"),
            ("FLOWABLE_TOKEN", "token"),
        ):
            env.append(
                {
                    "name": variable,
                    "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": True}},
                }
            )
    ca = engine.tls.ca_secret_ref
    if ca is not None:
        env.append({"name": "FLOWABLE_CA_BUNDLE", "value": f"{CA_MOUNT_PATH}/{ca.key}"})
    client_cert = engine.tls.client_cert_secret_ref
    if client_cert is not None:
        cert_path = f"{CLIENT_CERT_MOUNT_PATH}/{client_cert.cert_key}"
        env.append({"name": "FLOWABLE_CLIENT_CERT", "value": cert_path})
        if client_cert.key_key != client_cert.cert_key:
            key_path = f"{CLIENT_CERT_MOUNT_PATH}/{client_cert.key_key}"
            env.append({"name": "FLOWABLE_CLIENT_KEY", "value": key_path})
    if engine.tls.insecure_skip_verify:
        env.append({"name": "FLOWABLE_VERIFY_TLS", "value": "false"})
    return env


def _grace_period(termination_grace_seconds: int) -> timedelta:
    """The worker's shutdown grace: `GRACE_MARGIN` (at most a fifth of it) under the kubelet's."""
    total = timedelta(seconds=termination_grace_seconds)
    return total - min(GRACE_MARGIN, total / 5)


def _probe(path: str, *, period: int, failures: int, tls: bool) -> dict[str, Any]:
    get = {"path": path, "port": "metrics", **({"scheme": "HTTPS"} if tls else {})}
    return {
        "httpGet": get,
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def _merge_pod_template(
    ours: dict[str, Any], theirs: Mapping[str, Any], *, selector: Mapping[str, str]
) -> dict[str, Any]:
    """`theirs` (the user's PodTemplateSpec) over `ours`.

    * metadata labels and annotations are merged key by key, theirs winning, except the selector
      label: a pod without it would not belong to the Deployment.
    * pod spec fields replace ours, except `containers` and `volumes`, merged by name: a
      `worker` container merges into ours field by field (its `env` by name, its `volumeMounts` by
      mount path), other containers are added as sidecars; so a user sets `resources` without
      repeating the image, the env and the probes.
    * security contexts (the pod's and the worker container's, `capabilities` inside it) merge
      per field: `fsGroup: 2000` adds to `runAsNonRoot` and `seccompProfile`, it does not drop
      them. To unset one of ours, set it explicitly (e.g. `readOnlyRootFilesystem: false`).
    * the worker container's `resources` merge per resource: ours are requests only, and one is
      dropped when theirs sets a request or a limit for that resource (a limit below our request
      would make the pod invalid; Kubernetes defaults a missing request to the limit).
    """
    merged = copy.deepcopy(ours)
    theirs = copy.deepcopy(dict(theirs))
    their_meta = theirs.get("metadata") or {}
    meta = merged.setdefault("metadata", {})
    for key in ("labels", "annotations"):
        meta[key] = {**meta.get(key, {}), **(their_meta.get(key) or {})}
    meta["labels"].update(selector)
    spec = merged["spec"]
    for key, value in (theirs.get("spec") or {}).items():
        if key == "containers":
            spec["containers"] = _merge_containers(spec["containers"], value or [])
        elif key == "volumes":
            spec["volumes"] = _merge_named(spec.get("volumes", []), value or [])
        elif key == "securityContext":
            spec[key] = _merge_security_context(spec.get(key) or {}, value or {})
        else:
            spec[key] = value
    return merged


def _merge_security_context(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> dict[str, Any]:
    """Theirs over ours field by field; `capabilities` (add/drop) field by field too."""
    merged = {**ours, **theirs}
    if isinstance(ours.get("capabilities"), Mapping) and isinstance(
        theirs.get("capabilities"), Mapping
    ):
        merged["capabilities"] = {**ours["capabilities"], **theirs["capabilities"]}
    return merged


def _merge_container_security_context(
    ours: Mapping[str, Any], theirs: Mapping[str, Any]
) -> dict[str, Any]:
    """Per field, except that our `allowPrivilegeEscalation: false` yields to a template that
    makes the container privileged (or adds CAP_SYS_ADMIN) without saying: Kubernetes refuses
    that combination as invalid, and such a container escalates anyway."""
    merged = _merge_security_context(ours, theirs)
    adds = (merged.get("capabilities") or {}).get("add") or []
    escalates = merged.get("privileged") is True or "CAP_SYS_ADMIN" in adds
    if escalates and "allowPrivilegeEscalation" not in theirs:
        merged.pop("allowPrivilegeEscalation", None)
    return merged


def _merge_resources(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> dict[str, Any]:
    """Their requests and limits, plus our default request for each resource they leave alone."""
    named = set(theirs.get("requests") or {}) | set(theirs.get("limits") or {})
    merged = dict(theirs)
    defaults = {k: v for k, v in (ours.get("requests") or {}).items() if k not in named}
    if defaults:
        merged["requests"] = {**defaults, **(theirs.get("requests") or {})}
    return merged


def _merge_containers(
    ours: list[dict[str, Any]], theirs: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    merged = [dict(c) for c in ours]
    by_name = {c["name"]: c for c in merged}
    for container in theirs:
        mine = by_name.get(container.get("name", ""))
        if mine is None:
            merged.append(dict(container))
            by_name[container.get("name", "")] = merged[-1]
            continue
        for key, value in container.items():
            if key == "env":
                mine["env"] = _merge_named(mine.get("env", []), value or [])
            elif key == "volumeMounts":
                mine["volumeMounts"] = _merge_named(
                    mine.get("volumeMounts", []), value or [], key="mountPath"
                )
            elif key == "securityContext":
                mine[key] = _merge_container_security_context(mine.get(key) or {}, value or {})
            elif key == "resources":
                mine[key] = _merge_resources(mine.get(key) or {}, value or {})
            else:
                mine[key] = value
    return merged


def _merge_named(
    ours: Iterable[Mapping[str, Any]], theirs: Iterable[Mapping[str, Any]], *, key: str = "name"
) -> list[dict[str, Any]]:
    """Theirs replace ours with the same `key`; theirs come last, in their order.

    Last, not in our entry's place: a user's variable may refer to another of theirs with
    `$(NAME)`, which Kubernetes only expands for variables defined earlier in the list.
    """
    added = [dict(item) for item in theirs]
    replaced = {item.get(key) for item in added}
    return [dict(item) for item in ours if item.get(key) not in replaced] + added


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
) -> DeploymentState:
    """Make the pool's worker Deployment match its spec, writing only when something changed.

    `secrets_hash`: the fingerprint of the Secret values the pods read (`build_deployment`).

    Missing: created with `initial_replicas`. Hash annotation differs: the spec is replaced (PUT
    with the live resourceVersion, so a concurrent writer makes us re-read, never clobbers) but
    `spec.replicas` stays as it is live: scaling is the scaler's, and a template edit must not
    undo it. Same hash: nothing is written. A same-named Deployment this pool does not control
    raises `NotControlledError`.
    """
    name = deployment_name(pool)
    for _attempt in range(5):
        live = _read_or_none(
            lambda: apps_api.read_namespaced_deployment(name=name, namespace=pool.namespace)
        )
        if live is None:
            body = build_deployment(
                pool,
                default_image=default_image,
                replicas=initial_replicas,
                secrets_hash=secrets_hash,
            )
            try:
                created = apps_api.create_namespaced_deployment(
                    namespace=pool.namespace, body=body, field_manager=MANAGER
                )
            except ApiException as error:
                if error.status == 409:  # created meanwhile: look again
                    continue
                raise _refused(error, name) from None
            return _state(created, "created")
        _check_controlled(pool, live)
        annotations = live.metadata.annotations or {}
        body = build_deployment(
            pool,
            default_image=default_image,
            replicas=live.spec.replicas or 0,
            secrets_hash=secrets_hash,
        )
        wanted = body["metadata"]["annotations"][TEMPLATE_HASH_ANNOTATION]
        if annotations.get(TEMPLATE_HASH_ANNOTATION) == wanted:
            return _state(live, "unchanged")
        metadata = body["metadata"]
        # Keep what others put on the object (kubectl, the deployment controller's revision).
        metadata["labels"] = {**(live.metadata.labels or {}), **metadata["labels"]}
        metadata["annotations"] = {**annotations, **metadata["annotations"]}
        metadata["resourceVersion"] = live.metadata.resource_version
        if live.metadata.finalizers:
            metadata["finalizers"] = list(live.metadata.finalizers)
        try:
            updated = apps_api.replace_namespaced_deployment(
                name=name, namespace=pool.namespace, body=body, field_manager=MANAGER
            )
        except ApiException as error:
            if error.status in (404, 409):  # deleted or changed meanwhile: look again
                continue
            raise _refused(error, name) from None
        return _state(updated, "updated")
    raise TargetError(f"Deployment {pool.namespace}/{name} kept changing while being updated")


_REFUSAL_CHARS = 1024


def _refused(error: ApiException, name: str) -> Exception:
    """A 400/422 for the Deployment as `WorkloadRefusedError` with the API server's message
    (about the spec the pool's author wrote, capped); any other status stays as it was."""
    if error.status not in (400, 422):
        return error
    try:
        message = str(json.loads(error.body or "{}").get("message") or "")
    except (ValueError, AttributeError):
        message = ""
    message = message or f"HTTP {error.status}"
    if len(message) > _REFUSAL_CHARS:
        message = message[:_REFUSAL_CHARS] + "..."
    return WorkloadRefusedError(
        f"the API server refused the worker Deployment {name} built from spec.worker: {message}"
    )


def _check_controlled(pool: Pool, live: Any) -> None:
    for ref in live.metadata.owner_references or []:
        if ref.controller and ref.uid == pool.uid:
            return
    owner = next(
        (f"{r.kind} {r.name}" for r in live.metadata.owner_references or [] if r.controller),
        "nobody",
    )
    raise NotControlledError(
        f"Deployment {pool.namespace}/{live.metadata.name} exists and is controlled by {owner}, "
        f"not by {KIND} {pool.name}; rename or delete it, or use scaleTargetRef to scale it"
    )


def _state(deployment: Any, action: Literal["created", "updated", "unchanged"]) -> DeploymentState:
    annotations = deployment.metadata.annotations or {}
    status = deployment.status
    return DeploymentState(
        name=deployment.metadata.name,
        action=action,
        replicas=deployment.spec.replicas or 0,
        ready_replicas=(status.ready_replicas if status is not None else None) or 0,
        template_hash=annotations.get(TEMPLATE_HASH_ANNOTATION, ""),
        resource_version=deployment.metadata.resource_version,
    )


def _read_or_none(read: Any) -> Any:
    try:
        return read()
    except ApiException as error:
        if error.status == 404:
            return None
        raise


# --- the worker pods' PodDisruptionBudget -----------------------------------------------------


def build_pod_disruption_budget(pool: Pool) -> dict[str, Any] | None:
    """The policy/v1 PodDisruptionBudget `worker.podDisruptionBudget` asks for, or None.

    Named like the Deployment and selecting its pods by the same label as its selector, so it
    covers exactly the pool's workers (a drain then evicts them a few at a time rather than all
    at once); owned by the pool as controller, so deleting the pool deletes it with the
    Deployment.
    """
    worker = pool.spec.worker
    if worker is None or worker.pod_disruption_budget is None:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": deployment_name(pool),
            "namespace": pool.namespace,
            "labels": {
                "app.kubernetes.io/name": "flowable-worker",
                "app.kubernetes.io/instance": pool.name,
                "app.kubernetes.io/managed-by": MANAGER,
                POOL_LABEL: pool.name,
            },
            "ownerReferences": [_owned_by(pool)],
        },
        "spec": {
            **worker.pod_disruption_budget.budget(),
            "selector": {"matchLabels": {POOL_LABEL: pool.name}},
        },
    }


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
        return policy_api.read_namespaced_pod_disruption_budget(
            name=name, namespace=pool.namespace
        )

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
            policy_api.delete_namespaced_pod_disruption_budget(
                name=name, namespace=pool.namespace
            )
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
    if error.status not in (400, 422):
        return error
    try:
        message = str(json.loads(error.body or "{}").get("message") or "")
    except (ValueError, AttributeError):
        message = ""
    return WorkloadRefusedError(
        f"the API server refused the PodDisruptionBudget {name} built from "
        f"spec.worker.podDisruptionBudget: {message[:_REFUSAL_CHARS] or f'HTTP {error.status}'}"
    )


# --- scaling through /scale (I/O) -------------------------------------------------------------


@dataclass(frozen=True)
class ScaleTarget:
    """The workload whose `/scale` a pool reads and writes."""

    api_version: str
    kind: str
    name: str
    namespace: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name} ({self.api_version})"


@dataclass(frozen=True)
class Scale:
    """A `/scale` subresource: wanted replicas, replicas that exist now, and their pods' selector.

    `current_replicas` is the scale's `status.replicas` (pods the workload has, ready or not);
    `selector` is the label-selector text to list those pods with (empty if the kind has none).
    """

    replicas: int
    current_replicas: int
    selector: str


def scale_target(pool: Pool) -> ScaleTarget:
    """The owned Deployment, or the pool's `scaleTargetRef`."""
    ref = pool.spec.scale_target_ref
    if ref is None:
        return ScaleTarget("apps/v1", "Deployment", deployment_name(pool), pool.namespace)
    return ScaleTarget(ref.api_version, ref.kind, ref.name, pool.namespace)


def read_scale(api_client: Any, pool: Pool) -> Scale:
    """The pool's workload as its `/scale` subresource shows it; `TargetNotFoundError` if gone."""
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


def _owned_by(pool: Pool) -> dict[str, Any]:
    """The owner reference that makes an object the pool's: garbage-collected with it, and
    recognised as ours before we change it (`controller: true`)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "name": pool.name,
        "uid": pool.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
