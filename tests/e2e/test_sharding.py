"""Two operators share the pools by shard Leases; one dies, the other takes its pools over in time,
and no pool is ever ticked by both.

Both run as processes with `--shards 4` against the real kube-apiserver, their Leases in the
test's namespace, a 6 s lease; Flowable is the emulator (jobs created at will, nothing runs them).
Which replica ticks a pool is read from each one's /metrics: a pool's `flowable_pool_*{pool=...}`
series exist only in the process that ticks it (a replica forgets a pool's series when its shard
leaves), and each process's `flowable_pool_scale_changes_total` counts the /scale writes it made.
"""

from __future__ import annotations

import asyncio
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

SHARDS = 4
LEASE_SECONDS = 6
POOLS = 12
SCALING = {"maxReplicas": 8, "pollingInterval": "1s"}
OWNED = re.compile(r"^flowable_pool_shards_owned (\S+)$", re.MULTILINE)
POOL_SERIES = re.compile(r'^flowable_pool_\w+\{[^}]*pool="([^"]+)"', re.MULTILINE)
SCALED = re.compile(r'^flowable_pool_scale_changes_total\{[^}]*pool="([^"]+)"[^}]*\} (\S+)$', re.M)


def _owned(operator: OperatorProcess) -> int:
    found = OWNED.search(operator.metrics())
    return int(float(found[1])) if found else 0


def _ticked(operator: OperatorProcess) -> set[str]:
    return set(POOL_SERIES.findall(operator.metrics()))


def _scaled(operator: OperatorProcess) -> set[str]:
    return {pool for pool, count in SCALED.findall(operator.metrics()) if float(count) > 0}


def _shard_holders(api_client: Any, namespace: str) -> list[str]:
    leases = k8s_client.CoordinationV1Api(api_client).list_namespaced_lease(
        namespace, label_selector="flowable-worker.io/lease-set=flowable-worker-operator"
    )
    return sorted(
        (lease.spec.holder_identity if lease.spec is not None else "") or ""
        for lease in leases.items
        if lease.metadata is not None and "-shard-" in str(lease.metadata.name)
    )


async def test_two_operators_share_the_pools_and_one_takes_over_after_a_crash(
    cluster: LocalCluster,
    crd: Path,
    namespace: str,
    api_client: Any,
    emulator: FlowableEmulator,
    tmp_path: Path,
    record_property: Any,
) -> None:
    args = [
        "--shards",
        str(SHARDS),
        "--shard-lease-namespace",
        namespace,
        "--shard-lease-duration",
        str(LEASE_SECONDS),
    ]
    specs = {
        # a definition of its own each: a pool counts the jobs of its selectors' definition
        f"s{i}": emulated_pool(emulator, f"sh{i}:1:1", 4, SCALING)
        for i in range(POOLS)
    }

    def replicas(pool: str) -> int | None:
        return deployment_replicas(api_client, namespace, f"{pool}-worker")

    with contextlib.ExitStack() as stack:
        a, b = (
            stack.enter_context(
                run_operator(cluster.kubeconfig, namespace, tmp_path / log, extra_args=args)
            )
            for log in ("a.log", "b.log")
        )
        # They share the shards out: two each (one may hold all four for a round or two).
        poll_until(lambda: (_owned(a), _owned(b)) == (2, 2), timeout=60, interval=0.5)
        assert len(set(_shard_holders(api_client, namespace))) == 2

        for name, spec in specs.items():
            create_pool(api_client, namespace, name, spec)
        # Every pool is scaled to its backlog (4 jobs, 2 per replica by default: 2 replicas) ...
        try:
            poll_until(lambda: all(replicas(name) == 2 for name in specs), timeout=90)
        except AssertionError:
            seen = {name: replicas(name) for name in specs}
            raise AssertionError(f"{seen}\n{a.log()[-3000:]}\n{b.log()[-3000:]}") from None
        # ... each by exactly one operator, watched over several intervals.
        for _ in range(10):
            ticked_a, ticked_b = _ticked(a), _ticked(b)
            assert not ticked_a & ticked_b, f"ticked by both: {ticked_a & ticked_b}"
            await asyncio.sleep(0.5)
        poll_until(lambda: _ticked(a) | _ticked(b) == set(specs), timeout=30)
        scaled_a, scaled_b = _scaled(a), _scaled(b)
        assert scaled_a | scaled_b == set(specs)
        assert not scaled_a & scaled_b, f"scaled by both: {scaled_a & scaled_b}"
        assert scaled_a, "the pools are shared: each replica scaled some"
        assert scaled_b, "the pools are shared: each replica scaled some"

        # a dies without a word; b takes over its shards once their Leases expire.
        victims = sorted(_ticked(a))
        crashed_at = time.monotonic()
        a.crash()
        poll_until(lambda: _owned(b) == SHARDS, timeout=4 * LEASE_SECONDS, interval=0.2)
        takeover = time.monotonic() - crashed_at
        record_property("takeover_seconds", round(takeover, 1))
        print(f"\nthe survivor held every shard {takeover:.1f}s after the other was killed")
        assert takeover <= 2 * LEASE_SECONDS, takeover

        # ... and scales the dead one's pools: more backlog there, more replicas.
        victim = victims[0]
        for _ in range(6):  # 10 jobs: 5 replicas
            emulator.create_job(
                specs[victim]["topic"], element_id="check", definition_id=f"sh{victim[1:]}:1:1"
            )
        poll_until(lambda: replicas(victim) == 5, timeout=30)
        assert set(victims) <= _ticked(b)

    # The survivor stopped cleanly (exit 0, checked by run_operator) and gave every shard back.
    assert _shard_holders(api_client, namespace) == [""] * SHARDS
