"""Scaling down while a worker holds a job: the busy pod stays, the idle ones go; once no job
waits or runs, the idle replicas go at once, whatever the scale-down window; and once none waits
and none arrives, the replicas holding no job go while the others finish theirs.

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
    ReplicaWatch,
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
    live = _live_pods(api_client, namespace, "ledger")
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


async def test_idle_replicas_are_released_at_once_and_the_last_goes_after_the_cooldown(
    operator: OperatorProcess,
    podrunner: PodRunner,
    real_flowable: RealFlowable,
    api_client: Any,
    namespace: str,
    tmp_path: Path,
) -> None:
    """Three jobs at one per replica: 0 -> 3. When they are done, `releaseIdleAfter` (3 s) takes
    the pool to 1 long before the default 60 s scale-down window would let it go, the last
    replica stays warm, and the cooldown (25 s) takes it to 0. With HPA's semantics the pool
    would hold 3 until the cooldown and go 3 -> 0."""
    topic = f"e2e-{uuid.uuid4().hex[:8]}"
    handled = tmp_path / "handled.log"
    jobs = await real_flowable.create_jobs(topic, 3, variables={"seconds": 2})
    watch = ReplicaWatch(api_client, namespace, "idle-worker")
    try:
        create_pool(
            api_client,
            namespace,
            "idle",
            {
                "engine": {"url": real_flowable.base_url},
                "topic": topic,
                "worker": process_worker("tests.e2e.handlers:work_as_told", handled, concurrency=1),
                "scaling": {
                    "maxReplicas": 3,
                    "pollingInterval": "1s",
                    "cooldownPeriod": "25s",
                    "releaseIdleAfter": "3s",
                },
            },
        )
        wait_for(lambda: deployment_replicas(api_client, namespace, "idle-worker") == 3, timeout=60)

        def all_done() -> bool:
            return sum(1 for line in _lines(handled) if line.endswith(" done")) == len(jobs)

        wait_for(all_done, timeout=90)
        done_at = asyncio.get_running_loop().time()
        wait_for(lambda: deployment_replicas(api_client, namespace, "idle-worker") == 1, timeout=20)
        released_after = asyncio.get_running_loop().time() - done_at
        wait_for(lambda: deployment_replicas(api_client, namespace, "idle-worker") == 0, timeout=60)
        zero_after = asyncio.get_running_loop().time() - done_at
    finally:
        seen = watch.stop()

    assert released_after < 15, f"released {released_after:.1f}s after the work (window: 60 s)"
    assert zero_after >= 20, f"the last replica went {zero_after:.1f}s after the work"
    # 3 -> 1, not 3 -> 0 (the 0 itself was waited for above; the watch samples every 0.2 s
    # with a LIST, which a loaded machine may slow past the last change).
    assert [n for n in seen if n][-2:] == [3, 1], seen
    messages = [
        m for _t, reason, m in events_for(api_client, namespace, "idle") if reason == "ScaleDown"
    ]
    assert any("releasing idle replicas 3 -> 1" in m for m in messages), messages


async def test_replicas_holding_no_job_go_while_the_last_long_job_still_runs(
    operator: OperatorProcess,
    podrunner: PodRunner,
    real_flowable: RealFlowable,
    api_client: Any,
    namespace: str,
    tmp_path: Path,
) -> None:
    """One long job and two short ones at one per replica: 0 -> 3. No job arrives after them, so
    once the short ones are done the two replicas that hold nothing go, under the default 60 s
    scale-down window and while the long job still runs; its pod stays and finishes it once.
    Before this, the window held 3 until the long job ended and `releaseIdleAfter` had passed."""
    topic = f"e2e-{uuid.uuid4().hex[:8]}"
    handled = tmp_path / "handled.log"
    (long_job,) = await real_flowable.create_jobs(topic, 1, variables={"seconds": 40})
    short = await real_flowable.create_jobs(topic, 2, variables={"seconds": 0.2})
    create_pool(
        api_client,
        namespace,
        "tail",
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
                "releaseIdleAfter": "3s",
            },
        },
    )
    wait_for(lambda: deployment_replicas(api_client, namespace, "tail-worker") == 3, timeout=60)
    wait_for(lambda: deployment_replicas(api_client, namespace, "tail-worker") == 1, timeout=60)

    def long_job_done() -> bool:
        return any(
            line.startswith(f"{long_job.instance_id} ") and line.endswith(" done")
            for line in _lines(handled)
        )

    assert not long_job_done(), "released only after the long job ended: the window held it"
    wait_for(lambda: len(podrunner.running(namespace)) == 1, timeout=60)
    (survivor,) = _live_pods(api_client, namespace, "tail")
    wait_for(long_job_done, timeout=90)
    runs = Counter((line.split()[0], line.split()[2]) for line in _lines(handled))
    assert runs[(long_job.instance_id, "start")] == 1, "the long job was cut short and redone"
    assert f"{long_job.instance_id} {survivor.metadata.name} done" in _lines(handled)
    assert all(runs[(job.instance_id, "done")] == 1 for job in [long_job, *short])
    messages = [
        m for _t, reason, m in events_for(api_client, namespace, "tail") if reason == "ScaleDown"
    ]
    assert any(
        "held by 1 of 3 replicas" in m and "releasing the replicas that hold no job, 3 -> 1" in m
        for m in messages
    ), messages


def _live_pods(api_client: Any, namespace: str, pool: str) -> list[Any]:
    """The pool's worker pods that are not terminating."""
    pods = (
        k8s_client.CoreV1Api(api_client)
        .list_namespaced_pod(namespace, label_selector=f"flowable-worker.io/pool={pool}")
        .items
    )
    return [pod for pod in pods if pod.metadata.deletion_timestamp is None]


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []
