"""The benchmark's opponent is the real KEDA, and it really scales: 0 -> N -> 0 on Flowable.

Parts: the local control plane (its kube-controller-manager runs the real HPA controller), KEDA
v2.21.0's operator and metrics adapter built from its Go module (``make keda-bin``) serving
``external.metrics.k8s.io`` through the API server's aggregation layer, the real Flowable server,
and ``flowable-worker`` processes for the pods. The pool is what a KEDA user writes for Flowable
today (``localstack.keda_pool``): a ``metrics-api`` trigger on the engine's job count, basic auth
through a TriggerAuthentication, ``minReplicaCount: 0``.

KEDA alone takes a pool from 0 to 1 and back to 0; only the HPA, reading KEDA's metric through the
aggregation layer, takes it beyond 1. So a pool seen at 2 or more proved the whole chain.

Opt-in (``make test-keda``): the KEDA build takes over 20 minutes cold.
"""

from __future__ import annotations

import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from localstack.cluster import LocalCluster, MissingPrerequisiteError, pid_alive
from localstack.keda_pool import KedaPool
from localstack.keda_stack import API_SERVICE, KedaSetupError, KedaStack, find_keda_bin_dir
from localstack.podrunner import PodRunner
from tests.support.real_flowable import RealFlowable
from tests.support.waiting import eventually, poll_until

from .conftest import ReplicaWatch, deployment_replicas

pytestmark = [pytest.mark.keda, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(sys.executable).parent / "flowable-worker"
JOBS, JOB_SECONDS, JOBS_PER_REPLICA, MAX_REPLICAS = 24, 3.0, 2, 4


@pytest.fixture(scope="module")
def keda(cluster: LocalCluster) -> Iterator[KedaStack]:
    """KEDA on the session's cluster; every process it started is gone afterwards."""
    try:
        stack = KedaStack(cluster)
        stack.start()
    except (MissingPrerequisiteError, KedaSetupError) as exc:
        pytest.fail(str(exc), pytrace=False)
    yield stack
    pids = stack.pids()
    stack.stop()
    left = {name: pid for name, pid in pids.items() if pid_alive(pid)}
    assert not left, f"KEDA processes survived teardown: {left}"


def test_a_missing_keda_build_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FWO_KEDA_BIN_DIR", str(tmp_path))
    with pytest.raises(MissingPrerequisiteError) as raised:
        find_keda_bin_dir()
    message = str(raised.value)
    assert "\n" not in message
    assert "keda-operator, keda-adapter" in message
    assert "make keda-bin" in message


def test_an_adapter_that_never_serves_fails_in_one_line_and_leaves_nothing(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """The real operator beside an adapter that never listens: the APIService stays
    unreachable, and start() says so in one line, stops both processes and removes it.
    (Runs before the module's real KEDA starts: both would own the same APIService.)"""
    real = find_keda_bin_dir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "keda-operator").symlink_to(real / "keda-operator")
    silent = bin_dir / "keda-adapter"
    silent.write_text("#!/bin/sh\nexec sleep 600\n")
    silent.chmod(0o755)
    stack = KedaStack(cluster, bin_dir=bin_dir)
    with pytest.raises(KedaSetupError) as raised:
        stack.start(timeout=20)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"APIService {API_SERVICE} unreachable: FailedDiscoveryCheck"), (
        message
    )
    assert stack.pids() == {}
    assert cluster.api_service_condition(API_SERVICE) == {}


