"""The running operator with issue 13's pool extras: the worker PodDisruptionBudget it keeps, the
Active/Paused/Fallback columns its status fills, and flowable_pool_condition / build_info on its
/metrics, all on the real API server.

The operator runs as a process with deploy/rbac/namespaced/ only (tests/cluster/
test_operator_guards.py's fixture), so the PodDisruptionBudget rights are proven by its real
calls; its engine refuses connections, so every tick stops at the probe (Ready=False,
BacklogUnknown) after making the Deployment and the budget, which need no engine.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from flowable_worker import __version__
from flowable_worker_operator.spec import GROUP, PLURAL, VERSION
from localstack.cluster import LocalCluster
from localstack.operator_process import OperatorProcess
from tests.cluster.test_operator_guards import operator  # noqa: F401  # a fixture
from tests.cluster.test_targets import create_pool, pool_crd  # noqa: F401  # a fixture
from tests.support.waiting import poll_until

pytestmark = pytest.mark.cluster

UNREACHABLE = "http://127.0.0.1:9"  # discard port: nothing listens, connections are refused


def _budget(api_client: Any, namespace: str, name: str) -> Any:
    try:
        return k8s_client.PolicyV1Api(api_client).read_namespaced_pod_disruption_budget(
            name, namespace
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _table(output: str) -> dict[str, str]:
    """kubectl's one-row table by column, cut at the header's offsets: a printer column whose
    path is absent (no backlog measured yet) prints nothing, so splitting on spaces would shift
    the columns after it."""
    header, row = output.splitlines()
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    ends = [*starts[1:], None]
    return {header[a:b].strip(): row[a:b].strip() for a, b in zip(starts, ends, strict=True)}


def _series(metrics: str, name: str, **labels: str) -> float | None:
    """The value of the one sample of `name` whose labels include `labels`, or None."""
    for line in metrics.splitlines():
        match = re.fullmatch(rf"{name}\{{(?P<labels>[^}}]*)\}} (?P<value>\S+)", line)
        if match is None:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        if labels.items() <= found.items():
            return float(match["value"])
    return None


def test_the_operator_keeps_the_worker_budget_fills_the_columns_and_exports_conditions(
    operator: OperatorProcess,  # noqa: F811
    cluster: LocalCluster,
    api_client: Any,
    namespace: str,
) -> None:
    spec = {
        "engine": {"url": UNREACHABLE},
        "worker": {"handler": {"python": "m:f"}, "podDisruptionBudget": {"maxUnavailable": 1}},
        "backlog": {"selectors": [{"elementId": "x", "processDefinitionId": "p:1:1"}]},
    }
    pool = create_pool(api_client, namespace, "drained", spec)

    budget = poll_until(lambda: _budget(api_client, namespace, "drained-worker"), timeout=60)
    assert budget.spec.max_unavailable == 1
    assert [(r.kind, r.uid) for r in budget.metadata.owner_references] == [
        ("ExternalWorkerPool", pool.uid)
    ]

    def blind_row() -> dict[str, str] | None:
        table = cluster.kubectl("get", "ewp", "drained", "-n", namespace, "-o", "wide").stdout
        cells = _table(table)
        return cells if cells.get("READY") == "False" else None

    cells = poll_until(blind_row, timeout=60)
    # The backlog is unknown: neither active nor idle; no fallback configured; not paused.
    assert (cells["ACTIVE"], cells["PAUSED"], cells["FALLBACK"]) == ("Unknown", "False", "False")

    labels = {"namespace": namespace, "pool": "drained"}
    metrics = poll_until(
        lambda: (
            text
            if _series(text := operator.metrics(), "flowable_pool_condition", **labels) is not None
            else None
        ),
        timeout=60,
    )
    assert (
        _series(metrics, "flowable_pool_condition", **labels, condition="Ready", status="False")
        == 1
    )
    assert (
        _series(metrics, "flowable_pool_condition", **labels, condition="Ready", status="True") == 0
    )
    assert (
        _series(metrics, "flowable_pool_condition", **labels, condition="Active", status="Unknown")
        == 1
    )
    assert _series(metrics, "flowable_pool_build_info", version=__version__) == 1

    # The field removed: the operator deletes its budget.
    k8s_client.CustomObjectsApi(api_client).patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        "drained",
        {"spec": {"worker": {"podDisruptionBudget": None}}},
    )
    poll_until(lambda: _budget(api_client, namespace, "drained-worker") is None, timeout=60)

    # The pool deleted: its condition series leave /metrics with it.
    k8s_client.CustomObjectsApi(api_client).delete_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "drained"
    )
    poll_until(
        lambda: _series(operator.metrics(), "flowable_pool_condition", **labels) is None,
        timeout=60,
    )
