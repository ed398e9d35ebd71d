"""worker.podDisruptionBudget: parsing and the PodDisruptionBudget the operator builds from it.

The I/O half (create, patch, delete on the real API server, and the CRD's own checks) is
tests/cluster/test_worker_pdb.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from flowable_worker_operator.manifests import (
    POOL_LABEL,
    build_deployment,
    build_pod_disruption_budget,
)
from flowable_worker_operator.spec import SpecError, parse_pool


def _pool(budget: Any = None, **extra: Any) -> Any:
    worker: dict[str, Any] = {"handler": {"python": "m:f"}}
    if budget is not None:
        worker["podDisruptionBudget"] = budget
    return parse_pool(
        {
            "metadata": {"name": "inv", "namespace": "billing", "uid": "uid-1", "generation": 1},
            "spec": {
                "engine": {"url": "http://flowable:8080/flowable-rest"},
                "topic": "invoices",
                "worker": worker,
                **extra,
            },
        }
    )


def test_no_budget_without_the_field() -> None:
    assert build_pod_disruption_budget(_pool()) is None


@pytest.mark.parametrize(
    ("budget", "spec"),
    [
        ({"maxUnavailable": 1}, {"maxUnavailable": 1}),
        ({"maxUnavailable": "25%"}, {"maxUnavailable": "25%"}),
        ({"minAvailable": 2}, {"minAvailable": 2}),
        ({"minAvailable": "50%"}, {"minAvailable": "50%"}),
    ],
)
def test_the_budget_covers_exactly_the_deployments_pods_and_is_owned_by_the_pool(
    budget: dict[str, Any], spec: dict[str, Any]
) -> None:
    pool = _pool(budget)
    pdb = build_pod_disruption_budget(pool)
    deployment = build_deployment(pool, default_image="worker:1", replicas=2)

    assert pdb is not None
    assert (pdb["apiVersion"], pdb["kind"]) == ("policy/v1", "PodDisruptionBudget")
    assert pdb["metadata"]["name"] == deployment["metadata"]["name"]
    assert pdb["metadata"]["namespace"] == "billing"
    assert pdb["spec"] == {**spec, "selector": deployment["spec"]["selector"]}
    assert pdb["spec"]["selector"] == {"matchLabels": {POOL_LABEL: "inv"}}
    (owner,) = pdb["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "ExternalWorkerPool",
        "inv",
        "uid-1",
        True,
    )


def test_the_budget_does_not_change_the_deployments_template_hash() -> None:
    """Adding a budget must not roll the worker pods."""
    without = build_deployment(_pool(), default_image="worker:1", replicas=2)
    with_budget = build_deployment(
        _pool({"maxUnavailable": 1}), default_image="worker:1", replicas=2
    )
    assert without["metadata"]["annotations"] == with_budget["metadata"]["annotations"]


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        ({}, "exactly one of maxUnavailable, minAvailable"),
        ({"maxUnavailable": 1, "minAvailable": 1}, "exactly one of maxUnavailable, minAvailable"),
        ({"maxUnavailable": -1}, "at least 0"),
        ({"minAvailable": "half"}, "neither a count nor a percentage"),
        ({"minAvailable": "5"}, "neither a count nor a percentage"),
    ],
)
def test_a_bad_budget_is_a_spec_error_that_names_it(budget: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message) as caught:
        _pool(budget)
    assert "podDisruptionBudget" in str(caught.value)
