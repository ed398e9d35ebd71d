"""The product with real images: the operator scales a pool whose worker pods are containers
of the handler image built from examples/handler-image, against the real Flowable.

Invoices wait -> the operator (a local process) scales the pool's Deployment up -> its pods run
as podman containers of the handler image (uid 10001 from the image, read-only root, no
capabilities) -> they check the invoices -> one container is stopped mid-work (its pod deleted:
SIGTERM, then SIGKILL after the grace period) and must finish or give back what it holds -> every
invoice is checked exactly once (Flowable's history) -> the pool cools down to zero.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s_client

from localstack import podman
from localstack.flowable_server import FlowableRestApi
from localstack.operator_process import OperatorProcess
from localstack.podrunner import RUN_AS_CONTAINER_LABEL, PodProcess, PodRunner
from tests.e2e.conftest import create_pool, deployment_replicas, events_for
from tests.support.real_flowable import RealFlowable
from tests.support.waiting import eventually, poll_until

pytestmark = [pytest.mark.cluster, pytest.mark.real_flowable, pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "examples" / "invoice.bpmn20.xml"
INVOICES = 30
LIMIT = 1000  # invoices.handlers.LIMIT: larger ones end with the BPMN error TOO_BIG


def _model(topic: str, element: str) -> str:
    """The example invoice process on a topic and element id of this test's own."""
    xml = MODEL.read_text()
    xml = xml.replace('flowable:topic="invoice-check"', f'flowable:topic="{topic}"')
    xml = xml.replace('<process id="invoice"', f'<process id="{element}_process"')
    return xml.replace('"checkInvoice"', f'"{element}"')


def _pool(flowable_url: str, topic: str, image: str) -> dict[str, Any]:
    return {
        "engine": {"url": flowable_url},
        "topic": topic,
        "worker": {
            "image": image,
            "handler": {"python": "invoices.handlers:check"},
            "concurrency": 2,
            # Far longer than the test: a job a stopped worker neither finished nor gave back
            # would stay locked, and the backlog would never drain in time.
            "lockDuration": "PT5M",
            "terminationGracePeriodSeconds": 15,
            "env": [
                {"name": "INVOICES_WORK_SECONDS", "value": "1.5"},
                # Host networking: the pods share this machine's ports.
                {"name": "FLOWABLE_WORKER_METRICS_PORT", "value": "0"},
                {"name": "FLOWABLE_WORKER_LOG_FORMAT", "value": "text"},
            ],
            "template": {
                "metadata": {"labels": {RUN_AS_CONTAINER_LABEL: "true"}},
            },
        },
        "scaling": {
            "maxReplicas": 3,
            "pollingInterval": "1s",
            "cooldownPeriod": "5s",
            "behavior": {
                "scaleUp": {"policies": [{"type": "Pods", "value": 3, "periodSeconds": 1}]},
                "scaleDown": {"stabilizationWindowSeconds": 0},
            },
        },
    }


def _uid_and_root(container: str) -> list[str]:
    """What the container's own processes see: their uid, and whether `/` takes a write."""
    probe = (
        "import os\ntry:\n open('/probe', 'w')\n print(os.getuid(), 'writable')\n"
        "except OSError as e:\n print(os.getuid(), e.strerror)"
    )
    return podman.podman("exec", container, "python3", "-c", probe).stdout.strip().split(maxsplit=1)


