"""The control plane is the real thing: CEL validation, versions, boot time, clean teardown."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from localstack.cluster import LocalCluster, pid_alive
from tests.support.waiting import poll_until

pytestmark = pytest.mark.cluster

GROUP = "test.localstack.io"
CEL_MESSAGE = "minReplicas must not exceed maxReplicas"
BOOT_BUDGET_SECONDS = 20.0


def _widget_crd() -> dict[str, Any]:
    spec_schema = {
        "type": "object",
        "properties": {
            "minReplicas": {"type": "integer"},
            "maxReplicas": {"type": "integer"},
        },
        "x-kubernetes-validations": [
            {"rule": "self.minReplicas <= self.maxReplicas", "message": CEL_MESSAGE}
        ],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"spec": spec_schema},
                        }
                    },
                }
            ],
        },
    }


def _widget(name: str, low: int, high: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"minReplicas": low, "maxReplicas": high},
    }


def test_crd_cel_rule_rejects_a_bad_object(api_client: Any, namespace: str) -> None:
    ext = k8s_client.ApiextensionsV1Api(api_client)
    custom = k8s_client.CustomObjectsApi(api_client)
    try:
        ext.create_custom_resource_definition(_widget_crd())
    except ApiException as exc:  # the session may already have it (e.g. a rerun in one cluster)
        if exc.status != 409:
            raise

    def established() -> bool:
        crd = ext.read_custom_resource_definition(f"widgets.{GROUP}")
        conds = crd.status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conds)

    poll_until(established)

    def create_good() -> bool:
        try:
            custom.create_namespaced_custom_object(
                GROUP, "v1", namespace, "widgets", _widget("good", 1, 3)
            )
        except ApiException as exc:
            if exc.status == 404:  # discovery of the new resource can lag "Established"
                return False
            raise
        return True

    poll_until(create_good, timeout=15)

    with pytest.raises(ApiException) as caught:
        custom.create_namespaced_custom_object(
            GROUP, "v1", namespace, "widgets", _widget("bad", 5, 2)
        )
    assert caught.value.status == 422
    assert CEL_MESSAGE in str(caught.value.body)


def test_server_version_is_stamped(cluster: LocalCluster) -> None:
    """Without -ldflags -X ...gitVersion the binaries report v0.0.0."""
    go_mod = (Path(__file__).parents[2] / "localstack" / "k8s" / "go.mod").read_text()
    match = re.search(r"k8s\.io/kubernetes (v\S+)", go_mod)
    assert match
    status, body = cluster.api("GET", "/version")
    assert status == 200
    assert body["gitVersion"] == match.group(1)


def test_boot_time_within_budget(cluster: LocalCluster) -> None:
    assert cluster.ready_seconds is not None
    print(f"cluster ready in {cluster.ready_seconds:.1f}s")
    assert cluster.ready_seconds <= BOOT_BUDGET_SECONDS


def test_second_cluster_runs_beside_and_leaves_no_process(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """Free ports and a private directory per cluster: a second one boots next to the session's,
    and stopping it leaves none of its processes (checked by pid, group included)."""
    second = LocalCluster(bin_dir=cluster.bin_dir, workdir=tmp_path / "second")
    with second:
        assert second.server != cluster.server
        pids = second.pids()
        assert set(pids) == {
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kwok",
        }
        assert all(pid_alive(pid) for pid in pids.values())
        status, _ = second.api("GET", "/readyz")
        assert status == 200
    deadline = time.monotonic() + 5
    while any(pid_alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [name for name, pid in pids.items() if pid_alive(pid)] == []
    # The session's cluster is untouched.
    status, _ = cluster.api("GET", "/readyz")
    assert status == 200
