"""An idle pool costs the API server nothing: once measured and reported, ticks write nothing.

The operator measures an idle pool every `pollingInterval`; while nothing a user can see changes
(backlog, replicas, conditions), its status stays as written (`status.keep_heartbeats`), so the
pool object's resourceVersion, and its Deployment's, stand still. Every write would move them; and
the API server's own count of requests (`apiserver_request_total`) shows no write of a pool, its
status, a Deployment, its /scale or a PodDisruptionBudget meanwhile.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from kubernetes import client as k8s_client

from localstack.apiserver_requests import parse
from localstack.cluster import LocalCluster
from localstack.operator_process import OperatorProcess
from tests.support.emulator import FlowableEmulator
from tests.support.waiting import poll_until

from .conftest import condition, create_pool, deployment_replicas, emulated_pool, read_pool

pytestmark = pytest.mark.timeout(300)


async def test_an_idle_pool_makes_no_write_over_several_intervals_and_wakes_on_work(
    operator: OperatorProcess,
    emulator: FlowableEmulator,
    api_client: Any,
    namespace: str,
    cluster: LocalCluster,
) -> None:
    spec = emulated_pool(emulator, "quiet:1:1", 0, {"maxReplicas": 3, "pollingInterval": "1s"})
    create_pool(api_client, namespace, "quiet", spec)

    def settled() -> bool:
        pool = read_pool(api_client, namespace, "quiet")
        return condition(pool, "Ready").get("reason") == "Idle"

    poll_until(settled, timeout=60)
    await asyncio.sleep(3)  # let the first writes land
    apps = k8s_client.AppsV1Api(api_client)
    before = (
        read_pool(api_client, namespace, "quiet")["metadata"]["resourceVersion"],
        apps.read_namespaced_deployment("quiet-worker", namespace).metadata.resource_version,
    )
    probes_before = _probes(emulator)
    writes_before = _writes(cluster)
    await asyncio.sleep(8)  # eight polling intervals
    writes = _writes(cluster) - writes_before
    after = (
        read_pool(api_client, namespace, "quiet")["metadata"]["resourceVersion"],
        apps.read_namespaced_deployment("quiet-worker", namespace).metadata.resource_version,
    )
    assert _probes(emulator) - probes_before >= 5, "the pool was not measured meanwhile"
    assert after == before, "an idle pool wrote to the API server"
    assert not +writes, f"the API server counted writes: {dict(writes)}"
    # Work arrives: the next tick writes and scales.
    for _ in range(4):
        emulator.create_job(spec["topic"], element_id="check", definition_id="quiet:1:1")
    poll_until(lambda: deployment_replicas(api_client, namespace, "quiet-worker") == 2,
               timeout=30)


def _probes(emulator: FlowableEmulator) -> int:
    return len(emulator.requests(endpoint="listJobs"))


# What only the operator writes (the controller manager writes deployments/status, and Events
# come from everyone, so neither is counted here). DELETE is not counted either: the counter has
# no namespace label, and the namespace controller and garbage collector remove earlier tests'
# pools, Deployments and budgets at any moment (CI caught one of each in the window); an idle
# pool's operator deletes nothing, and a DELETE of this pool's objects would fail the reads above.
OPERATOR_WRITES = {
    "externalworkerpools",
    "externalworkerpools/status",
    "deployments",
    "deployments/scale",
    "poddisruptionbudgets",
}


def _writes(cluster: LocalCluster) -> Counter[tuple[str, str]]:
    status, text = cluster.api("GET", "/metrics")
    assert status == 200, f"kube-apiserver /metrics answered {status}"
    return Counter(
        {
            (verb, resource): count
            for (verb, resource), count in parse(str(text)).items()
            if resource in OPERATOR_WRITES and verb in {"POST", "PUT", "PATCH", "APPLY"}
        }
    )