def _condition(scaled_object: dict[str, Any], type_: str) -> str | None:
    for cond in (scaled_object.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return str(cond.get("status"))
    return None


def _hpa(cluster: LocalCluster, pool: KedaPool) -> dict[str, Any]:
    """The HPA KEDA made for the pool (it exists once the ScaledObject is Ready)."""
    path = f"/apis/autoscaling/v2/namespaces/{pool.namespace}/horizontalpodautoscalers/{pool.hpa}"
    status, body = cluster.api("GET", path)
    assert status == 200, body
    return dict(body)


async def _finished(real: RealFlowable, definition_id: str) -> int:
    async with httpx.AsyncClient(base_url=real.base_url, timeout=30) as http:
        page = (
            await http.get(
                "/process-api/history/historic-process-instances",
                params={"processDefinitionId": definition_id, "finished": "true", "size": 1},
            )
        ).json()
    return int(page["total"])


async def test_keda_scales_a_flowable_worker_pool_from_zero_to_n_and_back(
    keda: KedaStack,
    cluster: LocalCluster,
    podrunner: PodRunner,
    real_flowable: RealFlowable,
    api_client: Any,
    namespace: str,
    tmp_path: Path,
) -> None:
    topic = f"keda-{uuid.uuid4().hex[:8]}"
    element = f"task_{topic[5:]}"
    async with real_flowable.api() as api:
        model = await real_flowable.model_for(
            api, topic=topic, scope_type="bpmn", tenant_id=None, element_id=element
        )
    handled = tmp_path / "handled.log"
    pool = KedaPool(
        name="keda-pool",
        namespace=namespace,
        engine_url=real_flowable.base_url,
        topic=topic,
        element_id=element,
        process_definition_id=model.definition_id,
        handler="tests.e2e.handlers:work_as_told",
        jobs_per_replica=JOBS_PER_REPLICA,
        max_replicas=MAX_REPLICAS,
        cooldown_seconds=15,
        polling_interval_seconds=2,
        concurrency=2,
        lock_duration="PT30S",
        termination_grace_seconds=10,
        command=[str(WORKER)],
        extra_env={
            "PYTHONPATH": str(REPO),
            "FWO_TEST_LOG": str(handled),
            "FLOWABLE_WORKER_METRICS_PORT": "0",
            "FLOWABLE_WORKER_LOG_FORMAT": "text",
        },
    )
    pool.create(cluster)
    watch = ReplicaWatch(api_client, namespace, pool.deployment)
    try:
        # KEDA took the pool: the HPA exists and the trigger reads 0 jobs (inactive, still 0).
        poll_until(lambda: _condition(pool.scaled_object(cluster), "Ready") == "True", timeout=60)
        poll_until(lambda: _condition(pool.scaled_object(cluster), "Active") == "False", timeout=30)
        hpa = _hpa(cluster, pool)
        assert hpa["spec"]["metrics"][0]["type"] == "External"
        assert deployment_replicas(api_client, namespace, pool.deployment) == 0

        created = await real_flowable.create_jobs(
            topic, JOBS, element_id=element, variables={"seconds": JOB_SECONDS}
        )
        # 0 -> 1 is KEDA's; beyond 1 only the HPA, reading the adapter through the aggregator.
        poll_until(
            lambda: (deployment_replicas(api_client, namespace, pool.deployment) or 0) >= 2,
            timeout=120,
        )
        poll_until(lambda: len(podrunner.running(namespace)) >= 2, timeout=60)
        hpa = _hpa(cluster, pool)
        current = (hpa.get("status") or {}).get("currentMetrics") or []
        assert current, hpa.get("status")
        assert current[0]["type"] == "External", current

        async def drained() -> bool:
            return await _finished(real_flowable, model.definition_id) == JOBS

        await eventually(drained, within=240, interval=1.0)
        # Idle for cooldownPeriod: KEDA (not the HPA, whose scale-down waits 5 minutes) takes
        # the pool to 0, and every worker process ends.
        poll_until(
            lambda: deployment_replicas(api_client, namespace, pool.deployment) == 0, timeout=120
        )
        poll_until(lambda: not podrunner.running(namespace), timeout=60)
    finally:
        seen = watch.stop()
        pool.delete_scaled_object(cluster)
    assert seen[0] == 0, seen
    assert max(seen) >= 2, seen
    assert max(seen) <= MAX_REPLICAS, seen
    assert seen[-1] == 0, seen

    done = Counter(
        line.split()[0] for line in handled.read_text().splitlines() if line.endswith(" done")
    )
    assert set(done) == {c.instance_id for c in created}
    assert max(done.values()) == 1, f"handled twice: {[i for i, n in done.items() if n > 1]}"
    assert podrunner.failures() == {}
    # The ScaledObject's finalizer ran (KEDA still up): nothing of it is left.
    poll_until(lambda: pool.scaled_object(cluster) == {}, timeout=60)
