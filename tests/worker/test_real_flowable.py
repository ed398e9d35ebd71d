"""The worker against a real Flowable 7.2: every result kind, failures, timeouts, SIGTERM, SIGKILL.

History is the judge: an instance "finished exactly once" when history shows it ended and its
external-worker task has exactly one completed activity instance.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest

from flowable_worker import FlowableClient
from flowable_worker.runtime import Worker
from tests.support.backend import CreatedJob
from tests.support.fault_ledger import FaultLedger
from tests.support.real_flowable import RealFlowable

from .conftest import WorkerProcess, eventually, serving, worker_settings
from .handlers import by_kind, slow

pytestmark = pytest.mark.real_flowable


async def _all_finished(real: RealFlowable, created: Sequence[CreatedJob], within: float) -> None:
    async def finished() -> bool:
        return len(await _finished_ids(real, created)) == len(created)

    await eventually(finished, within=within, interval=0.25)


async def _finished_ids(real: RealFlowable, created: Sequence[CreatedJob]) -> set[str]:
    wanted = {c.instance_id for c in created}
    definition = created[0].definition_id
    async with httpx.AsyncClient(base_url=real.base_url, timeout=30) as http:
        page = (await http.get(
            "/process-api/history/historic-process-instances",
            params={"processDefinitionId": definition, "finished": "true", "size": 10000},
        )).json()
    return {row["id"] for row in page["data"]} & wanted



async def test_every_result_kind_reaches_flowable(real_flowable: RealFlowable, topic: str) -> None:
    completed = await real_flowable.create_jobs(topic, 3, variables={"kind": "complete", "n": 4})
    rejected = await real_flowable.create_jobs(topic, 1, variables={"kind": "bpmnError"})
    failed = await real_flowable.create_jobs(topic, 1, variables={"kind": "fail"})
    terminated = await real_flowable.create_jobs(
        topic, 1, variables={"kind": "terminate"}, scope_type="cmmn"
    )
    worker = Worker(worker_settings(real_flowable.base_url, topics=(topic,)))
    worker.add_handler(topic, by_kind)
    async with serving(worker):
        async def all_reported() -> bool:
            ends = [await real_flowable.instance_finished(c)
                    for c in (*completed, *rejected, *terminated)]
            dead = await real_flowable.dead_letter_job_ids(failed)
            return all(ends) and len(dead) == 1

        await eventually(all_reported, within=30)

    variables = await real_flowable.instance_variables(completed[0])
    assert variables["doubled"] == 8
    assert variables["handledBy"] == worker.settings.worker_id
    assert (await real_flowable.instance_variables(rejected[0]))["reason"] == "too big"
    terminated_vars = await real_flowable.instance_variables(terminated[0])
    assert terminated_vars["terminatedBy"] == worker.settings.worker_id
    assert not await real_flowable.instance_finished(failed[0])


async def test_a_handler_exception_fails_the_job_with_message_and_traceback(
    real_flowable: RealFlowable, topic: str
) -> None:
    created = await real_flowable.create_jobs(topic, 1, variables={"kind": "raise", "n": 7})
    worker = Worker(worker_settings(real_flowable.base_url, topics=(topic,), fail_retries=0))
    worker.add_handler(topic, by_kind)
    async with serving(worker):
        async def dead_lettered() -> bool:
            return len(await real_flowable.dead_letter_job_ids(created)) == 1

        await eventually(dead_lettered, within=30)
    async with httpx.AsyncClient(base_url=real_flowable.base_url, timeout=30) as http:
        [job_id] = await real_flowable.dead_letter_job_ids(created)
        row = (await http.get(f"/process-api/management/deadletter-jobs/{job_id}")).json()
        details = (await http.get(
            f"/process-api/management/deadletter-jobs/{job_id}/exception-stacktrace"
        )).text
    assert row["exceptionMessage"] == "ValueError: bad input 7"
    assert "Traceback" in details
    assert "by_kind" in details


async def test_retries_follow_the_configured_policy(
    real_flowable: RealFlowable, topic: str
) -> None:
    created = await real_flowable.create_jobs(topic, 1, variables={"kind": "raise"})
    worker = Worker(worker_settings(real_flowable.base_url, topics=(topic,), fail_retries=2,
                                    fail_retry_timeout="PT30S"))
    worker.add_handler(topic, by_kind)
    async with FlowableClient(real_flowable.client_settings()) as client:
        async with serving(worker):
            async def failed_once() -> bool:
                page = await client.list_jobs(process_instance_id=created[0].instance_id)
                return bool(page.data) and page.data[0].exception_message is not None

            await eventually(failed_once, within=30)
        [job] = (await client.list_jobs(process_instance_id=created[0].instance_id)).data
    assert job.retries == 2
    assert job.lock_owner is None
    assert job.lock_expiration_time is not None  # waiting out the 30 s retry timeout


@pytest.mark.fault("handler-past-its-timeout")
async def test_a_handler_past_its_timeout_fails_the_job(
    real_flowable: RealFlowable, topic: str, fault_ledger: FaultLedger
) -> None:
    created = await real_flowable.create_jobs(topic, 1, variables={"kind": "hang"})
    worker = Worker(worker_settings(
        real_flowable.base_url, topics=(topic,), handler_timeout=1, lock_duration=30,
        fail_retries=0, grace_period=1,
    ))
    worker.add_handler(topic, by_kind)
    started = time.monotonic()
    async with serving(worker):
        async def dead_lettered() -> bool:
            return len(await real_flowable.dead_letter_job_ids(created)) == 1

        await eventually(dead_lettered, within=20)
    fault_ledger.injected()
    dead = await real_flowable.dead_letter_job_ids(created)
    # Not lost: a job that hangs every time ends in the dead-letter table, where people see it.
    fault_ledger.count(judged=1, lost=1 - len(dead), duplicates=0)
    assert time.monotonic() - started < 15  # long before the 30 s lock or the 60 s handler
    async with httpx.AsyncClient(base_url=real_flowable.base_url, timeout=30) as http:
        [job_id] = await real_flowable.dead_letter_job_ids(created)
        row = (await http.get(f"/process-api/management/deadletter-jobs/{job_id}")).json()
    assert row["exceptionMessage"] == "handler timed out after 1s"


@pytest.mark.fault("worker-sigterm-mid-batch")
async def test_sigterm_in_the_middle_of_a_batch_loses_nothing_and_completes_nothing_twice(
    real_flowable: RealFlowable, topic: str, tmp_path: Path, fault_ledger: FaultLedger
) -> None:
    created = await real_flowable.create_jobs(topic, 40)
    handled = tmp_path / "handled.txt"
    first = WorkerProcess(
        {
            "FLOWABLE_URL": real_flowable.base_url,
            "FLOWABLE_TOPIC": topic,
            "FLOWABLE_WORKER_HANDLER": "tests.worker.handlers:slow",
            "FLOWABLE_WORKER_ID": "first",
            "FLOWABLE_WORKER_CONCURRENCY": "4",
            "FLOWABLE_WORKER_BATCH_SIZE": "4",
            "FLOWABLE_WORKER_GRACE_PERIOD": "10s",
            "FWO_TEST_LOG": str(handled),
            "FWO_TEST_SLOW": "0.4",
        },
        log_path=tmp_path / "first.log",
    )
    try:
        async def some_handled() -> bool:
            return handled.exists() and handled.read_text().count(" end") >= 6

        await eventually(some_handled, within=60)
        first.signal(signal.SIGTERM)
        fault_ledger.injected()
        code = await asyncio.to_thread(first.wait, 30)
    finally:
        first.kill()
    assert code == 0, first.output()
    lines = handled.read_text().splitlines()
    starts = sum(1 for line in lines if line.endswith(" start"))
    ends = sum(1 for line in lines if line.endswith(" end"))
    assert starts == ends, "a handler running at SIGTERM was not allowed to finish"

    async with FlowableClient(real_flowable.client_settings()) as client:
        page = await client.list_jobs(locked=True, size=1000)
    assert [j.id for j in page.data if j.lock_owner == "first"] == []  # nothing held back

    worker = Worker(worker_settings(real_flowable.base_url, topics=(topic,), worker_id="second"))
    worker.add_handler(topic, slow)
    async with serving(worker):
        # Well inside the first worker's 5-minute lock: what it gave back is acquirable at once
        # (an unacquire would have left exclusive jobs' instances locked; docs/worker.md).
        await _all_finished(real_flowable, created, within=45)
    completions = await real_flowable.task_completions(created)
    fault_ledger.judge([c.instance_id for c in created], completions)
    assert set(completions) == {c.instance_id for c in created}
    assert set(completions.values()) == {1}
    handled_by = Counter(
        [(await real_flowable.instance_variables(c))["handledBy"] for c in created]
    )
    assert handled_by["first"] == ends
    assert handled_by["first"] + handled_by["second"] == 40


@pytest.mark.fault("worker-sigkill")
async def test_a_killed_workers_jobs_come_back_after_the_lock_and_are_completed_by_another(
    real_flowable: RealFlowable, topic: str, tmp_path: Path, fault_ledger: FaultLedger
) -> None:
    created = await real_flowable.create_jobs(topic, 6)
    handled = tmp_path / "handled.txt"
    doomed = WorkerProcess(
        {
            "FLOWABLE_URL": real_flowable.base_url,
            "FLOWABLE_TOPIC": topic,
            "FLOWABLE_WORKER_HANDLER": "tests.worker.handlers:slow",
            "FLOWABLE_WORKER_ID": "doomed",
            "FLOWABLE_WORKER_CONCURRENCY": "6",
            "FLOWABLE_WORKER_LOCK_DURATION": "PT4S",
            "FWO_TEST_LOG": str(handled),
            "FWO_TEST_SLOW": "3",
        },
        log_path=tmp_path / "doomed.log",
    )
    try:
        async def holding() -> bool:
            return handled.exists() and handled.read_text().count(" start") >= 6

        await eventually(holding, within=60)
        doomed.process.kill()  # SIGKILL: no chance to unacquire
        fault_ledger.injected()
        await asyncio.to_thread(doomed.wait, 10)
    finally:
        doomed.kill()
    async with FlowableClient(real_flowable.client_settings()) as client:
        page = await client.list_jobs(locked=True, size=1000)
    assert sum(1 for j in page.data if j.lock_owner == "doomed") == 6

    worker = Worker(worker_settings(real_flowable.base_url, topics=(topic,), worker_id="rescuer"))
    worker.add_handler(topic, slow)
    async with serving(worker):
        await _all_finished(real_flowable, created, within=60)
    completions = await real_flowable.task_completions(created)
    fault_ledger.judge([c.instance_id for c in created], completions)
    assert set(completions.values()) == {1}
    assert len(completions) == 6
    for c in created:
        assert (await real_flowable.instance_variables(c))["handledBy"] == "rescuer"
