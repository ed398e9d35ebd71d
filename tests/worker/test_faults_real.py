"""Faults against the real Flowable: the engine restarts or freezes mid-run, a worker freezes past
its lock (Flowable then answers 403 "does not hold a lock").

Each test runs `flowable-worker` processes through the fault and lets Flowable's history judge:
every instance's external-worker task finished exactly once. The restart and the freeze use a
Flowable of their own, on a database file that survives the restart (the session's shared server
keeps its database in memory, so a restart would be a clean engine).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path

import httpx
import pytest

from flowable_worker.job import Job
from flowable_worker.runtime import Worker
from localstack.flowable_server import FlowableServer
from tests.support.backend import CreatedJob
from tests.support.fault_ledger import FaultLedger
from tests.support.real_flowable import RealFlowable

from .conftest import WorkerProcess, eventually, serving, worker_settings

pytestmark = pytest.mark.real_flowable

JOBS = 60


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def durable_flowable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlowableServer]:
    """A Flowable of this module's own, with its database in a file and a fixed port, so that a
    stop and a start is a restart of the same engine, and a SIGSTOP freezes nobody else's."""
    database = tmp_path_factory.mktemp("flowable-db") / "flowable"
    server = FlowableServer(
        port=_free_port(),
        extra_args=[f"--spring.datasource.url=jdbc:h2:file:{database};DB_CLOSE_ON_EXIT=FALSE"],
    )
    with server:
        yield server



async def _all_done(base_url: str, created: Sequence[CreatedJob], within: float) -> None:
    wanted = {c.instance_id for c in created}
    engine = RealFlowable(base_url)

    async def done() -> bool:
        try:
            return set(await engine.task_completions(created)) >= wanted
        except httpx.HTTPError:
            return False  # the engine is still coming back

    await eventually(done, within=within, interval=0.5)


def _worker(base_url: str, topic: str, tmp_path: Path, name: str, **env: str) -> WorkerProcess:
    return WorkerProcess(
        {
            "FLOWABLE_URL": base_url,
            "FLOWABLE_TOPIC": topic,
            "FLOWABLE_WORKER_HANDLER": "tests.worker.handlers:slow",
            "FLOWABLE_WORKER_ID": name,
            "FLOWABLE_WORKER_CONCURRENCY": "4",
            "FLOWABLE_WORKER_REQUEST_TIMEOUT": "2s",
            "FLOWABLE_WORKER_ERROR_BACKOFF_MAX": "1s",
            "FWO_TEST_LOG": str(tmp_path / f"{name}.handled"),
            "FWO_TEST_SLOW": "0.2",
            **env,
        },
        log_path=tmp_path / f"{name}.log",
    )


def _ends(tmp_path: Path, name: str) -> int:
    path = tmp_path / f"{name}.handled"
    return path.read_text().count(" end") if path.exists() else 0


async def _stop(worker: WorkerProcess) -> int:
    worker.signal(signal.SIGTERM)
    try:
        return await asyncio.to_thread(worker.wait, 30)
    finally:
        worker.kill()


async def _through_an_engine_fault(
    server: FlowableServer,
    topic: str,
    tmp_path: Path,
    ledger: FaultLedger,
    fault: Callable[[], Awaitable[None]],
) -> str:
    """Run a worker over JOBS jobs, strike the engine with `fault` once 10 are done, and let
    history judge (every instance once, whether its job was reported across the fault, or
    locked by an acquire whose answer was lost and taken again after its lock); returns the
    worker's output for fault-specific checks."""
    engine = RealFlowable.for_server(server)
    created = await engine.create_jobs(topic, JOBS)
    # An acquire the engine applied but whose answer the fault cut off leaves its jobs locked to
    # this worker, which never learned of them: they come back when the lock expires. A short
    # lock keeps that inside the test's window (with the default 5 minutes the run once waited).
    worker = _worker(server.base_url, topic, tmp_path, "worker",
                     FLOWABLE_WORKER_LOCK_DURATION="PT20S")
    try:
        await eventually(_ended(tmp_path, "worker", 10), within=60)
        await fault()
        ledger.injected()
        await _all_done(server.base_url, created, within=120)
        code = await _stop(worker)
    finally:
        worker.kill()
    completions = await engine.task_completions(created)
    ledger.judge([c.instance_id for c in created], completions)
    assert code == 0, worker.output()
    assert set(completions.values()) == {1}
    assert len(completions) == JOBS
    return worker.output()


