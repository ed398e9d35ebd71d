"""A small queue adds a replica only once its oldest job has waited a polling interval.

One worker of one slot is busy with a long job; one more job arrives. By the count alone
(`ceil(2 / 1) = 2`) a second replica would start at the next tick; with `deferSmallQueues` (the
default) the operator first dates the queue from the real Flowable's `createTime` and waits
until that job has waited `pollingInterval`. The Ready condition's message says so in between,
then the pool scales up and the job runs.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from localstack.operator_process import OperatorProcess
from localstack.podrunner import PodRunner
from tests.support.real_flowable import RealFlowable
from tests.support.waiting import poll_until as wait_for

from .conftest import (
    condition,
    create_pool,
    deployment_replicas,
    events_for,
    process_worker,
    read_pool,
)

pytestmark = pytest.mark.timeout(300)


async def test_a_small_queue_waits_one_polling_interval_for_a_busy_slot_before_scaling_up(
    operator: OperatorProcess,
    podrunner: PodRunner,
    real_flowable: RealFlowable,
    api_client: Any,
    namespace: str,
    tmp_path: Path,
) -> None:
    topic = f"e2e-{uuid.uuid4().hex[:8]}"
    handled = tmp_path / "handled.log"
    (long_job,) = await real_flowable.create_jobs(topic, 1, variables={"seconds": 40})
    create_pool(
        api_client,
        namespace,
        "queue",
        {
            "engine": {"url": real_flowable.base_url},
            "topic": topic,
            "worker": process_worker(
                "tests.e2e.handlers:work_as_told", handled, concurrency=1, lockDuration="PT2M"
            ),
            "scaling": {"maxReplicas": 3, "pollingInterval": "4s"},
        },
    )
    wait_for(lambda: f"{long_job.instance_id} " in _text(handled), timeout=90)
    assert deployment_replicas(api_client, namespace, "queue-worker") == 1

    (short_job,) = await real_flowable.create_jobs(topic, 1, variables={"seconds": 0.5})
    deferred: list[str] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while deployment_replicas(api_client, namespace, "queue-worker") == 1:
        assert loop.time() < deadline, f"never scaled up; saw {deferred}"
        message = condition(read_pool(api_client, namespace, "queue"), "Ready").get("message", "")
        if "the oldest for" in message and message not in deferred:
            deferred.append(message)
        await asyncio.sleep(0.2)

    assert deferred, "the pool scaled up without waiting for the queue to age"
    assert any(
        "1 unlocked + 1 locked jobs at 1 per replica recommend 1; 1 waiting, the oldest for" in m
        and "unless one waits the whole polling interval (4s); 1 -> 1" in m
        for m in deferred
    ), deferred
    assert deployment_replicas(api_client, namespace, "queue-worker") == 2
    wait_for(lambda: f"{short_job.instance_id} " in _text(handled), timeout=60)
    scale_ups = [m for _t, r, m in events_for(api_client, namespace, "queue") if r == "ScaleUp"]
    assert any(m.endswith("1 -> 2") for m in scale_ups), scale_ups


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""
