"""Two operators, one Lease: exactly one acts, and the other takes over when it dies.

Both run as processes with `--leader-election` against the real kube-apiserver, on one Lease in
the test's namespace; Flowable is the emulator (jobs created at will, nothing runs them, so the
backlog stays what the test makes it). The leader is SIGKILLed, as an OOM kill or a lost node
would end it: it cannot release the Lease, so the standby takes over once the Lease expires
(`renewTime + leaseDurationSeconds`, 15 s) and keeps scaling the pool. A clean stop releases it.
"""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client

from localstack.cluster import LocalCluster
from localstack.operator_process import OperatorProcess, run_operator
from tests.support.emulator import FlowableEmulator
from tests.support.waiting import poll_until

from .conftest import create_pool, deployment_replicas, emulated_pool

pytestmark = pytest.mark.timeout(600)

LEASE = "flowable-worker-operator"
LEASE_DURATION = 15.0
IDENTITY = re.compile(r"waiting for Lease \S+ as (\S+)")
LEADER_GAUGE = re.compile(r"^flowable_pool_leader (\S+)$", re.MULTILINE)


def _identity(operator: OperatorProcess) -> str:
    found = poll_until(lambda: IDENTITY.search(operator.log()), timeout=30)
    return str(found[1])


def _leader_gauge(operator: OperatorProcess) -> float | None:
    found = LEADER_GAUGE.search(operator.metrics())
    return float(found[1]) if found else None


def _lease(api_client: Any, namespace: str) -> Any:
    return k8s_client.CoordinationV1Api(api_client).read_namespaced_lease(LEASE, namespace)


def _holder(api_client: Any, namespace: str) -> str | None:
    with contextlib.suppress(k8s_client.ApiException):
        holder: str | None = _lease(api_client, namespace).spec.holder_identity
        return holder
    return None


def _pool_series(operator: OperatorProcess, pool: str) -> bool:
    """Whether this process has ticked the pool (its replicas gauge has a series)."""
    pattern = rf'^flowable_pool_replicas\{{[^}}]*pool="{re.escape(pool)}"'
    return re.search(pattern, operator.metrics(), re.MULTILINE) is not None


async def test_one_of_two_operators_acts_and_the_standby_takes_over_after_a_crash(
    cluster: LocalCluster,
    crd: Path,
    namespace: str,
    api_client: Any,
    emulator: FlowableEmulator,
    tmp_path: Path,
    record_property: Any,
) -> None:
    spec = emulated_pool(emulator, "ha:1:1", 6, {"maxReplicas": 5, "pollingInterval": "1s"})
    topic = spec["topic"]
    args = ["--leader-election", "--leader-election-namespace", namespace]

    def replicas() -> int | None:
        return deployment_replicas(api_client, namespace, "ha-worker")

    with contextlib.ExitStack() as stack:
        operators = [
            stack.enter_context(
                run_operator(cluster.kubeconfig, namespace, tmp_path / log, extra_args=args)
            )
            for log in ("a.log", "b.log")
        ]
        by_identity = {_identity(operator): operator for operator in operators}
        assert len(by_identity) == 2

        # Exactly one holds the Lease, and says so on /metrics; the other is a live standby.
        holder = poll_until(lambda: _holder(api_client, namespace), timeout=30)
        leader = by_identity[holder]
        (standby,) = [op for op in operators if op is not leader]
        poll_until(lambda: _leader_gauge(leader) == 1.0, timeout=30)
        assert _leader_gauge(standby) == 0.0
        assert standby.healthy()
        lease = _lease(api_client, namespace)
        assert lease.spec.lease_duration_seconds == LEASE_DURATION
        assert lease.spec.acquire_time is not None

        # A pool created now is scaled by the leader alone.
        create_pool(api_client, namespace, "ha", spec)
        poll_until(lambda: replicas() == 3, timeout=60)
        assert _pool_series(leader, "ha")
        assert not _pool_series(standby, "ha"), standby.log()[-3000:]
        assert _holder(api_client, namespace) == holder

        # The leader dies without a word; the standby takes the Lease once it expires.
        transitions = _lease(api_client, namespace).spec.lease_transitions or 0
        crashed_at = time.monotonic()
        leader.crash()
        standby_id = next(i for i, op in by_identity.items() if op is standby)
        poll_until(
            lambda: _holder(api_client, namespace) == standby_id,
            timeout=LEASE_DURATION + 15,
            interval=0.1,
        )
        takeover = time.monotonic() - crashed_at
        record_property("takeover_seconds", round(takeover, 1))
        print(f"\nstandby took the Lease {takeover:.1f}s after the leader was killed")
        assert takeover <= LEASE_DURATION + 5, takeover
        assert (_lease(api_client, namespace).spec.lease_transitions or 0) == transitions + 1
        poll_until(lambda: _leader_gauge(standby) == 1.0, timeout=10)

        # The new leader keeps scaling the pool: more backlog, more replicas.
        for _ in range(4):
            emulator.create_job(topic, element_id="check", definition_id="ha:1:1")
        poll_until(lambda: replicas() == 5, timeout=60)
        assert _pool_series(standby, "ha")

    # The survivor stopped cleanly (exit 0, checked by run_operator) and released the Lease.
    released = _lease(api_client, namespace).spec
    assert not released.holder_identity
    assert released.lease_duration_seconds == 1