@pytest.mark.fault("flowable-restart-mid-run")
async def test_a_flowable_restart_mid_run_loses_nothing(
    durable_flowable: FlowableServer, topic: str, tmp_path: Path, fault_ledger: FaultLedger
) -> None:
    async def restart() -> None:
        await asyncio.to_thread(durable_flowable.stop)
        await asyncio.sleep(2)
        await asyncio.to_thread(durable_flowable.start)
        fault_ledger.note(f"engine back after a restart of {durable_flowable.startup_seconds:.1f}s")

    await _through_an_engine_fault(durable_flowable, topic, tmp_path, fault_ledger, restart)


@pytest.mark.fault("flowable-frozen-mid-run")
async def test_a_frozen_flowable_mid_run_loses_nothing(
    durable_flowable: FlowableServer, topic: str, tmp_path: Path, fault_ledger: FaultLedger
) -> None:
    pid = durable_flowable.pid
    assert pid is not None

    async def freeze() -> None:
        os.killpg(pid, signal.SIGSTOP)  # every request now hangs: past the 2 s request timeout
        try:
            await asyncio.sleep(6)
        finally:
            os.killpg(pid, signal.SIGCONT)

    output = await _through_an_engine_fault(durable_flowable, topic, tmp_path, fault_ledger, freeze)
    assert "timeout" in output.lower()  # the freeze was felt, and survived


@pytest.mark.fault("worker-frozen-past-its-lock")
async def test_a_worker_frozen_past_its_lock_gets_403_and_the_job_is_done_once_elsewhere(
    real_flowable: RealFlowable, topic: str, tmp_path: Path, fault_ledger: FaultLedger
) -> None:
    created = await real_flowable.create_jobs(topic, 4)
    metrics_port = _free_port()
    frozen = _worker(
        real_flowable.base_url, topic, tmp_path, "frozen",
        FLOWABLE_WORKER_LOCK_DURATION="PT3S",
        FLOWABLE_WORKER_METRICS_PORT=str(metrics_port),
        FLOWABLE_WORKER_METRICS_HOST="127.0.0.1",
        FWO_TEST_SLOW="1.5",
    )
    release = asyncio.Event()

    async def held_until_released(job: Job) -> dict[str, str]:
        await release.wait()
        return {"handledBy": job.worker_id}

    try:
        await eventually(_started(tmp_path, "frozen", 4), within=60)
        frozen.signal(signal.SIGSTOP)  # a stalled pod: its locks run out while it cannot act
        rescuer = Worker(worker_settings(
            real_flowable.base_url, topics=(topic,), worker_id="rescuer", lock_duration=60,
        ))
        rescuer.add_handler(topic, held_until_released)
        async with serving(rescuer):
            try:
                async def rescuer_holds_all() -> bool:
                    acquired = rescuer.metrics.registry.get_sample_value(
                        "flowable_worker_jobs_acquired_total", {"topic": topic}
                    )
                    return acquired == 4

                await eventually(rescuer_holds_all, within=30)
            finally:
                frozen.signal(signal.SIGCONT)

            async def refused() -> bool:
                return _forbidden(metrics_port) >= 4

            # Thawed, it finishes (or times out) its handlers and reports: Flowable answers 403,
            # the rescuer holds the locks now. The worker counts them lost and moves on.
            await eventually(refused, within=30)
            fault_ledger.injected(int(_forbidden(metrics_port)))
            release.set()
            await _all_done(real_flowable.base_url, created, within=60)
        code = await _stop(frozen)
    finally:
        frozen.kill()
    completions = await real_flowable.task_completions(created)
    fault_ledger.judge([c.instance_id for c in created], completions)
    assert code == 0, frozen.output()
    assert set(completions.values()) == {1}
    assert len(completions) == 4
    for c in created:
        assert (await real_flowable.instance_variables(c))["handledBy"] == "rescuer"


def _forbidden(port: int) -> float:
    """The worker's results refused with 403 (lock lost), whatever the call."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("flowable_worker_report_errors_total{") and 'reason="forbidden"' in line
    )


def _started(tmp_path: Path, name: str, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        path = tmp_path / f"{name}.handled"
        return path.exists() and path.read_text().count(" start") >= count

    return check


def _ended(tmp_path: Path, name: str, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return _ends(tmp_path, name) >= count

    return check
