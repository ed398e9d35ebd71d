"""An operator that crashes and comes back: a busy pool keeps its replicas, an idle one cools down.

Fault injection is the emulator's job here (jobs created and drained at will); the operator and
the API server are real. A restarted operator has no scaling history in memory: it must neither
scale a busy pool down nor forget how long an idle pool has been idle (status.lastActiveTime).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from flowable_worker import ClientSettings, FlowableClient
from localstack.cluster import LocalCluster
from localstack.operator_process import run_operator
from tests.support.emulator import FlowableEmulator
from tests.support.fault_ledger import FaultLedger
from tests.support.waiting import poll_until

from .conftest import create_pool, deployment_replicas, emulated_pool, read_pool

pytestmark = pytest.mark.timeout(600)


@pytest.mark.fault("operator-crash-and-restart")
async def test_a_restarted_operator_holds_a_busy_pool_and_then_cools_it_down(
    cluster: LocalCluster,
    crd: Path,
    namespace: str,
    api_client: Any,
    emulator: FlowableEmulator,
    tmp_path: Path,
    fault_ledger: FaultLedger,
) -> None:
    spec = emulated_pool(
        emulator,
        "restart:1:1",
        6,
        {
            "maxReplicas": 5,
            "pollingInterval": "1s",
            "cooldownPeriod": "5s",
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}},
        },
    )
    topic = spec["topic"]

    def replicas() -> int | None:
        return deployment_replicas(api_client, namespace, "restart-worker")

    with run_operator(cluster.kubeconfig, namespace, tmp_path / "first.log") as first:
        create_pool(api_client, namespace, "restart", spec)
        poll_until(lambda: replicas() == 3, timeout=60)
        first.crash()
        fault_ledger.injected()

    with run_operator(cluster.kubeconfig, namespace, tmp_path / "second.log") as second:
        before = len(emulator.requests(endpoint="listJobs"))
        # The new operator measures again (its probes reach the engine; the status keeps the old
        # probe time while nothing else changed) and keeps all 3 replicas.
        poll_until(lambda: len(emulator.requests(endpoint="listJobs")) >= before + 4, timeout=60)
        for _ in range(5):
            assert replicas() == 3, second.log()[-3000:]
            await asyncio.sleep(1)
        # Drain the backlog behind the pool's back: it scales down, then cools down to zero.
        settings = ClientSettings(base_url=emulator.base_url)
        async with FlowableClient(settings) as client:
            jobs = await client.acquire_jobs(
                topic=topic, worker_id="drain", lock_duration="PT1M", number_of_tasks=10
            )
            assert len(jobs) == 6
            for job in jobs:
                await client.complete_job(job.id, worker_id="drain")
        idle_at = time.monotonic()
        poll_until(lambda: replicas() == 0, timeout=60)
        waited = time.monotonic() - idle_at
        status = read_pool(api_client, namespace, "restart")["status"]
        backlog = status["backlog"]
        assert (backlog["unlocked"], backlog["locked"], backlog["stale"]) == (0, 0, False)
        assert waited >= 4, f"scaled to zero {waited:.1f}s after going idle, cooldown is 5s"
    # No job runs here (kwok pods): judged by the pool, which kept its replicas across the crash.
    fault_ledger.count(judged=0, lost=0, duplicates=0)
