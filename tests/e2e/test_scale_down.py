"""Scaling down while a worker holds a job: the busy pod stays, the idle ones go.

The operator lists the locked jobs' owners (each worker's id is its pod name), marks every pod
with `controller.kubernetes.io/pod-deletion-cost` = the jobs it holds, then lowers the replicas;
the real ReplicaSet controller then removes the idle pods. The long job is started once and
finished once, by the pod that acquired it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client

from localstack.operator_process import OperatorProcess
from localstack.podrunner import PodRunner
from tests.support.real_flowable import RealFlowable
from tests.support.waiting import poll_until as wait_for

from .conftest import (
    create_pool,
    deployment_replicas,
    events_for,
    process_worker,
    read_pool,
)

pytestmark = pytest.mark.timeout(600)

COST = "controller.kubernetes.io/pod-deletion-cost"


async def test_scale_down_keeps_the_pod_that_holds_a_job(
    operator: OperatorProcess,
    podrunner: PodRunner,
    real_flowable: RealFlowable,
    api_client: Any,
    namespace: str,
    tmp_path: Path,
) -> None:
    topic = f"e2e-{uuid.uuid4().hex[:8]}"
    handled = tmp_path / "handled.log"
    (long_job,) = await real_flowable.create_jobs(topic, 1, variables={"seconds": 20})
    short = await real_flowable.create_jobs(topic, 2, variables={"seconds": 0.2})
    create_pool(
        api_client,
        namespace,
        "ledger",
        {
            "engine": {"url": real_flowable.base_url},
            "topic": topic,
            "worker": process_worker(
                "tests.e2e.handlers:work_as_told",
                handled,
                concurrency=1,
                lockDuration="PT2M",
                terminationGracePeriodSeconds=6,
            ),
            "scaling": {
                "maxReplicas": 3,
                "pollingInterval": "1s",
                "cooldownPeriod": "60s",
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}},
            },
        },
    )
    # Three jobs at one per replica: 0 -> 3. The short ones finish; the long one stays locked.
    wait_for(lambda: deployment_replicas(api_client, namespace, "ledger-worker") == 3, timeout=60)
    wait_for(lambda: len(podrunner.running(namespace)) == 3, timeout=60)
    # One locked job: 3 -> 1, and the survivor must be the pod holding it.
    wait_for(lambda: deployment_replicas(api_client, namespace, "ledger-worker") == 1, timeout=60)
    wait_for(lambda: len(podrunner.running(namespace)) == 1, timeout=60)
    survivors = (
        k8s_client.CoreV1Api(api_client)
        .list_namespaced_pod(namespace, label_selector="flowable-worker.io/pool=ledger")
        .items
    )
    live = [p for p in survivors if p.metadata.deletion_timestamp is None]
    assert len(live) == 1
    survivor = live[0]

    def long_job_done() -> bool:
        return f"{long_job.instance_id} {survivor.metadata.name} done" in _lines(handled)

    deadline = asyncio.get_running_loop().time() + 60
    while not long_job_done():
        assert asyncio.get_running_loop().time() < deadline, _lines(handled)
        await asyncio.sleep(0.5)

    runs = Counter((line.split()[0], line.split()[2]) for line in _lines(handled))
    assert runs[(long_job.instance_id, "start")] == 1, "the long job was cut short and redone"
    assert all(runs[(job.instance_id, "done")] == 1 for job in [long_job, *short])
    assert (survivor.metadata.annotations or {}).get(COST) == "1"
    status = read_pool(api_client, namespace, "ledger")["status"]
    assert status["replicas"] == 1
    assert "ScaleDown" in [reason for _t, reason, _m in events_for(api_client, namespace, "ledger")]


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []
