"""Scale-target conflicts decided from objects as the real API server returns them.

The decision is unit-tested in tests/unit/operator/test_conflicts.py; here pools and an
autoscaling/v2 HPA are created on the API server and read back, so the claims are built from the
server's own shapes (creationTimestamp format, defaulted scaleTargetRef fields, uids).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client as k8s_client

from flowable_worker_operator.conflicts import Claim, hpa_claim, pool_claim, rival
from flowable_worker_operator.spec import GROUP, PLURAL, VERSION
from tests.cluster.test_targets import create_pool, pool_crd  # noqa: F401  # a fixture

pytestmark = pytest.mark.cluster


def claims(api_client: Any, namespace: str) -> dict[str, Claim]:
    """Every claim in the namespace, by name, from the API server's lists."""
    custom: Any = k8s_client.CustomObjectsApi(api_client)
    autoscaling: Any = k8s_client.AutoscalingV2Api(api_client)
    pools = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
    hpas = autoscaling.list_namespaced_horizontal_pod_autoscaler(namespace)
    found = [pool_claim(p) for p in pools]
    found += [hpa_claim(api_client.sanitize_for_serialization(h)) for h in hpas.items]
    return {c.name: c for c in found if c is not None}


def test_pools_and_an_hpa_on_the_api_server(
    api_client: Any,
    namespace: str,
    pool_crd: None,  # noqa: F811
) -> None:
    create_pool(api_client, namespace, "first", {"worker": {"handler": {"python": "m:f"}}})
    time.sleep(1.1)  # creationTimestamp has a resolution of one second
    scaled = {"scaleTargetRef": {"name": "first-worker"}, "scaling": {"jobsPerReplica": 2}}
    create_pool(api_client, namespace, "second", scaled)
    legacy = {"scaleTargetRef": {"name": "legacy"}, "scaling": {"jobsPerReplica": 2}}
    create_pool(api_client, namespace, "third", legacy)
    k8s_client.AutoscalingV2Api(api_client).create_namespaced_horizontal_pod_autoscaler(
        namespace,
        {
            "metadata": {"name": "legacy-hpa"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "legacy"},
                "maxReplicas": 3,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 80},
                        },
                    }
                ],
            },
        },
    )

    every = claims(api_client, namespace)
    assert set(every) == {"first", "second", "third", "legacy-hpa"}
    everything = list(every.values())
    # "second" scales first's own Deployment: the older pool keeps it.
    assert rival(every["first"], everything) is None
    assert rival(every["second"], everything) == every["first"]
    # "third" scales what an HPA scales: the HPA keeps it, although younger.
    assert rival(every["third"], everything) == every["legacy-hpa"]
