"""deploy/rbac and deploy/operator.yaml on the real API server: the operator's ServiceAccount may
do exactly what the operator needs (RBAC answers through `kubectl auth can-i`), people get pools
through the aggregated edit/view roles, and the operator's manifest passes a server dry run and the
namespace's restricted Pod Security level. Leases (leader election) only in the operator's own
namespace."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from flowable_worker import __version__
from localstack.cluster import LocalCluster
from tests.cluster.helpers import eventually

pytestmark = pytest.mark.cluster

DEPLOY = Path(__file__).parents[2] / "deploy"
OPERATOR_NS = "flowable-worker-operator"
OPERATOR = f"system:serviceaccount:{OPERATOR_NS}:flowable-worker-operator"
POOLS = "externalworkerpools.flowable-worker.io"


@pytest.fixture(scope="module")
def installed(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The CRD (so kubectl resolves the pool resource), the operator's namespace, deploy/rbac."""
    docs = list(yaml.safe_load_all((DEPLOY / "operator.yaml").read_text()))
    ns_file = tmp_path_factory.mktemp("rbac") / "namespace.yaml"
    ns_file.write_text(yaml.safe_dump(next(d for d in docs if d["kind"] == "Namespace")))
    cluster.kubectl("apply", "-f", str(DEPLOY / "crds"), "-f", str(ns_file))
    cluster.kubectl("apply", "-f", str(DEPLOY / "rbac"))


def _can(cluster: LocalCluster, who: str, *args: str) -> str:
    result = cluster.kubectl("auth", "can-i", f"--as={who}", *args, check=False)
    return result.stdout.strip()


ALLOWED = [
    *[f"{verb} {POOLS}" for verb in ("get", "list", "watch", "patch", "update")],
    *[f"{verb} {POOLS} --subresource=status" for verb in ("get", "patch", "update")],
    *[
        f"{verb} deployments.apps"
        for verb in ("get", "list", "watch", "create", "patch", "update", "delete")
    ],
    *[f"{verb} deployments.apps --subresource=scale" for verb in ("get", "patch", "update")],
    *[f"{verb} pods" for verb in ("get", "list", "watch", "patch")],
    "get secrets",
    "create events",
    "patch events",
    "create events.events.k8s.io",
    "patch events.events.k8s.io",
]
DENIED = [
    "list secrets",
    "watch secrets",
    "delete secrets",
    "create pods",
    "delete pods",
    f"create {POOLS}",
    f"delete {POOLS}",
    "create configmaps",
    "create leases.coordination.k8s.io",
]


@pytest.mark.parametrize("action", ALLOWED)
def test_operator_may(installed: None, cluster: LocalCluster, namespace: str, action: str) -> None:
    assert _can(cluster, OPERATOR, *action.split(), "-n", namespace) == "yes"


@pytest.mark.parametrize("action", DENIED)
def test_operator_may_not(
    installed: None, cluster: LocalCluster, namespace: str, action: str
) -> None:
    assert _can(cluster, OPERATOR, *action.split(), "-n", namespace) == "no"


LEASES = "leases.coordination.k8s.io"


@pytest.mark.parametrize("verb", ["get", "create", "update"])
def test_operator_may_hold_its_lease_in_its_own_namespace(
    installed: None, cluster: LocalCluster, verb: str
) -> None:
    assert _can(cluster, OPERATOR, verb, LEASES, "-n", OPERATOR_NS) == "yes"


@pytest.mark.parametrize("verb", ["list", "watch", "patch", "delete"])
def test_operator_needs_no_other_lease_verbs(
    installed: None, cluster: LocalCluster, verb: str
) -> None:
    assert _can(cluster, OPERATOR, verb, LEASES, "-n", OPERATOR_NS) == "no"


def test_operator_may_not_write_leases_elsewhere(
    installed: None, cluster: LocalCluster, namespace: str
) -> None:
    for verb in ("get", "create", "update"):
        assert _can(cluster, OPERATOR, verb, LEASES, "-n", namespace) == "no"
        assert _can(cluster, OPERATOR, verb, LEASES, "-n", "kube-system") == "no"


@pytest.mark.parametrize(
    "action",
    ["get customresourcedefinitions", "list customresourcedefinitions", "watch namespaces"],
)
def test_operator_may_use_cluster_scoped(
    installed: None, cluster: LocalCluster, action: str
) -> None:
    assert _can(cluster, OPERATOR, *action.split()) == "yes"


def test_people_get_pools_through_aggregated_roles(
    installed: None, cluster: LocalCluster, namespace: str
) -> None:
    for user, role in (("alice", "view"), ("bob", "edit")):
        binding = ("rolebinding", user, f"--clusterrole={role}", f"--user={user}")
        cluster.kubectl("create", *binding, "-n", namespace)
    # The aggregation controller copies the rules into view/edit asynchronously.
    eventually(lambda: _can(cluster, "alice", "list", POOLS, "-n", namespace) == "yes")
    eventually(lambda: _can(cluster, "bob", "create", POOLS, "-n", namespace) == "yes")
    assert _can(cluster, "alice", "watch", POOLS, "-n", namespace) == "yes"
    assert _can(cluster, "alice", "create", POOLS, "-n", namespace) == "no"
    assert _can(cluster, "bob", "delete", POOLS, "-n", namespace) == "yes"
    assert _can(cluster, "bob", "patch", POOLS, "--subresource=status", "-n", namespace) == "no"


def test_operator_manifest_passes_a_server_dry_run(
    installed: None, cluster: LocalCluster, tmp_path: Path
) -> None:
    manifest = str(DEPLOY / "operator.yaml")
    out = cluster.kubectl("apply", "--dry-run=server", "-f", manifest, "-o", "json").stdout
    items = json.loads(out)["items"]
    deploy = next(i for i in items if i["kind"] == "Deployment")
    assert deploy["metadata"]["namespace"] == OPERATOR_NS
    assert deploy["spec"]["replicas"] == 1
    pod = deploy["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "flowable-worker-operator"
    (container,) = pod["containers"]
    assert container["image"] == f"ghcr.io/flowable-worker-operator/operator:{__version__}"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["command"] == ["flowable-worker-operator"]
    assert container["args"] == ["--all-namespaces"]
    assert {"name": "http-metrics", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    assert container["livenessProbe"]["httpGet"] == {
        "path": "/healthz",
        "port": 8080,
        "scheme": "HTTP",
    }
    assert set(container["resources"]) == {"requests", "limits"}

    # A pod from the template is admitted where Pod Security "restricted" is enforced.
    pod_file = tmp_path / "pod.json"
    pod_file.write_text(json.dumps(_pod_from(deploy)))
    cluster.kubectl("create", "--dry-run=server", "-f", str(pod_file))


def _pod_from(deploy: dict[str, Any]) -> dict[str, Any]:
    template = deploy["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "operator-dry-run", "namespace": OPERATOR_NS, **template["metadata"]},
        "spec": template["spec"],
    }
