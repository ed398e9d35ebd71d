"""The worker Deployment a pool owns, as a manifest: pure, `Pool` in, objects to apply out.

Every defaulting and merge rule for what the operator creates lives here, testable without a
cluster: the worker Deployment (`build_deployment`: image, the worker's environment, probes, the
security and resource defaults merged per field with the pool's own template, the pods' labels and
metrics port), the stable hash of its template that tells whether it changed (`template_hash`),
the PodDisruptionBudget of its pods (`build_pod_disruption_budget`), and which workload a pool
scales (`scale_target`). Applying any of it to a cluster is `targets`' job.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flowable_worker.client.durations import format_duration
from flowable_worker_operator.secrethash import SECRETS_HASH_ANNOTATION
from flowable_worker_operator.spec import GROUP, KIND, VERSION, Pool, WorkerSpec

__all__ = [
    "CA_MOUNT_PATH",
    "CLIENT_CERT_MOUNT_PATH",
    "CONTAINER_NAME",
    "CONTAINER_SECURITY_DEFAULTS",
    "DEFAULT_RESOURCES",
    "MANAGER",
    "METRICS_PORT",
    "POD_SECURITY_DEFAULTS",
    "POOL_LABEL",
    "TEMPLATE_HASH_ANNOTATION",
    "ScaleTarget",
    "build_deployment",
    "build_pod_disruption_budget",
    "deployment_name",
    "scale_target",
    "template_hash",
]

POOL_LABEL = f"{GROUP}/pool"
TEMPLATE_HASH_ANNOTATION = f"{GROUP}/template-hash"
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


# --- which workload a pool scales -----------------------------------------------------------


@dataclass(frozen=True)
class ScaleTarget:
    """The workload whose `/scale` a pool reads and writes."""

    api_version: str
    kind: str
    name: str
    namespace: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name} ({self.api_version})"


def scale_target(pool: Pool) -> ScaleTarget:
    """The owned Deployment, or the pool's `scaleTargetRef`."""
    ref = pool.spec.scale_target_ref
    if ref is None:
        return ScaleTarget("apps/v1", "Deployment", deployment_name(pool), pool.namespace)
    return ScaleTarget(ref.api_version, ref.kind, ref.name, pool.namespace)


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
