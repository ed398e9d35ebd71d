"""Issue 10 on the real local cluster: a Secret fixed under running pods rolls them, and a pool
that cannot see its backlog (credentials refused, an engine that hangs) says so. Issue 11: the
Secrets are read from the operator's cache (`secret_cache`), not at every tick, as the API
server's own request counters (`apiserver_request_total`) show, and a Secret created after its
pool is still picked up within the documented 30 s.

The engine is the emulator (it answers 401 to a wrong password, and hangs on a LATENCY fault);
the operator is the real process against the real API server and controller-manager, whose
Deployment controller does the rolling. Pods are kwok pods: the test is about what the operator
writes, not about jobs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from typing import Any

import pytest
from kubernetes import client as k8s_client

from flowable_worker_operator.secret_cache import REFRESH_SECONDS
from localstack.apiserver_requests import parse
from localstack.cluster import LocalCluster
from localstack.operator_process import OperatorProcess
from tests.support.emulator import FaultKind, FlowableEmulator
from tests.support.waiting import poll_until

from .conftest import condition, create_pool, deployment_replicas, emulated_pool, read_pool

pytestmark = pytest.mark.timeout(300)

SECRETS_HASH = "flowable-worker.io/secrets-hash"


def _template_annotations(api_client: Any, namespace: str, name: str) -> dict[str, str]:
    deployment = k8s_client.AppsV1Api(api_client).read_namespaced_deployment(name, namespace)
    return dict(deployment.spec.template.metadata.annotations or {})


def _replica_sets(api_client: Any, namespace: str) -> list[Any]:
    return list(k8s_client.AppsV1Api(api_client).list_namespaced_replica_set(namespace).items)


def _events(api_client: Any, namespace: str, name: str) -> list[tuple[str, str, str]]:
    events = k8s_client.CoreV1Api(api_client).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name}"
    )
    return [(e.type, e.reason, e.message) for e in events.items]


async def test_a_secret_fixed_under_running_pods_rolls_them_without_showing_its_value(
    operator: OperatorProcess, api_client: Any, namespace: str
) -> None:
    wrong = f"wrong-{uuid.uuid4().hex}"
    right = f"right-{uuid.uuid4().hex}"
    core = k8s_client.CoreV1Api(api_client)
    with FlowableEmulator(username="flowable", password=right) as guarded:
        spec = emulated_pool(
            guarded, "roll:1:1", 2, {"minReplicas": 1, "maxReplicas": 3, "pollingInterval": "1s"}
        )
        spec["engine"]["authSecretRef"] = {"name": "engine-credentials"}
        core.create_namespaced_secret(
            namespace,
            k8s_client.V1Secret(
                metadata=k8s_client.V1ObjectMeta(name="engine-credentials"),
                string_data={"username": "flowable", "password": wrong},
            ),
        )
        create_pool(api_client, namespace, "rolled", spec)
        poll_until(
            lambda: deployment_replicas(api_client, namespace, "rolled-worker") == 1, timeout=60
        )
        # Pods started with the wrong password; the pool cannot see its backlog and says so.
        poll_until(
            lambda: condition(read_pool(api_client, namespace, "rolled"), "Ready").get("reason")
            == "BacklogUnknown",
            timeout=60,
        )
        auth = [e for e in _events(api_client, namespace, "rolled") if e[1] == "EngineAuthFailed"]
        assert len(auth) == 1, auth
        assert auth[0][0] == "Warning"
        assert f"Secret {namespace}/engine-credentials" in auth[0][2]
        before = _template_annotations(api_client, namespace, "rolled-worker")[SECRETS_HASH]
        assert len(_replica_sets(api_client, namespace)) == 1

        core.patch_namespaced_secret(
            "engine-credentials",
            namespace,
            {"data": {"password": base64.b64encode(right.encode()).decode()}},
        )
        poll_until(
            lambda: (
                _template_annotations(api_client, namespace, "rolled-worker").get(SECRETS_HASH)
                != before
            ),
            timeout=60,
        )
        # The Deployment controller rolls: a second ReplicaSet, whose pods replace the old ones.
        poll_until(lambda: len(_replica_sets(api_client, namespace)) == 2, timeout=60)
        poll_until(
            lambda: all(
                (rs.spec.replicas or 0) == 0
                for rs in _replica_sets(api_client, namespace)
                if (rs.spec.template.metadata.annotations or {}).get(SECRETS_HASH) == before
            ),
            timeout=60,
        )
        poll_until(
            lambda: condition(read_pool(api_client, namespace, "rolled"), "Ready").get("status")
            == "True",
            timeout=60,
        )
        deployment = k8s_client.AppsV1Api(api_client).read_namespaced_deployment(
            "rolled-worker", namespace
        )
        written = json.dumps(api_client.sanitize_for_serialization(deployment))
        sets = _replica_sets(api_client, namespace)
        written += json.dumps([api_client.sanitize_for_serialization(rs) for rs in sets])
    for value in (wrong, right):
        for shown in (value, base64.b64encode(value.encode()).decode()):
            assert shown not in written
    pool = read_pool(api_client, namespace, "rolled")
    assert pool["status"]["backlog"]["stale"] is False


async def test_a_hanging_engine_is_unreachable_and_the_pool_not_ready_while_it_holds(
    operator: OperatorProcess, emulator: FlowableEmulator, api_client: Any, namespace: str
) -> None:
    spec = emulated_pool(emulator, "hang:1:1", 6, {"maxReplicas": 5, "pollingInterval": "1s"})
    spec["engine"]["timeoutSeconds"] = 1
    create_pool(api_client, namespace, "hanging", spec)
    poll_until(
        lambda: deployment_replicas(api_client, namespace, "hanging-worker") == 3, timeout=60
    )
    fault = emulator.inject_fault(FaultKind.LATENCY, delay_seconds=30, path_prefix="/jobs")
    try:
        poll_until(
            lambda: condition(read_pool(api_client, namespace, "hanging"), "EngineReachable").get(
                "status"
            )
            == "False",
            timeout=30,
        )
        pool = read_pool(api_client, namespace, "hanging")
        ready = condition(pool, "Ready")
        assert (ready["status"], ready["reason"]) == ("False", "BacklogUnknown"), ready
        assert "holding 3 replicas" in ready["message"]
        assert pool["status"]["backlog"]["stale"] is True
        assert pool["status"]["backlog"]["unlocked"] == 6  # the last measurement, kept
        assert deployment_replicas(api_client, namespace, "hanging-worker") == 3
        assert fault.hits >= 1
    finally:
        emulator.clear_faults()
    poll_until(
        lambda: condition(read_pool(api_client, namespace, "hanging"), "Ready").get("status")
        == "True",
        timeout=60,
    )


INTERVALS = 20
"""Polling intervals (of 1 s) over which a test counts the API server's Secret reads."""


