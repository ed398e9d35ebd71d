"""Faults on the operator's side: the API server restarts mid-scale, the acting operator of two is
SIGKILLed mid-scale, the engine answers with huge, ill-typed or HTML bodies, and credentials go
wrong then right. Each runs the real operator process against the real API server.

Where jobs run (real Flowable, worker pods as `flowable-worker` processes), Flowable's history
judges: every instance's external-worker task finished exactly once. Where the engine is the
emulator (answers shaped at will), the judge is what the pool did: it held its replicas while
the engine misbehaved, said so in its status without repeating what the engine sent, and scaled
again once the engine behaved.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client

from localstack.cluster import LocalCluster
from localstack.operator_process import OperatorProcess, run_operator
from localstack.podrunner import PodRunner
from tests.support.backend import CreatedJob
from tests.support.emulator import Fault, FaultKind, FlowableEmulator
from tests.support.fault_ledger import FaultLedger
from tests.support.real_flowable import RealFlowable
from tests.support.waiting import poll_until

from .conftest import (
    condition,
    create_pool,
    deployment_replicas,
    emulated_pool,
    events_for,
    process_worker,
    read_pool,
)

pytestmark = pytest.mark.timeout(600)

LEASE_DURATION = 15.0



async def _wait_all_done(
    real: RealFlowable, created: Sequence[CreatedJob], within: float, log: str
) -> None:
    deadline = time.monotonic() + within
    wanted = {c.instance_id for c in created}
    while set(await real.task_completions(created)) < wanted:
        assert time.monotonic() < deadline, f"backlog not drained; operator log:\n{log[-3000:]}"
        await asyncio.sleep(0.5)


def _busy_pool(real: RealFlowable, topic: str, handled: Path) -> dict[str, Any]:
    """A pool on a topic of the real Flowable whose pods run `flowable-worker` processes."""
    return {
        "engine": {"url": real.base_url},
        "topic": topic,
        "worker": process_worker(
            "tests.e2e.handlers:work", handled, concurrency=2, lockDuration="PT30S",
            terminationGracePeriodSeconds=10,
        ),
        "scaling": {
            "maxReplicas": 4,
            "pollingInterval": "1s",
            "cooldownPeriod": "3s",
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 2}},
        },
    }


@pytest.mark.fault("api-server-restart-mid-scale")
async def test_an_api_server_restart_mid_scale_loses_no_job_and_the_pool_goes_on(
    cluster: LocalCluster,
    operator: OperatorProcess,
    podrunner: PodRunner,
    real_flowable: RealFlowable,
    api_client: Any,
    namespace: str,
    tmp_path: Path,
    fault_ledger: FaultLedger,
) -> None:
    topic = f"e2e-{uuid.uuid4().hex[:8]}"
    handled = tmp_path / "handled.log"
    created = await real_flowable.create_jobs(topic, 40, element_id=f"f_{topic[4:]}")
    create_pool(api_client, namespace, "restarted", _busy_pool(real_flowable, topic, handled))

    def replicas() -> int | None:
        return deployment_replicas(api_client, namespace, "restarted-worker")

    poll_until(lambda: (replicas() or 0) >= 1, timeout=60)  # mid-scale: up, not yet drained
    down = cluster.restart_apiserver(down_seconds=2)
    fault_ledger.injected()
    fault_ledger.note(f"kube-apiserver unreachable for {down:.1f}s")
    await _wait_all_done(real_flowable, created, 240, operator.log())
    # The operator's watches resumed: it saw the backlog drain and cools the pool to zero.
    poll_until(lambda: replicas() == 0, timeout=90)
    poll_until(lambda: not podrunner.running(namespace), timeout=60)
    completions = await real_flowable.task_completions(created)
    fault_ledger.judge([c.instance_id for c in created], completions)
    assert operator.healthy(), operator.log()[-3000:]
    assert set(completions.values()) == {1}
    assert len(completions) == len(created)
    pool = read_pool(api_client, namespace, "restarted")
    assert pool["status"]["observedGeneration"] == pool["metadata"]["generation"]
    assert condition(pool, "Ready")["status"] == "True"


@pytest.mark.fault("acting-operator-sigkilled-mid-scale")
async def test_the_acting_operator_of_two_sigkilled_mid_scale_the_standby_finishes_the_job(
    cluster: LocalCluster,
    crd: Path,
    podrunner: PodRunner,
    real_flowable: RealFlowable,
    api_client: Any,
    namespace: str,
    tmp_path: Path,
    fault_ledger: FaultLedger,
) -> None:
    topic = f"e2e-{uuid.uuid4().hex[:8]}"
    handled = tmp_path / "handled.log"
    created = await real_flowable.create_jobs(topic, 40, element_id=f"h_{topic[4:]}")
    args = ["--leader-election", "--leader-election-namespace", namespace]

    def replicas() -> int | None:
        return deployment_replicas(api_client, namespace, "ha-worker")

    with contextlib.ExitStack() as stack:
        operators = [
            stack.enter_context(
                run_operator(cluster.kubeconfig, namespace, tmp_path / name, extra_args=args)
            )
            for name in ("a.log", "b.log")
        ]
        create_pool(api_client, namespace, "ha", _busy_pool(real_flowable, topic, handled))
        poll_until(lambda: (replicas() or 0) >= 1, timeout=60)
        leader = next(op for op in operators if _leader_gauge(op) == 1.0)
        (standby,) = [op for op in operators if op is not leader]
        assert _leader_gauge(standby) == 0.0  # one acts at a time
        killed_at = time.monotonic()
        leader.crash()  # SIGKILL: the Lease is not released
        fault_ledger.injected()
        poll_until(lambda: _leader_gauge(standby) == 1.0, timeout=2 * LEASE_DURATION, interval=0.2)
        takeover = time.monotonic() - killed_at
        fault_ledger.note(f"the standby acted {takeover:.1f}s after the SIGKILL")
        await _wait_all_done(real_flowable, created, 240, standby.log())
        poll_until(lambda: replicas() == 0, timeout=90)
        poll_until(lambda: not podrunner.running(namespace), timeout=60)
    completions = await real_flowable.task_completions(created)
    fault_ledger.judge([c.instance_id for c in created], completions)
    assert takeover <= 2 * LEASE_DURATION
    assert set(completions.values()) == {1}
    assert len(completions) == len(created)


def _leader_gauge(operator: OperatorProcess) -> float | None:
    with contextlib.suppress(OSError):
        found = re.search(r"^flowable_pool_leader (\S+)$", operator.metrics(), re.MULTILINE)
        return float(found[1]) if found else None
    return None


MARKER = "FWO-LEAK-MARKER-7f3a"
HOSTILE_ANSWERS: dict[str, Callable[[], Fault]] = {
    # 40 MB of JSON (built only when used): a proxy gone wrong, or a hostile endpoint.
    "engine-answers-a-huge-body": lambda: Fault(
        FaultKind.ANSWER, endpoint="listJobs", status=200,
        body='{"data": [], "total": 1, "padding": "' + MARKER + "x" * 40_000_000 + '"}',
    ),
    "engine-answers-wrong-types": lambda: Fault(
        FaultKind.ANSWER, endpoint="listJobs", status=200,
        body=json.dumps({"data": MARKER, "total": {"n": MARKER}, "start": "zero"}),
    ),
    "engine-answers-html": lambda: Fault(
        FaultKind.ANSWER, endpoint="listJobs", status=200, content_type="text/html",
        body=f"<html><body><h1>Internal wiki</h1><p>{MARKER} secret page</p></body></html>",
    ),
}


@pytest.mark.parametrize(
    "kind",
    [pytest.param(kind, marks=pytest.mark.fault(kind)) for kind in HOSTILE_ANSWERS],
)
async def test_hostile_engine_answers_hold_the_pool_and_never_reach_its_status(
    kind: str,
    operator: OperatorProcess,
    emulator: FlowableEmulator,
    api_client: Any,
    namespace: str,
    fault_ledger: FaultLedger,
) -> None:
    spec = emulated_pool(emulator, f"{kind}:1:1", 6, {"maxReplicas": 5, "pollingInterval": "1s"})
    topic = spec["topic"]
    name = "hostile"

    def replicas() -> int | None:
        return deployment_replicas(api_client, namespace, f"{name}-worker")

    create_pool(api_client, namespace, name, spec)
    poll_until(lambda: replicas() == 3, timeout=60)
    fault = emulator.inject(HOSTILE_ANSWERS[kind]())
    try:
        poll_until(lambda: _probe_failures(api_client, namespace, name) >= 3, timeout=60)
        for _ in range(3):  # a bad answer never reads as "no backlog": the pool holds
            assert replicas() == 3
            await asyncio.sleep(1)
        pool = read_pool(api_client, namespace, name)
        events = events_for(api_client, namespace, name)
    finally:
        emulator.clear_faults()
    fault_ledger.injected(fault.hits)
    fault_ledger.count(judged=0, lost=0, duplicates=0)
    fault_ledger.note(f"engine reachable: {condition(pool, 'EngineReachable').get('status')}")
    assert MARKER not in json.dumps(pool)
    assert MARKER not in json.dumps(events)
    assert MARKER not in operator.metrics()
    assert condition(pool, "EngineReachable")["status"] == "False"
    # The engine behaves again: more backlog, more replicas.
    for _ in range(4):
        emulator.create_job(topic, element_id="check", definition_id=f"{kind}:1:1")
    poll_until(lambda: replicas() == 5, timeout=60)
    assert operator.healthy()


def _probe_failures(api_client: Any, namespace: str, name: str) -> int:
    status = read_pool(api_client, namespace, name).get("status") or {}
    return int((status.get("probe") or {}).get("consecutiveFailures") or 0)


@pytest.mark.fault("credentials-wrong-then-right")
async def test_secret_values_never_surface_in_logs_events_status_or_metrics(
    cluster: LocalCluster,
    operator: OperatorProcess,
    api_client: Any,
    namespace: str,
    fault_ledger: FaultLedger,
) -> None:
    wrong = f"wrong-{uuid.uuid4().hex}"
    right = f"right-{uuid.uuid4().hex}"
    with FlowableEmulator(username="flowable", password=right) as guarded:
        spec = emulated_pool(guarded, "guarded:1:1", 4, {"maxReplicas": 5,
                                                         "pollingInterval": "1s"})
        spec["engine"]["authSecretRef"] = {"name": "engine-credentials"}
        core = k8s_client.CoreV1Api(api_client)
        core.create_namespaced_secret(namespace, k8s_client.V1Secret(
            metadata=k8s_client.V1ObjectMeta(name="engine-credentials"),
            string_data={"username": "flowable", "password": wrong + "\n"},
        ))
        create_pool(api_client, namespace, "guarded", spec)
        poll_until(lambda: _probe_failures(api_client, namespace, "guarded") >= 2, timeout=60)
        refused = sum(1 for r in guarded.requests() if r.status == 401)
        fault_ledger.injected(refused)
        core.patch_namespaced_secret("engine-credentials", namespace, {
            "data": {"password": base64.b64encode(right.encode()).decode()},
        })
        poll_until(
            lambda: deployment_replicas(api_client, namespace, "guarded-worker") == 2, timeout=60
        )
        pool = read_pool(api_client, namespace, "guarded")
        events = events_for(api_client, namespace, "guarded")
        metrics = operator.metrics()
    fault_ledger.count(judged=0, lost=0, duplicates=0)
    for secret in (wrong, right):
        assert secret not in operator.log()
        assert secret not in json.dumps(pool)
        assert secret not in json.dumps(events)
        assert secret not in metrics
    assert condition(pool, "EngineReachable")["status"] == "True"
