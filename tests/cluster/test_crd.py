"""The ExternalWorkerPool CRD (deploy/crds) on the real API server: it is established, accepts
every example, fills defaults, rejects bad pools with its CEL messages, prints its columns and has
a status subresource. Field reference: docs/pool-resource.md."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from localstack.cluster import LocalCluster
from tests.support.waiting import poll_until

pytestmark = pytest.mark.cluster

DEPLOY = Path(__file__).parents[2] / "deploy"
CRD_FILE = DEPLOY / "crds" / "externalworkerpools.flowable-worker.io.yaml"
EXAMPLES = sorted((DEPLOY / "examples").glob("*.yaml"))
GROUP, VERSION, PLURAL = "flowable-worker.io", "v1alpha1", "externalworkerpools"
CRD_NAME = f"{PLURAL}.{GROUP}"

MINIMAL_SPEC: dict[str, Any] = {
    "engine": {"url": "http://flowable:8080/flowable-rest"},
    "topic": "invoice-check",
    "worker": {"handler": {"python": "invoices.handlers:check"}},
}


@pytest.fixture(scope="module")
def pools(cluster: LocalCluster, api_client: Any) -> Any:
    """The CRD applied and served; returns a CustomObjectsApi."""
    cluster.kubectl("apply", "-f", str(CRD_FILE))
    cluster.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    custom = k8s_client.CustomObjectsApi(api_client)

    def served() -> bool:  # discovery can lag "Established"
        try:
            custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    poll_until(served, timeout=30)
    return custom


def _pool(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ExternalWorkerPool",
        "metadata": {"name": name},
        "spec": spec,
    }


def _merged(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``change`` merged in, JSON-merge-patch style (None deletes a key)."""
    out = copy.deepcopy(base)
    for key, value in change.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_example_is_accepted(
    pools: Any, cluster: LocalCluster, namespace: str, example: Path
) -> None:
    # kubectl validates fields strictly: a misspelt or misplaced field fails too.
    result = cluster.kubectl("create", "-n", namespace, "-f", str(example), check=False)
    assert result.returncode == 0, result.stderr
    assert "externalworkerpool.flowable-worker.io/" in result.stdout


def test_defaults_are_filled(pools: Any, namespace: str) -> None:
    pools.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, _pool("minimal", MINIMAL_SPEC)
    )
    spec = pools.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "minimal")["spec"]
    assert spec["engine"] == {
        "url": "http://flowable:8080/flowable-rest",
        "externalJobApiPath": "/external-job-api",
        "processApiPath": "/process-api",
        "cmmnApiPath": "/cmmn-api",
        "timeoutSeconds": 10,
    }
    assert spec.get("backlog", {}) == {}
    assert spec["worker"] == {
        "handler": {"python": "invoices.handlers:check"},
        "concurrency": 16,
        "lockDuration": "PT5M",
        "terminationGracePeriodSeconds": 30,
    }
    assert spec["scaling"] == {
        "minReplicas": 0,
        "maxReplicas": 10,
        "activationBacklog": 0,
        "pollingInterval": "15s",
        "cooldownPeriod": "300s",
        "releaseIdleAfter": "20s",
        "deferSmallQueues": True,
        "tolerance": 0.1,
    }
    assert spec["paused"] is False


def test_nested_defaults_are_filled(pools: Any, namespace: str) -> None:
    spec = _merged(
        {k: v for k, v in MINIMAL_SPEC.items() if k != "worker"},
        {
            "engine": {"tls": {"caSecretRef": {"name": "ca"}}},
            "scaleTargetRef": {"name": "existing"},
            "scaling": {"jobsPerReplica": 5, "fallback": {"failureThreshold": 3, "replicas": 1}},
        },
    )
    pools.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, _pool("nested", spec))
    got = pools.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "nested")["spec"]
    assert got["engine"]["tls"] == {
        "caSecretRef": {"name": "ca", "key": "ca.crt"},
        "insecureSkipVerify": False,
    }
    assert got["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "existing",
    }
    assert got["scaling"]["fallback"]["behavior"] == "static"


