"""The whole loop, for real: Flowable -> operator -> Deployment -> pods -> worker processes.

Parts: the real local control plane (kube-apiserver, etcd, controller-manager, scheduler, kwok)
and the pod runner from tests/cluster, the real Flowable server from tests/conftest.py, the pool
CRD from deploy/crds, and the operator itself as a subprocess (`flowable-worker-operator`, the
installed console script) watching one test namespace with a kubeconfig, as a user would run it.
Worker pods carry the run-as-process label, so each Running pod becomes a `flowable-worker`
process on this machine. Nothing here skips: a missing part fails with what to install.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from localstack.cluster import LocalCluster
from localstack.operator_process import OperatorProcess, OperatorProcessError, run_operator
from localstack.podrunner import RUN_AS_PROCESS_LABEL
from tests.support.emulator import FlowableEmulator

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "deploy" / "crds" / "externalworkerpools.flowable-worker.io.yaml"
BIN = Path(sys.executable).parent
GROUP, VERSION, PLURAL = "flowable-worker.io", "v1alpha1", "externalworkerpools"


def _console_script(name: str) -> Path:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make setup` (pip install -e '.[operator,dev]')")
    return path


@pytest.fixture(scope="session")
def crd(cluster: LocalCluster) -> Path:
    """The pool CRD, installed once per session with kubectl, as the README tells users to."""
    cluster.kubectl("apply", "-f", str(CRD))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=30s", f"crd/{PLURAL}.{GROUP}")
    return CRD


@pytest.fixture
def operator(
    cluster: LocalCluster, crd: Path, namespace: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """The operator watching this test's namespace; its exit code on SIGTERM must be 0."""
    try:
        with run_operator(cluster.kubeconfig, namespace, tmp_path / "operator.log") as running:
            yield running
    except OperatorProcessError as error:
        pytest.fail(str(error)[-4000:])


def worker_template(*, run_as_process: bool) -> dict[str, Any]:
    """Pod template overrides: local processes need the console script's path, not an image."""
    template: dict[str, Any] = {
        "spec": {"containers": [{"name": "worker", "command": [str(BIN / "flowable-worker")]}]}
    }
    if run_as_process:
        template["metadata"] = {"labels": {RUN_AS_PROCESS_LABEL: "true"}}
    return template


def process_worker(handler: str, handled_log: Path, **fields: Any) -> dict[str, Any]:
    """A `spec.worker` whose pods run as local `flowable-worker` processes with `handler`
    (`tests.e2e.handlers:...`), each run logged to `handled_log`; `fields` add to it."""
    return {
        "handler": {"python": handler},
        **fields,
        "env": [
            {"name": "PYTHONPATH", "value": str(REPO)},
            {"name": "FWO_TEST_LOG", "value": str(handled_log)},
            {"name": "FLOWABLE_WORKER_METRICS_PORT", "value": "0"},
            {"name": "FLOWABLE_WORKER_LOG_FORMAT", "value": "text"},
        ],
        "template": worker_template(run_as_process=True),
    }


def emulated_pool(
    emulator: FlowableEmulator, definition_id: str, jobs: int, scaling: dict[str, Any]
) -> dict[str, Any]:
    """A pool spec on a fresh topic of the emulator, with `jobs` waiting jobs of element
    `check` in `definition_id`; its pods are kwok pods only (no worker processes)."""
    topic = f"e2e-{uuid.uuid4().hex[:8]}"
    for _ in range(jobs):
        emulator.create_job(topic, element_id="check", definition_id=definition_id)
    return {
        "engine": {"url": emulator.base_url},
        "topic": topic,
        "backlog": {"selectors": [{"elementId": "check", "processDefinitionId": definition_id}]},
        "worker": {"handler": {"python": "tests.e2e.handlers:work"}, "concurrency": 2},
        "scaling": scaling,
    }


def create_pool(api_client: Any, namespace: str, name: str, spec: dict[str, Any]) -> None:
    k8s_client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ExternalWorkerPool",
            "metadata": {"name": name},
            "spec": spec,
        },
    )


def read_pool(api_client: Any, namespace: str, name: str) -> dict[str, Any]:
    pool: dict[str, Any] = k8s_client.CustomObjectsApi(api_client).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    return pool


def condition(pool: dict[str, Any], type_: str) -> dict[str, Any]:
    for item in (pool.get("status") or {}).get("conditions") or []:
        if item["type"] == type_:
            return dict(item)
    return {}


def deployment_replicas(api_client: Any, namespace: str, name: str) -> int | None:
    try:
        scale = k8s_client.AppsV1Api(api_client).read_namespaced_deployment_scale(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return int(scale.spec.replicas or 0)


def events_for(api_client: Any, namespace: str, name: str) -> list[tuple[str, str, str]]:
    events = k8s_client.CoreV1Api(api_client).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name}"
    )
    return [(e.type, e.reason, e.message) for e in events.items]


class ReplicaWatch:
    """Samples a Deployment's replicas in the background: what a test saw, in order."""

    def __init__(self, api_client: Any, namespace: str, name: str) -> None:
        import threading

        self.seen: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(api_client, namespace, name), daemon=True
        )
        self._thread.start()

    def _run(self, api_client: Any, namespace: str, name: str) -> None:
        while not self._stop.is_set():
            replicas = deployment_replicas(api_client, namespace, name)
            if replicas is not None and (not self.seen or self.seen[-1] != replicas):
                self.seen.append(replicas)
            time.sleep(0.2)

    def stop(self) -> list[int]:
        self._stop.set()
        self._thread.join(timeout=5)
        return self.seen
