"""The operator end to end: real API server, real Flowable, real worker processes.

Backlog appears -> the operator scales the worker Deployment up -> its pods become `flowable-worker`
processes -> they drain the backlog -> after the cooldown the pool is back at zero; every process
instance finished exactly once (Flowable's history says so). Plus what must never happen: an
unreachable engine scaling a busy pool down, a bad spec crashing anything.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from localstack.podrunner import PodRunner
from tests.support.emulator import FlowableEmulator
from tests.support.emulator.faults import FaultKind
from tests.support.fault_ledger import FaultLedger
from tests.support.real_flowable import RealFlowable
from tests.support.waiting import poll_until

from .conftest import (
    OperatorProcess,
    ReplicaWatch,
    condition,
    create_pool,
    deployment_replicas,
    events_for,
    process_worker,
    read_pool,
)

pytestmark = pytest.mark.timeout(600)


def _topic() -> str:
    return f"e2e-{uuid.uuid4().hex[:8]}"


async def _finished(real: RealFlowable, definition_id: str) -> set[str]:
    async with httpx.AsyncClient(base_url=real.base_url, timeout=30) as http:
        page = (
            await http.get(
                "/process-api/history/historic-process-instances",
                params={"processDefinitionId": definition_id, "finished": "true", "size": 10000},
            )
        ).json()
    return {row["id"] for row in page["data"]}


async def test_backlog_scales_workers_up_drains_and_cools_down_to_zero(
    operator: OperatorProcess,
    podrunner: PodRunner,
    real_flowable: RealFlowable,
    api_client: Any,
    namespace: str,
    tmp_path: Path,
) -> None:
    topic = _topic()
    handled = tmp_path / "handled.log"
    # Deploy the model and make the backlog before the pool exists: discovery must find it.
    # An element id of its own: one no other model in the session gives another topic, so
    # discovery counts it with one selector for every definition whatever ran before.
    created = await real_flowable.create_jobs(topic, 48, element_id=f"invoice_{topic[4:]}")
    definition_id = created[0].definition_id
    create_pool(
        api_client,
        namespace,
        "invoices",
        {
            "engine": {"url": real_flowable.base_url},
            "topic": topic,
            "worker": process_worker(
                "tests.e2e.handlers:work",
                handled,
                concurrency=2,
                lockDuration="PT30S",
                terminationGracePeriodSeconds=10,
            ),
            "scaling": {
                "maxReplicas": 4,
                "pollingInterval": "1s",
                "cooldownPeriod": "3s",
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 2}},
            },
        },
    )
    watch = ReplicaWatch(api_client, namespace, "invoices-worker")
    try:
        # 48 jobs at 2 per replica recommend 24; activation goes 0 -> 4 (maxReplicas) at once.
        poll_until(
            lambda: deployment_replicas(api_client, namespace, "invoices-worker") == 4, timeout=60
        )
        poll_until(lambda: len(podrunner.running(namespace)) >= 1, timeout=60)

        async def all_done() -> bool:
            return len(await _finished(real_flowable, definition_id)) == len(created)

        deadline = asyncio.get_running_loop().time() + 180
        while not await all_done():
            assert asyncio.get_running_loop().time() < deadline, (
                f"backlog not drained; operator log:\n{operator.log()[-3000:]}"
            )
            await asyncio.sleep(0.5)
        # Idle for the cooldown, then back to zero, with no process left behind.
        poll_until(
            lambda: deployment_replicas(api_client, namespace, "invoices-worker") == 0, timeout=60
        )
        poll_until(lambda: not podrunner.running(namespace), timeout=60)
    finally:
        seen = watch.stop()
    assert seen[0] == 0 or seen[0] == 4, seen
    assert max(seen) == 4
    assert seen[-1] == 0

    runs = Counter(line.split()[0] for line in handled.read_text().splitlines())
    assert set(runs) == {c.instance_id for c in created}
    assert max(runs.values()) == 1, f"handled twice: {[i for i, n in runs.items() if n > 1]}"
    assert podrunner.failures() == {}

    pool = read_pool(api_client, namespace, "invoices")
    status = pool["status"]
    assert status["observedGeneration"] == pool["metadata"]["generation"]
    assert {k: status["backlog"][k] for k in ("unlocked", "locked", "stale")} == {
        "unlocked": 0, "locked": 0, "stale": False,
    }
    assert status["replicas"] == 0
    assert status["selectors"] == [{"topic": topic, "elementId": created[0].element_id}]
    assert condition(pool, "Ready")["status"] == "True"
    assert condition(pool, "Active")["status"] == "False"
    assert condition(pool, "EngineReachable")["status"] == "True"
    reasons = [reason for _type, reason, _msg in events_for(api_client, namespace, "invoices")]
    assert "Activated" in reasons
    assert "CooledDown" in reasons
    metrics = operator.metrics()
    assert 'flowable_pool_desired_replicas{namespace="' + namespace in metrics


@pytest.mark.fault("engine-5xx-under-a-busy-pool")
async def test_an_unreachable_engine_never_scales_a_busy_pool_down(
    operator: OperatorProcess,
    emulator: FlowableEmulator,
    api_client: Any,
    namespace: str,
    fault_ledger: FaultLedger,
) -> None:
    """Fault injection (the emulator's job): every probe answers 503 for a while."""
    topic = _topic()
    jobs = [
        emulator.create_job(topic, element_id="check", definition_id="bill:1:1") for _ in range(6)
    ]
    assert jobs
    create_pool(
        api_client,
        namespace,
        "billing",
        {
            "engine": {"url": emulator.base_url},
            "topic": topic,
            "backlog": {"selectors": [{"elementId": "check", "processDefinitionId": "bill:1:1"}]},
            # Pods stay kwok pods (no process): this test is about the operator alone.
            "worker": {"handler": {"python": "tests.e2e.handlers:work"}, "concurrency": 2},
            "scaling": {
                "maxReplicas": 5,
                "pollingInterval": "1s",
                "cooldownPeriod": "1s",
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}},
            },
        },
    )
    poll_until(
        lambda: deployment_replicas(api_client, namespace, "billing-worker") == 3, timeout=60
    )
    fault = emulator.inject_fault(FaultKind.SERVER_ERROR, status=503, path_prefix="/jobs")
    try:
        # More than three failed probes: the status counts them up to 3, then says "3+" and
        # stops moving (an engine that stays down costs no status PATCH per tick).
        poll_until(
            lambda: "3+ in a row" in str(read_pool(api_client, namespace, "billing")["status"]),
            timeout=60,
        )
        pool = read_pool(api_client, namespace, "billing")
        assert pool["status"]["probe"]["consecutiveFailures"] == 3
        assert deployment_replicas(api_client, namespace, "billing-worker") == 3
        assert condition(pool, "EngineReachable")["status"] == "False"
        assert condition(pool, "Active")["status"] == "Unknown"
        assert "503" in pool["status"]["probe"]["lastError"]
        assert fault.hits >= 5
    finally:
        emulator.clear_faults()
    fault_ledger.injected(fault.hits)
    # No job runs here (kwok pods): judged by the pool, which held its 3 replicas throughout.
    fault_ledger.count(judged=0, lost=0, duplicates=0)
    # Once the engine answers again, the pool is measured again; the jobs are still there.
    poll_until(
        lambda: (
            condition(read_pool(api_client, namespace, "billing"), "EngineReachable").get("status")
            == "True"
        ),
        timeout=60,
    )
    assert deployment_replicas(api_client, namespace, "billing-worker") == 3


async def test_a_spec_the_schema_cannot_check_is_reported_not_acted_on(
    operator: OperatorProcess, api_client: Any, namespace: str
) -> None:
    create_pool(
        api_client,
        namespace,
        "broken",
        {
            "engine": {"url": "http://127.0.0.1:9"},
            "topic": "anything",
            "worker": {
                "handler": {"python": "x:y"},
                "lockDuration": "PT1M",
                "handlerTimeout": "PT2M",
            },
        },
    )

    def reported() -> dict[str, Any]:
        return condition(read_pool(api_client, namespace, "broken"), "Ready")

    ready = poll_until(lambda: reported().get("status") == "False" and reported(), timeout=60)
    assert ready["reason"] == "InvalidSpec"
    assert "handlerTimeout must be shorter than lockDuration" in ready["message"]
    warnings = [e for e in events_for(api_client, namespace, "broken") if e[0] == "Warning"]
    assert [reason for _t, reason, _m in warnings] == ["InvalidSpec"]
    assert deployment_replicas(api_client, namespace, "broken-worker") is None