INVALID = {
    "min-above-max": (
        {"scaling": {"minReplicas": 5, "maxReplicas": 2}},
        "scaling.minReplicas must not exceed scaling.maxReplicas",
    ),
    "fallback-above-max": (
        {"scaling": {"maxReplicas": 2, "fallback": {"failureThreshold": 1, "replicas": 3}}},
        "scaling.fallback.replicas must not exceed scaling.maxReplicas",
    ),
    "worker-and-target": (
        {"scaleTargetRef": {"name": "existing"}},
        "exactly one of spec.worker and spec.scaleTargetRef must be set",
    ),
    "neither-worker-nor-target": (
        {"worker": None},
        "exactly one of spec.worker and spec.scaleTargetRef must be set",
    ),
    "target-without-jobs-per-replica": (
        {"worker": None, "scaleTargetRef": {"name": "existing"}},
        "scaling.jobsPerReplica is required with scaleTargetRef",
    ),
    "two-handlers": (
        {"worker": {"handler": {"command": ["./run.sh"]}}},
        "exactly one of worker.handler.python, worker.handler.http and worker.handler.command",
    ),
    "no-handler-kind": (
        {"worker": {"handler": {"python": None}}},
        "exactly one of worker.handler.python, worker.handler.http and worker.handler.command",
    ),
    "selector-with-both-ids": (
        {
            "backlog": {
                "selectors": [
                    {"elementId": "check", "processDefinitionId": "p:1:1", "scopeDefinitionId": "c"}
                ]
            }
        },
        "each backlog selector needs exactly one of processDefinitionId, scopeDefinitionId, "
        "processDefinitionKey and caseDefinitionKey",
    ),
    "selector-without-id": (
        {"backlog": {"selectors": [{"elementId": "check"}]}},
        "each backlog selector needs exactly one of processDefinitionId, scopeDefinitionId, "
        "processDefinitionKey and caseDefinitionKey",
    ),
    "selector-with-id-and-key": (
        {
            "backlog": {
                "selectors": [
                    {"elementId": "check", "processDefinitionId": "p:1:1", "caseDefinitionKey": "c"}
                ]
            }
        },
        "each backlog selector needs exactly one of processDefinitionId, scopeDefinitionId, "
        "processDefinitionKey and caseDefinitionKey",
    ),
    "engine-url-scheme": (
        {"engine": {"url": "ftp://flowable"}},
        "engine.url must start with http:// or https://",
    ),
    "http-handler-url-scheme": (
        {"worker": {"handler": {"python": None, "http": {"url": "flowable:8000"}}}},
        "worker.handler.http.url must start with http:// or https://",
    ),
    "bad-duration": (
        {"scaling": {"pollingInterval": "15 seconds"}},
        "spec.scaling.pollingInterval in body should match",
    ),
    "lock-duration-just-pt": (
        {"worker": {"lockDuration": "PT"}},
        "worker.lockDuration must name hours, minutes or seconds",
    ),
    "lock-duration-go-style": (
        {"worker": {"lockDuration": "5m"}},
        "spec.worker.lockDuration in body should match",
    ),
    "negative-min-replicas": (
        {"scaling": {"minReplicas": -1}},
        "spec.scaling.minReplicas in body should be greater than or equal to 0",
    ),
    "unknown-enum": (
        {"worker": {"imagePullPolicy": "Sometimes"}},
        'spec.worker.imagePullPolicy: Unsupported value: "Sometimes"',
    ),
    "empty-topic": ({"topic": ""}, "spec.topic in body should be at least 1 chars long"),
    # Hostile but otherwise well-typed values (issue 10): bounded here, before any operator.
    "replicas-past-int32": (
        {"scaling": {"minReplicas": 2**31, "maxReplicas": 2**53}},
        "spec.scaling.maxReplicas in body should be less than or equal to 2147483647",
    ),
    "fallback-replicas-past-int32": (
        {"scaling": {"fallback": {"failureThreshold": 1, "replicas": 2**31}}},
        "spec.scaling.fallback.replicas in body should be less than or equal to 2147483647",
    ),
    "jobs-per-replica-past-int32": (
        {"scaling": {"jobsPerReplica": 2**31}},
        "spec.scaling.jobsPerReplica in body should be less than or equal to 2147483647",
    ),
    "grace-past-int32": (
        {"worker": {"terminationGracePeriodSeconds": 2**40}},
        "spec.worker.terminationGracePeriodSeconds in body should be less than or equal to",
    ),
    "polling-interval-past-a-year": (
        {"scaling": {"pollingInterval": "8761h"}},
        "scaling.pollingInterval must be at most 8760h",
    ),
    "polling-interval-overflowing": (
        {"scaling": {"pollingInterval": "99999999999h"}},
        "spec.scaling.pollingInterval",
    ),
    "cooldown-past-a-year": (
        {"scaling": {"cooldownPeriod": "9000h"}},
        "scaling.cooldownPeriod must be at most 8760h",
    ),
    "release-idle-after-past-a-year": (
        {"scaling": {"releaseIdleAfter": "9000h"}},
        "scaling.releaseIdleAfter must be at most 8760h",
    ),
    "defer-small-queues-not-a-boolean": (
        {"scaling": {"deferSmallQueues": "yes"}},
        "spec.scaling.deferSmallQueues",
    ),
    "release-idle-after-not-a-duration": (
        {"scaling": {"releaseIdleAfter": "soon"}},
        "spec.scaling.releaseIdleAfter",
    ),
    "engine-url-unparsable": (
        {"engine": {"url": "http://[::1"}},
        "engine.url must be a URL with a host",
    ),
    "engine-url-without-host": (
        {"engine": {"url": "http://"}},
        "engine.url must be a URL with a host",
    ),
    "empty-image": (
        {"worker": {"image": ""}},
        "spec.worker.image in body should be at least 1 chars long",
    ),
}


