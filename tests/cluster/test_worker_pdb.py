"""worker.podDisruptionBudget on the real API server: the CRD's checks, and the operator's
PodDisruptionBudget created, switched between maxUnavailable and minAvailable, deleted with the
field, and never taken from someone else."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from flowable_worker_operator.manifests import POOL_LABEL
from flowable_worker_operator.spec import GROUP, PLURAL, VERSION
from flowable_worker_operator.targets import NotControlledError, ensure_pod_disruption_budget
from tests.cluster.test_targets import pool_crd, update_pool, worker_pool

pytestmark = pytest.mark.cluster

__all__ = ["pool_crd"]  # the fixture, imported for this module's tests


def _live(policy: Any, namespace: str, name: str = "inv-worker") -> Any:
    try:
        return policy.read_namespaced_pod_disruption_budget(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def test_the_budget_follows_the_pool_spec(api_client: Any, namespace: str, pool_crd: None) -> None:
    policy = k8s_client.PolicyV1Api(api_client)
    pool = worker_pool(api_client, namespace, podDisruptionBudget={"maxUnavailable": 1})

    assert ensure_pod_disruption_budget(policy, pool) == "created"
    live = _live(policy, namespace)
    assert live.spec.max_unavailable == 1
    assert live.spec.min_available is None
    assert live.spec.selector.match_labels == {POOL_LABEL: "inv"}
    (owner,) = live.metadata.owner_references
    assert (owner.kind, owner.uid, owner.controller) == ("ExternalWorkerPool", pool.uid, True)
    assert ensure_pod_disruption_budget(policy, pool) == "unchanged"

    pool = update_pool(
        api_client, pool, {"podDisruptionBudget": {"maxUnavailable": None, "minAvailable": "50%"}}
    )
    assert ensure_pod_disruption_budget(policy, pool) == "updated"
    live = _live(policy, namespace)
    assert (live.spec.min_available, live.spec.max_unavailable) == ("50%", None)

    pool = update_pool(api_client, pool, {"podDisruptionBudget": None})
    assert pool.spec.worker is not None
    assert pool.spec.worker.pod_disruption_budget is None
    assert ensure_pod_disruption_budget(policy, pool) == "deleted"
    assert _live(policy, namespace) is None
    assert ensure_pod_disruption_budget(policy, pool) == "unchanged"


def test_a_same_named_budget_of_someone_else_is_never_changed_or_deleted(
    api_client: Any, namespace: str, pool_crd: None
) -> None:
    policy = k8s_client.PolicyV1Api(api_client)
    theirs = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "inv-worker"},
        "spec": {"maxUnavailable": 3, "selector": {"matchLabels": {"app": "theirs"}}},
    }
    policy.create_namespaced_pod_disruption_budget(namespace, theirs)
    pool = worker_pool(api_client, namespace, podDisruptionBudget={"minAvailable": 1})

    with pytest.raises(NotControlledError, match="not controlled by ExternalWorkerPool inv"):
        ensure_pod_disruption_budget(policy, pool)
    pool = update_pool(api_client, pool, {"podDisruptionBudget": None})
    assert ensure_pod_disruption_budget(policy, pool) == "unchanged"
    assert _live(policy, namespace).spec.max_unavailable == 3


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        ({}, "exactly one of maxUnavailable and minAvailable"),
        (
            {"maxUnavailable": 1, "minAvailable": 1},
            "exactly one of maxUnavailable and minAvailable",
        ),
        ({"maxUnavailable": "half"}, "maxUnavailable"),
        ({"minAvailable": -1}, "minAvailable"),
    ],
)
def test_the_crd_refuses_a_bad_budget_with_a_message(
    api_client: Any, namespace: str, pool_crd: None, budget: dict[str, Any], message: str
) -> None:
    custom: Any = k8s_client.CustomObjectsApi(api_client)
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ExternalWorkerPool",
        "metadata": {"name": "bad"},
        "spec": {
            "engine": {"url": "http://flowable:8080/flowable-rest"},
            "topic": "t",
            "worker": {"handler": {"python": "m:f"}, "podDisruptionBudget": budget},
        },
    }
    with pytest.raises(ApiException) as caught:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    assert caught.value.status == 422
    assert message in caught.value.body