async def test_the_operator_scales_handler_image_containers_that_check_every_invoice_once(
    operator: OperatorProcess,
    container_runner: PodRunner,
    handler_image: str,
    real_flowable: RealFlowable,
    api_client: Any,
    namespace: str,
) -> None:
    suffix = uuid.uuid4().hex[:8]
    topic, element = f"img-{suffix}", f"check_{suffix}"
    rng = random.Random(8)
    amounts = [rng.randint(1, 2000) for _ in range(INVOICES)]
    async with FlowableRestApi.connect(real_flowable.base_url) as api:
        model = await api.deploy(
            _model(topic, element), scope_type="bpmn", resource_name=f"{element}.bpmn20.xml"
        )
        instances = [
            (
                await api.start_process_instance(
                    definition_id=model.definition_id,
                    variables=[{"name": "amount", "type": "integer", "value": amount}],
                )
            )["id"]
            for amount in amounts
        ]
    create_pool(
        api_client, namespace, "invoices", _pool(real_flowable.base_url, topic, handler_image)
    )

    # Up: three containers of the handler image, each as the pod spec and the image say.
    running: list[PodProcess] = poll_until(
        lambda: (
            len(container_runner.running(namespace)) == 3 and container_runner.running(namespace)
        ),
        timeout=120,
    )
    for proc in running:
        assert proc.image == handler_image
        inspected = podman.inspect_container(str(proc.container))
        assert inspected["HostConfig"]["ReadonlyRootfs"] is True
        assert inspected["Config"]["User"] == "10001"  # the image's USER: the pod sets none
        assert _uid_and_root(str(proc.container)) == ["10001", "Read-only file system"]

    # One container is stopped while it holds jobs: its pod is deleted, as a scale-down or a
    # node drain would. It must finish or give back every job, and exit 0 within the grace.
    async with FlowableRestApi.connect(real_flowable.base_url) as api:

        async def lock_owners() -> Counter[str]:
            page = await api.external_worker_jobs(
                processDefinitionId=model.definition_id, locked="true", size=100
            )
            return Counter(str(row.get("lockOwner")) for row in page["data"])

        victim: PodProcess | None = None

        async def one_holds_jobs() -> bool:
            nonlocal victim
            owners = await lock_owners()
            victim = next((p for p in container_runner.running(namespace) if owners[p.name]), None)
            return victim is not None

        await eventually(one_holds_jobs, within=60, interval=0.2)
        assert victim is not None
        stopped = victim
        k8s_client.CoreV1Api(api_client).delete_namespaced_pod(stopped.name, namespace)
        poll_until(lambda: stopped.returncode is not None, timeout=30)
        log = stopped.log_path.read_text()
        assert stopped.returncode == 0, log[-3000:]
        assert not stopped.killed
        assert "stop requested" in log, log[-3000:]
        assert f"worker {stopped.name} stopped" in log, log[-3000:]
        assert (await lock_owners())[stopped.name] == 0, "a stopped worker still holds a lock"

    # Drained: every invoice checked exactly once, by the history, well inside the 5-minute lock.
    async with httpx.AsyncClient(base_url=real_flowable.base_url, timeout=30) as http:

        async def history(path: str, **params: str | int) -> list[dict[str, Any]]:
            page = (
                await http.get(f"/process-api/history/{path}", params={**params, "size": 1000})
            ).json()
            rows: list[dict[str, Any]] = page["data"]
            return rows

        async def all_finished() -> bool:
            done = await history(
                "historic-process-instances",
                processDefinitionId=model.definition_id,
                finished="true",
            )
            return len(done) == INVOICES

        await eventually(all_finished, within=120, interval=0.5)
        checks = await history(
            "historic-activity-instances",
            processDefinitionId=model.definition_id,
            activityId=element,
        )
        ends = Counter(
            row["activityId"]
            for row in await history(
                "historic-activity-instances", processDefinitionId=model.definition_id
            )
            if row["activityId"] in ("approved", "rejected")
        )
    per_instance = Counter(row["processInstanceId"] for row in checks)
    assert per_instance == Counter(instances), "an invoice was checked more or less than once"
    assert all(row["endTime"] for row in checks)
    assert ends == {
        "approved": sum(a <= LIMIT for a in amounts),
        "rejected": sum(a > LIMIT for a in amounts),
    }

    # Down: back to zero replicas and no container left running.
    poll_until(
        lambda: deployment_replicas(api_client, namespace, "invoices-worker") == 0, timeout=90
    )
    poll_until(lambda: not container_runner.running(namespace), timeout=60)
    reasons = [reason for _type, reason, _message in events_for(api_client, namespace, "invoices")]
    assert "CooledDown" in reasons
