"""The worker's two hostile-world bugs, against the real Flowable and as a real process.

* A worker serving several topics used to stop serving most of them: a topic's poller read "the
  slots I waited for were taken by another topic" as "stop" and ended, silently.
* A hung sync handler used to starve the jobs after it (they were failed "timed out" without having
  run), and the process outlived its grace period after SIGTERM because Python joined the thread.

History is the judge, as in test_real_flowable.py.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx
import pytest

from flowable_worker import FlowableClient
from tests.support.backend import CreatedJob
from tests.support.fault_ledger import FaultLedger
from tests.support.real_flowable import RealFlowable

from .conftest import WorkerProcess, eventually

pytestmark = pytest.mark.real_flowable



async def _finished_count(real: RealFlowable, definition_id: str) -> int:
    async with httpx.AsyncClient(base_url=real.base_url, timeout=30) as http:
        page = (await http.get(
            "/process-api/history/historic-process-instances",
            params={"processDefinitionId": definition_id, "finished": "true", "size": 1},
        )).json()
    return int(page["total"])


@pytest.mark.fault("several-topics-competing-for-slots")
async def test_a_cli_worker_on_four_topics_drains_every_topic(
    real_flowable: RealFlowable, topic: str, tmp_path: Path, fault_ledger: FaultLedger
) -> None:
    topics = [f"{topic}-{n}" for n in range(4)]
    definitions = {}
    per_topic: dict[str, list[CreatedJob]] = {}
    for name in topics:
        created = await real_flowable.create_jobs(name, 100)
        per_topic[name] = created
        definitions[name] = created[0].definition_id
    fault_ledger.injected(len(topics))
    worker = WorkerProcess(
        {
            "FLOWABLE_URL": real_flowable.base_url,
            "FLOWABLE_TOPIC": ",".join(topics),
            "FLOWABLE_WORKER_HANDLER": "tests.worker.handlers:slow",
            "FLOWABLE_WORKER_CONCURRENCY": "16",
            "FWO_TEST_SLOW": "0.01",
        },
        log_path=tmp_path / "worker.log",
    )
    try:
        async def all_drained() -> bool:
            counts = [await _finished_count(real_flowable, d) for d in definitions.values()]
            return counts == [100] * 4

        await eventually(all_drained, within=90, interval=0.5)
        worker.signal(signal.SIGTERM)
        code = await asyncio.to_thread(worker.wait, 30)
    finally:
        worker.kill()
    for created in per_topic.values():
        fault_ledger.judge([c.instance_id for c in created],
                           await real_flowable.task_completions(created))
    assert code == 0, worker.output()
    assert "poller" not in worker.output().lower(), worker.output()  # no poller died or erred


@pytest.mark.fault("hung-sync-handlers")
async def test_sigterm_ends_the_process_within_the_grace_period_while_sync_handlers_hang(
    real_flowable: RealFlowable, topic: str, tmp_path: Path, fault_ledger: FaultLedger
) -> None:
    created = await real_flowable.create_jobs(topic, 2, variables={"kind": "hang"})
    handled = tmp_path / "handled.txt"
    worker = WorkerProcess(
        {
            "FLOWABLE_URL": real_flowable.base_url,
            "FLOWABLE_TOPIC": topic,
            "FLOWABLE_WORKER_HANDLER": "tests.worker.handlers:hang_recorded",
            "FLOWABLE_WORKER_ID": "hanging",
            "FLOWABLE_WORKER_CONCURRENCY": "2",
            "FLOWABLE_WORKER_GRACE_PERIOD": "2s",
            "FWO_TEST_LOG": str(handled),
        },
        log_path=tmp_path / "worker.log",
    )
    try:
        async def both_hanging() -> bool:
            return handled.exists() and handled.read_text().count(" start") >= 2

        await eventually(both_hanging, within=60)
        fault_ledger.injected(2)
        worker.signal(signal.SIGTERM)
        signalled = time.monotonic()
        code = await asyncio.to_thread(worker.wait, 30)
        took = time.monotonic() - signalled
    finally:
        worker.kill()
    assert code == 0, worker.output()
    # 2 s of grace, then giving both jobs back and a look for strays: well inside a pod's 30 s.
    assert took < 8, f"exit took {took:.1f}s\n{worker.output()}"
    async with FlowableClient(real_flowable.client_settings()) as client:
        page = await client.list_jobs(locked=True, size=1000)
    assert [j.id for j in page.data if j.lock_owner == "hanging"] == []
    async with FlowableClient(real_flowable.client_settings()) as client:
        again = await client.acquire_jobs(
            topic=topic, worker_id="next", lock_duration="PT1M", number_of_tasks=10
        )
    back = {j.process_instance_id for j in again}
    completed = await real_flowable.task_completions(created)
    # Judged by what can be acquired again at once (given back, not lost) and by history.
    fault_ledger.count(
        judged=len(created), lost=sum(1 for c in created if c.instance_id not in back),
        duplicates=sum(max(0, n - 1) for n in completed.values()),
    )
    assert not completed  # a hung handler's job was never completed behind our back
    assert back == {c.instance_id for c in created}
    assert {j.retries for j in again} == {3}  # given back: no retry spent
