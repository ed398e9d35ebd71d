"""deploy/rbac and deploy/operator.yaml on the real API server: the operator's ServiceAccount may
do exactly what the operator needs, every call its source makes and kopf's, and nothing it used to
be granted without using (RBAC answers through `kubectl auth can-i`); the namespaced variant
(deploy/rbac/namespaced/) grants the same in one namespace only; people get pools
through the aggregated edit/view roles, and the operator's manifest passes a server dry run and the
namespace's restricted Pod Security level. Leases (leader election) only in the operator's own
namespace."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from flowable_worker import __version__
from localstack.cluster import LocalCluster
from tests.support.waiting import poll_until

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


# Every call the operator makes (its own through the kubernetes client, and kopf's), as kubectl
# auth can-i asks it: the test below maps each client method in the source to one of these.
ALLOWED = [
    *[f"{verb} {POOLS}" for verb in ("list", "watch", "patch")],  # kopf: watch, finalizer
    f"patch {POOLS} --subresource=status",  # kube.write_status, kopf's status.kopf
    *[f"{verb} deployments.apps" for verb in ("get", "list", "watch", "create", "update")],
    *[f"{verb} deployments.apps --subresource=scale" for verb in ("get", "patch")],
    *[f"{verb} statefulsets.apps --subresource=scale" for verb in ("get", "patch")],
    "list pods",
    "patch pods",
    "get secrets",
    "create events",  # kopf.event
    "list horizontalpodautoscalers.autoscaling",  # kopf index of HPA targets (conflicts)
    "watch horizontalpodautoscalers.autoscaling",
    # worker.podDisruptionBudget (targets.ensure_pod_disruption_budget)
    *[f"{verb} poddisruptionbudgets.policy" for verb in ("get", "create", "patch", "delete")],
]
# What the roles granted before and no code uses, and what the operator must never do.
DENIED = [
    *[f"{verb} {POOLS}" for verb in ("get", "update", "create", "delete")],
    *[f"{verb} {POOLS} --subresource=status" for verb in ("get", "update")],
    *[f"{verb} deployments.apps" for verb in ("patch", "delete")],
    "update deployments.apps --subresource=scale",
    *[f"{verb} pods" for verb in ("get", "watch", "create", "delete")],
    "list secrets",
    "watch secrets",
    "delete secrets",
    "patch events",
    "create events.events.k8s.io",
    "patch events.events.k8s.io",
    *[f"{verb} horizontalpodautoscalers.autoscaling" for verb in ("get", "create", "patch")],
    *[f"{verb} poddisruptionbudgets.policy" for verb in ("list", "watch", "update")],
    "create configmaps",
    "create leases.coordination.k8s.io",
]

# The operator's kubernetes-client calls (found in its source) and what each needs.
CLIENT_CALLS = {
    "read_namespaced_secret": "get secrets",
    "read_namespaced_deployment": "get deployments.apps",
    # deployment_cache: the pools' Deployments listed and watched (watch=True on the same call)
    "list_namespaced_deployment": "list deployments.apps",
    "list_deployment_for_all_namespaces": "list deployments.apps",
    "create_namespaced_deployment": "create deployments.apps",
    "replace_namespaced_deployment": "update deployments.apps",
    "read_namespaced_deployment_scale": "get deployments.apps --subresource=scale",
    "patch_namespaced_deployment_scale": "patch deployments.apps --subresource=scale",
    "read_namespaced_stateful_set_scale": "get statefulsets.apps --subresource=scale",
    "patch_namespaced_stateful_set_scale": "patch statefulsets.apps --subresource=scale",
    "list_namespaced_pod": "list pods",
    "patch_namespaced_pod": "patch pods",
    "patch_namespaced_custom_object_status": f"patch {POOLS} --subresource=status",
    "read_namespaced_pod_disruption_budget": "get poddisruptionbudgets.policy",
    "create_namespaced_pod_disruption_budget": "create poddisruptionbudgets.policy",
    "patch_namespaced_pod_disruption_budget": "patch poddisruptionbudgets.policy",
    "delete_namespaced_pod_disruption_budget": "delete poddisruptionbudgets.policy",
}
LEASE_CALLS = {
    "read_namespaced_lease",
    "create_namespaced_lease",
    "replace_namespaced_lease",
    "list_namespaced_lease",  # sharding: every shard Lease in one call
    "delete_namespaced_lease",  # sharding: a replica's own member Lease, on a clean stop
}
SOURCE = Path(__file__).parents[2] / "operator" / "flowable_worker_operator"


def test_every_client_call_in_the_operator_is_granted_and_nothing_else_is() -> None:
    """A new API call in the operator fails here until it is mapped (and granted)."""
    pattern = re.compile(
        r"\b(?:read|create|replace|patch|list|delete|watch)_(?:namespaced_\w+|\w+_for_all_namespaces)"
    )
    found = {m for path in SOURCE.glob("*.py") for m in pattern.findall(path.read_text())}
    assert found == set(CLIENT_CALLS) | LEASE_CALLS
    # The rest of ALLOWED is kopf's: watching pools and HPAs, its finalizer patch, Events.
    kopf = {
        f"list {POOLS}",
        f"watch {POOLS}",
        f"patch {POOLS}",
        "create events",
        "list horizontalpodautoscalers.autoscaling",
        "watch horizontalpodautoscalers.autoscaling",
    }
    # deployment_cache's list calls also watch (watch=True): granted beside list.
    watches = {"watch deployments.apps"}
    assert set(ALLOWED) == set(CLIENT_CALLS.values()) | kopf | watches


@pytest.mark.parametrize("action", ALLOWED)
def test_operator_may(installed: None, cluster: LocalCluster, namespace: str, action: str) -> None:
    assert _can(cluster, OPERATOR, *action.split(), "-n", namespace) == "yes"


@pytest.mark.parametrize("action", DENIED)
def test_operator_may_not(
    installed: None, cluster: LocalCluster, namespace: str, action: str
) -> None:
    assert _can(cluster, OPERATOR, *action.split(), "-n", namespace) == "no"


LEASES = "leases.coordination.k8s.io"


@pytest.mark.parametrize("verb", ["get", "list", "create", "update", "delete"])
def test_operator_may_hold_its_lease_in_its_own_namespace(
    installed: None, cluster: LocalCluster, verb: str
) -> None:
    assert _can(cluster, OPERATOR, verb, LEASES, "-n", OPERATOR_NS) == "yes"


@pytest.mark.parametrize("verb", ["watch", "patch", "deletecollection"])
def test_operator_needs_no_other_lease_verbs(
    installed: None, cluster: LocalCluster, verb: str
) -> None:
    assert _can(cluster, OPERATOR, verb, LEASES, "-n", OPERATOR_NS) == "no"


def test_operator_may_not_write_leases_elsewhere(
    installed: None, cluster: LocalCluster, namespace: str
) -> None:
    for verb in ("get", "list", "create", "update", "delete"):
        assert _can(cluster, OPERATOR, verb, LEASES, "-n", namespace) == "no"
        assert _can(cluster, OPERATOR, verb, LEASES, "-n", "kube-system") == "no"


CLUSTER_ALLOWED = ["list customresourcedefinitions", "watch customresourcedefinitions"]
# kopf lists and watches namespaces only when given a list of them (deploy/rbac/namespaced/).
CLUSTER_DENIED = ["get customresourcedefinitions", "list namespaces", "watch namespaces"]


@pytest.mark.parametrize("action", CLUSTER_ALLOWED)
def test_operator_may_use_cluster_scoped(
    installed: None, cluster: LocalCluster, action: str
) -> None:
    assert _can(cluster, OPERATOR, *action.split()) == "yes"


@pytest.mark.parametrize("action", CLUSTER_DENIED)
def test_operator_needs_no_other_cluster_scoped(
    installed: None, cluster: LocalCluster, action: str
) -> None:
    assert _can(cluster, OPERATOR, *action.split()) == "no"


# --- deploy/rbac/namespaced: an operator watching some namespaces --------------------------------

NAMESPACED = DEPLOY / "rbac" / "namespaced"
SCOPED_SA = "flowable-worker-operator-scoped"
SCOPED = f"system:serviceaccount:{OPERATOR_NS}:{SCOPED_SA}"


def _for_scoped(path: Path) -> list[dict[str, Any]]:
    """The file's objects, renamed for another ServiceAccount (deploy/rbac's stays as it is)."""
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    for doc in docs:
        doc["metadata"]["name"] = doc["metadata"]["name"].replace(
            "flowable-worker-operator", SCOPED_SA, 1
        )
        if "roleRef" in doc:
            doc["roleRef"]["name"] = doc["roleRef"]["name"].replace(
                "flowable-worker-operator", SCOPED_SA, 1
            )
            for subject in doc["subjects"]:
                subject["name"] = SCOPED_SA
    return docs


@pytest.fixture
def scoped(installed: None, cluster: LocalCluster, namespace: str, tmp_path: Path) -> str:
    """deploy/rbac/namespaced installed for `namespace` only (another ServiceAccount)."""
    cluster_file, role_file = tmp_path / "cluster.yaml", tmp_path / "role.yaml"
    cluster_file.write_text(yaml.safe_dump_all(_for_scoped(NAMESPACED / "cluster-role.yaml")))
    role_file.write_text(yaml.safe_dump_all(_for_scoped(NAMESPACED / "role.yaml")))
    cluster.kubectl("apply", "-f", str(cluster_file))
    cluster.kubectl("apply", "-n", namespace, "-f", str(role_file))
    return namespace


def test_the_namespaced_role_has_the_cluster_roles_namespaced_rules() -> None:
    def rules(path: Path, kind: str) -> list[Any]:
        docs = yaml.safe_load_all(path.read_text())
        return list(next(d["rules"] for d in docs if d and d["kind"] == kind))

    wide = rules(DEPLOY / "rbac" / "cluster-role.yaml", "ClusterRole")
    cluster_scoped = {"customresourcedefinitions", "namespaces"}
    assert rules(NAMESPACED / "role.yaml", "Role") == [
        r for r in wide if not cluster_scoped & set(r["resources"])
    ]
    # No namespace in the file: `kubectl apply -n NS` puts the Role and binding there.
    for doc in yaml.safe_load_all((NAMESPACED / "role.yaml").read_text()):
        assert "namespace" not in doc["metadata"]


@pytest.mark.parametrize("action", ALLOWED)
def test_namespaced_operator_may_in_its_namespace_only(
    scoped: str, cluster: LocalCluster, action: str
) -> None:
    assert _can(cluster, SCOPED, *action.split(), "-n", scoped) == "yes"
    assert _can(cluster, SCOPED, *action.split(), "-n", "default") == "no"


@pytest.mark.parametrize("action", DENIED)
def test_namespaced_operator_may_not(scoped: str, cluster: LocalCluster, action: str) -> None:
    assert _can(cluster, SCOPED, *action.split(), "-n", scoped) == "no"


def test_namespaced_operator_cluster_scoped(scoped: str, cluster: LocalCluster) -> None:
    for action in (*CLUSTER_ALLOWED, "list namespaces", "watch namespaces"):
        assert _can(cluster, SCOPED, *action.split()) == "yes", action
    for action in ("get customresourcedefinitions", "list pods", "get secrets"):
        assert _can(cluster, SCOPED, *action.split(), "-A") == "no", action


def test_people_get_pools_through_aggregated_roles(
    installed: None, cluster: LocalCluster, namespace: str
) -> None:
    for user, role in (("alice", "view"), ("bob", "edit")):
        binding = ("rolebinding", user, f"--clusterrole={role}", f"--user={user}")
        cluster.kubectl("create", *binding, "-n", namespace)
    # The aggregation controller copies the rules into view/edit asynchronously.
    poll_until(lambda: _can(cluster, "alice", "list", POOLS, "-n", namespace) == "yes")
    poll_until(lambda: _can(cluster, "bob", "create", POOLS, "-n", namespace) == "yes")
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