def _secret_reads(cluster: LocalCluster) -> int:
    """GETs of Secrets the API server has served so far, by anyone (the operator is the only one
    reading Secrets on this cluster: the controllers list and watch theirs)."""
    status, text = cluster.api("GET", "/metrics")
    assert status == 200, f"kube-apiserver /metrics answered {status}"
    return parse(str(text))[("GET", "secrets")]


def _engine_message(api_client: Any, namespace: str, name: str) -> str:
    reachable = condition(read_pool(api_client, namespace, name), "EngineReachable")
    return str(reachable.get("message") or "") if reachable.get("status") == "False" else ""


async def test_a_missing_secret_costs_a_few_reads_not_one_per_tick_and_is_picked_up_once_created(
    operator: OperatorProcess,
    emulator: FlowableEmulator,
    api_client: Any,
    namespace: str,
    cluster: LocalCluster,
) -> None:
    spec = emulated_pool(emulator, "late:1:1", 0, {"maxReplicas": 3, "pollingInterval": "1s"})
    spec["engine"]["authSecretRef"] = {"name": "late-credentials"}
    create_pool(api_client, namespace, "late", spec)
    missing = f"Secret {namespace}/late-credentials not found"
    poll_until(lambda: missing in _engine_message(api_client, namespace, "late"), timeout=60)
    before = _secret_reads(cluster)
    await asyncio.sleep(INTERVALS)
    reads = _secret_reads(cluster) - before
    # Read at the first tick, then 5, 15, 35 s after (secret_cache): 2 in this window. Reading
    # at every tick, for the probe and again for the pod template, was 2 a tick: about 40.
    assert reads <= 4, f"{reads} GETs of Secrets over {INTERVALS} ticks of one pool"
    assert missing in _engine_message(api_client, namespace, "late")  # still ticking, still told

    hash_before = _template_annotations(api_client, namespace, "late-worker")[SECRETS_HASH]
    k8s_client.CoreV1Api(api_client).create_namespaced_secret(
        namespace,
        k8s_client.V1Secret(
            metadata=k8s_client.V1ObjectMeta(name="late-credentials"),
            string_data={"username": "flowable", "password": "secret"},
        ),
    )
    created = time.monotonic()
    # Seen within the cache's refresh time, then measured at the next tick (1 s).
    poll_until(
        lambda: (
            condition(read_pool(api_client, namespace, "late"), "EngineReachable").get("status")
            == "True"
        ),
        timeout=REFRESH_SECONDS + 15,
    )
    assert time.monotonic() - created <= REFRESH_SECONDS + 1 + 5  # the bound, a margin to see it
    # The pods could not start without it: its creation changes the template, and they roll.
    poll_until(
        lambda: (
            _template_annotations(api_client, namespace, "late-worker").get(SECRETS_HASH)
            != hash_before
        ),
        timeout=15,
    )


async def test_a_found_secret_is_read_from_the_cache_not_at_every_tick(
    operator: OperatorProcess,
    emulator: FlowableEmulator,
    api_client: Any,
    namespace: str,
    cluster: LocalCluster,
) -> None:
    spec = emulated_pool(emulator, "kept:1:1", 0, {"maxReplicas": 3, "pollingInterval": "1s"})
    spec["engine"]["authSecretRef"] = {"name": "kept-credentials"}
    k8s_client.CoreV1Api(api_client).create_namespaced_secret(
        namespace,
        k8s_client.V1Secret(
            metadata=k8s_client.V1ObjectMeta(name="kept-credentials"),
            string_data={"username": "flowable", "password": "secret"},
        ),
    )
    create_pool(api_client, namespace, "kept", spec)
    poll_until(
        lambda: condition(read_pool(api_client, namespace, "kept"), "Ready").get("reason")
        == "Idle",
        timeout=60,
    )
    probes = len(emulator.requests(endpoint="listJobs"))
    before = _secret_reads(cluster)
    await asyncio.sleep(INTERVALS)
    reads = _secret_reads(cluster) - before
    assert len(emulator.requests(endpoint="listJobs")) - probes >= INTERVALS // 2, "no ticks"
    # Read again every 30 s (secret_cache.REFRESH_SECONDS): at most one in 20 s. At every tick,
    # for the probe and for the pod template, it was about 40.
    assert reads <= 2, f"{reads} GETs of Secrets over {INTERVALS} ticks of one pool"
