"""kubectl and helm (official binaries from the cache) work against the local cluster."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from localstack.cluster import LocalCluster

pytestmark = pytest.mark.cluster


def test_kubectl_sees_the_ready_kwok_node(cluster: LocalCluster) -> None:
    out = cluster.kubectl("get", "nodes", "-o", "json").stdout
    nodes = json.loads(out)["items"]
    assert [n["metadata"]["name"] for n in nodes] == [cluster.node_name]
    conditions = {c["type"]: c["status"] for c in nodes[0]["status"]["conditions"]}
    assert conditions["Ready"] == "True"
    table = cluster.kubectl("get", "nodes").stdout
    assert cluster.node_name in table
    assert "Ready" in table


def test_helm_installs_and_lists_a_chart(cluster: LocalCluster, tmp_path: Path) -> None:
    cluster.helm("create", str(tmp_path / "tiny"))
    release, ns = "tiny", "helm-test"
    cluster.helm(
        "install",
        release,
        str(tmp_path / "tiny"),
        "--namespace",
        ns,
        "--create-namespace",
        "--wait",
        "--timeout",
        "120s",
    )
    try:
        listed = json.loads(cluster.helm("list", "--namespace", ns, "-o", "json").stdout)
        assert [(r["name"], r["status"]) for r in listed] == [(release, "deployed")]
        # --wait returned, so the chart's Deployment is available: kwok ran its pod.
        deploy = json.loads(cluster.kubectl("get", "deployment", "-n", ns, "-o", "json").stdout)
        assert deploy["items"][0]["status"].get("availableReplicas") == 1
    finally:
        cluster.helm("uninstall", release, "--namespace", ns, "--wait", check=False)