def test_a_worker_pool_name_past_a_label_value_is_rejected(pools: Any, namespace: str) -> None:
    """The CEL rule on the root may read metadata.name: a pool with spec.worker puts its name in
    label values (63 bytes at most); a scaleTargetRef pool labels nothing and may be longer."""
    with pytest.raises(ApiException) as caught:
        pools.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, _pool("c" * 64, MINIMAL_SPEC)
        )
    assert caught.value.status == 422
    assert "needs a name of at most 63 characters" in json.loads(caught.value.body)["message"]
    pools.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, _pool("c" * 63, MINIMAL_SPEC)
    )
    target = _merged(
        MINIMAL_SPEC,
        {"worker": None, "scaleTargetRef": {"name": "x"}, "scaling": {"jobsPerReplica": 2}},
    )
    long_name = _pool("t" * 70, target)
    pools.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, long_name)


def test_the_backlog_keeps_its_time_and_staleness_in_status(
    pools: Any, cluster: LocalCluster, namespace: str
) -> None:
    pools.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, _pool("stale", MINIMAL_SPEC)
    )
    backlog = {"unlocked": 4, "locked": 1, "observedTime": "2026-11-30T10:00:00Z", "stale": True}
    _patch_status(cluster, namespace, "stale", {"backlog": backlog})
    got = pools.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "stale")
    assert got["status"]["backlog"] == backlog  # not pruned


@pytest.mark.parametrize(("change", "message"), INVALID.values(), ids=INVALID.keys())
def test_invalid_pool_is_rejected_with_its_message(
    pools: Any, namespace: str, change: dict[str, Any], message: str
) -> None:
    body = _pool("bad", _merged(MINIMAL_SPEC, change))
    with pytest.raises(ApiException) as caught:
        pools.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    assert caught.value.status == 422
    assert message in json.loads(caught.value.body)["message"]


def test_kubectl_shows_columns_and_finds_pools_by_category(
    pools: Any, cluster: LocalCluster, namespace: str
) -> None:
    pools.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, _pool("invoices", MINIMAL_SPEC)
    )
    status = {
        "desiredReplicas": 3,
        "replicas": 2,
        "backlog": {"unlocked": 40, "locked": 7},
        "conditions": [
            _condition("Ready", "True"),
            _condition("Active", "True"),
            _condition("Fallback", "False"),
            _condition("Paused", "False"),
        ],
    }
    _patch_status(cluster, namespace, "invoices", status)
    header, row = cluster.kubectl("get", "ewp", "-n", namespace).stdout.splitlines()
    columns = ["NAME", "TOPIC", "MIN", "MAX", "DESIRED", "REPLICAS", "UNLOCKED", "LOCKED"]
    assert header.split() == [*columns, "READY", "ACTIVE", "PAUSED", "AGE"]
    values = ["invoices", "invoice-check", "0", "10", "3", "2", "40", "7"]
    assert row.split()[:-1] == [*values, "True", "True", "False"]
    # Fallback only with -o wide (priority 1): it is False unless the engine is unreachable.
    header, row = cluster.kubectl("get", "ewp", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert header.split() == [*columns, "READY", "ACTIVE", "PAUSED", "FALLBACK", "AGE"]
    assert row.split()[:-1] == [*values, "True", "True", "False", "False"]
    # A paused pool in fallback says so in its own columns.
    status["conditions"] = [
        _condition("Ready", "False"),
        _condition("Active", "Unknown"),
        _condition("Fallback", "True"),
        _condition("Paused", "True"),
    ]
    _patch_status(cluster, namespace, "invoices", status)
    _, row = cluster.kubectl("get", "ewp", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert row.split()[-5:-1] == ["False", "Unknown", "True", "True"]
    by_category = cluster.kubectl("get", "flowable", "-n", namespace, "-o", "name").stdout
    assert by_category.split() == ["externalworkerpool.flowable-worker.io/invoices"]


def test_status_is_a_subresource(pools: Any, cluster: LocalCluster, namespace: str) -> None:
    pools.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, _pool("invoices", MINIMAL_SPEC)
    )

    def read() -> dict[str, Any]:
        return pools.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "invoices")

    kopf_state = {"progress": {"pool/create": {"started": "2026-01-01T00:00:00Z"}}}
    status = {"observedGeneration": 1, "desiredReplicas": 1, "kopf": kopf_state, "bogus": 1}
    _patch_status(cluster, namespace, "invoices", status)
    pool = read()
    assert pool["metadata"]["generation"] == 1  # a status write is not a spec change
    assert pool["status"] == {"observedGeneration": 1, "desiredReplicas": 1, "kopf": kopf_state}

    # Through the main endpoint, status is ignored and a spec change bumps the generation.
    patch = {"spec": {"scaling": {"maxReplicas": 4}}, "status": {"desiredReplicas": 9}}
    cluster.kubectl(
        "patch", "ewp", "invoices", "-n", namespace, "--type=merge", "-p", json.dumps(patch)
    )
    pool = read()
    assert pool["metadata"]["generation"] == 2
    assert pool["spec"]["scaling"]["maxReplicas"] == 4
    assert pool["status"]["desiredReplicas"] == 1


def _condition(type_: str, status: str) -> dict[str, str]:
    return {
        "type": type_,
        "status": status,
        "reason": "Stable",
        "message": "test",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }


def _patch_status(cluster: LocalCluster, namespace: str, name: str, status: dict[str, Any]) -> None:
    cluster.kubectl(
        "patch",
        "ewp",
        name,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )
