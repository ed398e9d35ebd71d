"""The worker under injected faults: it keeps running, loses nothing and completes nothing twice.

Each test breaks one thing (bursts of 5xx, connection resets, timeouts, malformed JSON, 401,
answers lost after the engine acted), works a batch of jobs through it, and then checks the
emulator's own record: every instance finished, exactly one successful completion each, and the
worker still serving afterwards (a job created after the faults is completed too).
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from flowable_worker.job import Job
from flowable_worker.runtime import Worker
from tests.support.emulator import Fault, FaultKind, FlowableEmulator
from tests.support.fault_ledger import FaultLedger

from .conftest import eventually, serving, worker_settings

JOBS = 30


async def _work_through(
    emulator: FlowableEmulator,
    ledger: FaultLedger,
    faults: list[Fault],
    *,
    lock_duration: float = 30,
) -> Worker:
    for _ in range(JOBS):
        emulator.create_job("faulty")
    for fault in faults:
        emulator.inject(fault)
    handled: Counter[str] = Counter()

    async def handler(job: Job) -> dict[str, str]:
        handled[job.id] += 1
        return {"handledBy": job.worker_id}

    worker = Worker(worker_settings(
        emulator.base_url, topics=("faulty",), concurrency=4, request_timeout=0.5,
        lock_duration=lock_duration,
    ))
    worker.add_handler("faulty", handler)
    async with serving(worker) as task:
        async def all_finished() -> bool:
            return all(i.finished for i in emulator.instances())

        await eventually(all_finished, within=60)
        emulator.clear_faults()
        late = emulator.create_job("faulty")

        async def late_finished() -> bool:
            return emulator.instance(late.instance_id).finished

        await eventually(late_finished, within=20)
        assert not task.done(), "the worker stopped by itself"
    per_instance = Counter(c.instance_id for c in emulator.completions())
    ledger.injected(sum(fault.hits for fault in faults))
    ledger.judge([i.id for i in emulator.instances()], per_instance)
    assert len(per_instance) == JOBS + 1
    assert set(per_instance.values()) == {1}
    for kind in {fault.kind for fault in faults}:
        fired = sum(fault.hits for fault in faults if fault.kind is kind)
        assert fired > 0, f"{kind} never fired: the test proves nothing"
    return worker


def _metric(worker: Worker, name: str, **labels: str) -> float:
    value = worker.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


@pytest.mark.fault("flowable-5xx-burst")
async def test_a_burst_of_server_errors(
    fault_emulator: FlowableEmulator, fault_ledger: FaultLedger
) -> None:
    worker = await _work_through(fault_emulator, fault_ledger, [
        Fault(FaultKind.SERVER_ERROR, endpoint="acquire", times=15),
        Fault(FaultKind.SERVER_ERROR, endpoint="complete", times=10, status=503),
    ])
    assert _metric(worker, "flowable_worker_acquire_errors_total",
                   topic="faulty", reason="http_5xx") == 15


@pytest.mark.fault("connection-resets")
async def test_connection_resets(
    fault_emulator: FlowableEmulator, fault_ledger: FaultLedger
) -> None:
    worker = await _work_through(fault_emulator, fault_ledger, [
        Fault(FaultKind.CONNECTION_RESET, endpoint="acquire", times=1),  # at least one, surely
        Fault(FaultKind.CONNECTION_RESET, endpoint="acquire", probability=0.3),
        Fault(FaultKind.CONNECTION_RESET, endpoint="complete", probability=0.3),
    ])
    assert _metric(worker, "flowable_worker_acquire_errors_total",
                   topic="faulty", reason="transport") > 0


@pytest.mark.fault("request-timeouts")
async def test_timeouts(
    fault_emulator: FlowableEmulator, fault_ledger: FaultLedger
) -> None:
    # The engine still applies a slow request after the client gave up on it: a repeat must
    # then find the job gone and count it as done, not complete it again.
    await _work_through(fault_emulator, fault_ledger, [
        Fault(FaultKind.LATENCY, endpoint="acquire", times=3, delay_seconds=1.0),
        Fault(FaultKind.LATENCY, endpoint="complete", times=5, delay_seconds=1.0),
    ], lock_duration=3)


@pytest.mark.fault("malformed-json")
async def test_malformed_json(
    fault_emulator: FlowableEmulator, fault_ledger: FaultLedger
) -> None:
    worker = await _work_through(fault_emulator, fault_ledger, [
        Fault(FaultKind.MALFORMED_JSON, endpoint="acquire", times=8),
    ])
    assert _metric(worker, "flowable_worker_acquire_errors_total",
                   topic="faulty", reason="invalid_response") == 8


@pytest.mark.fault("unauthorized-401")
async def test_unauthorized(
    fault_emulator: FlowableEmulator, fault_ledger: FaultLedger
) -> None:
    worker = await _work_through(fault_emulator, fault_ledger, [
        Fault(FaultKind.UNAUTHORIZED, endpoint="acquire", times=6),
        Fault(FaultKind.UNAUTHORIZED, endpoint="complete", times=3),
    ])
    assert _metric(worker, "flowable_worker_acquire_errors_total",
                   topic="faulty", reason="unauthorized") == 6


@pytest.mark.fault("answers-lost-after-the-engine-acted")
async def test_answers_lost_after_the_engine_acted(
    fault_emulator: FlowableEmulator, fault_ledger: FaultLedger
) -> None:
    # A lost complete answer is retried and found done (404); a lost acquire answer leaves jobs
    # locked to us that come back when the short lock expires.
    await _work_through(fault_emulator, fault_ledger, [
        Fault(FaultKind.RESPOND_LOST, endpoint="complete", times=8),
        Fault(FaultKind.RESPOND_LOST, endpoint="acquire", times=2),
    ], lock_duration=2)


@pytest.mark.fault("mixed-faults-at-random")
async def test_everything_at_once(
    fault_emulator: FlowableEmulator, fault_ledger: FaultLedger
) -> None:
    # One sure firing of each kind first (rules are tried in order), then random ones: a run
    # with few acquires must not leave a kind untried by chance.
    await _work_through(fault_emulator, fault_ledger, [
        Fault(FaultKind.MALFORMED_JSON, endpoint="acquire", times=1),
        Fault(FaultKind.SERVER_ERROR, endpoint="acquire", times=1),
        Fault(FaultKind.CONNECTION_RESET, endpoint="complete", times=1),
        Fault(FaultKind.RESPOND_LOST, endpoint="complete", times=1),
        Fault(FaultKind.SERVER_ERROR, probability=0.1),
        Fault(FaultKind.CONNECTION_RESET, probability=0.1),
        Fault(FaultKind.MALFORMED_JSON, endpoint="acquire", probability=0.1),
        Fault(FaultKind.RESPOND_LOST, endpoint="complete", probability=0.1),
    ], lock_duration=2)


@pytest.mark.fault("flowable-down-at-shutdown")
async def test_shutdown_while_flowable_is_down_still_exits(
    fault_emulator: FlowableEmulator, fault_ledger: FaultLedger
) -> None:
    fault_emulator.create_job("down")
    started = asyncio.Event()
    injected: list[Fault] = []

    async def handler(job: Job) -> None:
        started.set()
        await asyncio.sleep(0.3)
        injected.append(fault_emulator.inject(Fault(FaultKind.CONNECTION_RESET)))

    worker = Worker(worker_settings(fault_emulator.base_url, topics=("down",), grace_period=2,
                                    request_timeout=0.5))
    worker.add_handler("down", handler)
    async with serving(worker):
        await started.wait()
        await asyncio.sleep(0.5)
    # The complete could not be delivered; the job returns when its lock expires, never lost.
    fault_ledger.injected(sum(f.hits for f in injected))
    fault_ledger.count(
        judged=1,
        lost=0 if len(fault_emulator.jobs()) == 1 else 1,
        duplicates=max(0, len(fault_emulator.completions()) - 1),
    )
    assert fault_emulator.completions() == []
    assert len(fault_emulator.jobs()) == 1


@pytest.fixture(autouse=True)
def _quiet_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("ERROR")
