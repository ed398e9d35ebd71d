"""A Flowable worker pool scaled the way a KEDA user does it today, as Kubernetes manifests.

No Flowable scaler exists in KEDA, so a user points the ``metrics-api`` trigger at Flowable's
job query, ``GET <external-job-api>/jobs?unlocked=true&size=1`` narrowed to the element (and
definition) of their topic, reads ``total`` from the page and sets ``targetValue`` to the jobs
one replica should take. The HPA KEDA creates keeps its default behavior; KEDA itself takes the
pool from 0 to 1 and back to 0 after ``cooldownPeriod``. Basic auth goes through a Secret and a
``TriggerAuthentication``, as KEDA documents.

The workers are the same ``flowable-worker`` processes this project's operator runs (pods with
the pod runner's run-as-process label), configured through the same environment variables, so a
benchmark compares the scaling and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from localstack.cluster import LocalCluster
from localstack.podrunner import RUN_AS_PROCESS_LABEL

# The operator gives the worker this much less than the pod's termination grace (at most a
# fifth of it), so it stops polling and finishes its jobs before the kubelet's SIGKILL.
GRACE_MARGIN_SECONDS = 5.0

_COLLECTIONS = {
    "Secret": "/api/v1/namespaces/{ns}/secrets",
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
    "TriggerAuthentication": "/apis/keda.sh/v1alpha1/namespaces/{ns}/triggerauthentications",
    "ScaledObject": "/apis/keda.sh/v1alpha1/namespaces/{ns}/scaledobjects",
}


@dataclass(frozen=True)
class KedaPool:
    """One worker Deployment and the KEDA objects that scale it."""

    name: str
    namespace: str
    engine_url: str
    topic: str
    element_id: str
    handler: str
    jobs_per_replica: int
    max_replicas: int
    command: list[str]
    process_definition_id: str | None = None
    external_job_api_path: str = "/external-job-api"
    min_replicas: int = 0
    cooldown_seconds: int = 300
    polling_interval_seconds: int = 30
    concurrency: int = 1
    lock_duration: str = "PT5M"
    termination_grace_seconds: int = 30
    username: str = "admin"
    password: str = "test"
    image: str = "flowable-worker:local"
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def deployment(self) -> str:
        return f"{self.name}-worker"

    @property
    def hpa(self) -> str:
        """The HPA KEDA creates for the ScaledObject (``keda-hpa-<name>``)."""
        return f"keda-hpa-{self.name}"

    def job_count_url(self) -> str:
        """The page whose ``total`` is the backlog: one row only, the count is in the header."""
        params = {"unlocked": "true", "size": "1", "elementId": self.element_id}
        if self.process_definition_id is not None:
            params["processDefinitionId"] = self.process_definition_id
        base = self.engine_url.rstrip("/") + "/" + self.external_job_api_path.strip("/")
        return f"{base}/jobs?{urlencode(params)}"

    def manifests(self) -> list[dict[str, Any]]:
        """Secret, Deployment, TriggerAuthentication and ScaledObject, in creation order."""
        meta = {"namespace": self.namespace}
        secret = f"{self.name}-flowable"
        return [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": secret, **meta},
                "stringData": {"username": self.username, "password": self.password},
            },
            self._deployment(secret),
            {
                "apiVersion": "keda.sh/v1alpha1",
                "kind": "TriggerAuthentication",
                "metadata": {"name": secret, **meta},
                "spec": {
                    "secretTargetRef": [
                        {"parameter": "username", "name": secret, "key": "username"},
                        {"parameter": "password", "name": secret, "key": "password"},
                    ]
                },
            },
            {
                "apiVersion": "keda.sh/v1alpha1",
                "kind": "ScaledObject",
                "metadata": {"name": self.name, **meta},
                "spec": {
                    "scaleTargetRef": {"name": self.deployment},
                    "minReplicaCount": self.min_replicas,
                    "maxReplicaCount": self.max_replicas,
                    "cooldownPeriod": self.cooldown_seconds,
                    "pollingInterval": self.polling_interval_seconds,
                    "triggers": [
                        {
                            "type": "metrics-api",
                            "metadata": {
                                "url": self.job_count_url(),
                                "format": "json",
                                "valueLocation": "total",
                                "targetValue": str(self.jobs_per_replica),
                                "authMode": "basic",
                            },
                            "authenticationRef": {"name": secret},
                        }
                    ],
                },
            },
        ]

    def _deployment(self, secret: str) -> dict[str, Any]:
        labels = {"app.kubernetes.io/name": self.deployment}
        total = self.termination_grace_seconds
        worker_grace = total - min(GRACE_MARGIN_SECONDS, total / 5)
        env: list[dict[str, Any]] = [
            {"name": "FLOWABLE_URL", "value": self.engine_url},
            {"name": "FLOWABLE_EXTERNAL_JOB_API_PATH", "value": self.external_job_api_path},
            {"name": "FLOWABLE_TOPIC", "value": self.topic},
            {"name": "FLOWABLE_WORKER_HANDLER", "value": self.handler},
            {"name": "FLOWABLE_WORKER_CONCURRENCY", "value": str(self.concurrency)},
            {"name": "FLOWABLE_WORKER_LOCK_DURATION", "value": self.lock_duration},
            {"name": "FLOWABLE_WORKER_GRACE_PERIOD", "value": _iso(worker_grace)},
        ]
        for variable, key in (("FLOWABLE_USERNAME", "username"), ("FLOWABLE_PASSWORD", "password")):
            env.append(
                {"name": variable, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
            )
        env += [{"name": k, "value": v} for k, v in self.extra_env.items()]
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": self.deployment, "namespace": self.namespace, "labels": labels},
            "spec": {
                # KEDA owns the replica count from here on; 0 until it sees work.
                "replicas": 0,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": {**labels, RUN_AS_PROCESS_LABEL: "true"}},
                    "spec": {
                        "terminationGracePeriodSeconds": self.termination_grace_seconds,
                        "containers": [
                            {
                                "name": "worker",
                                "image": self.image,
                                "command": self.command,
                                "env": env,
                            }
                        ],
                    },
                },
            },
        }

    def create(self, cluster: LocalCluster) -> None:
        """Create every object; fail with the API server's answer if one is refused."""
        for manifest in self.manifests():
            path = _COLLECTIONS[manifest["kind"]].format(ns=self.namespace)
            status, body = cluster.api("POST", path, manifest)
            if status != 201:
                name = manifest["metadata"]["name"]
                raise RuntimeError(f"creating {manifest['kind']} {name}: HTTP {status}: {body}")

    def delete_scaled_object(self, cluster: LocalCluster) -> None:
        """Delete the ScaledObject while KEDA still runs: its finalizer needs the operator."""
        path = _COLLECTIONS["ScaledObject"].format(ns=self.namespace)
        cluster.api("DELETE", f"{path}/{self.name}")

    def scaled_object(self, cluster: LocalCluster) -> dict[str, Any]:
        path = _COLLECTIONS["ScaledObject"].format(ns=self.namespace)
        status, body = cluster.api("GET", f"{path}/{self.name}")
        return dict(body) if status == 200 else {}


def _iso(seconds: float) -> str:
    """ISO-8601 seconds, the duration form `flowable-worker` reads (PT8S, PT2.5S)."""
    delta = timedelta(seconds=seconds)
    value = delta.total_seconds()
    return f"PT{int(value)}S" if value == int(value) else f"PT{value}S"
