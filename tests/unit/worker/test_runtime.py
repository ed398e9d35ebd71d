"""The runtime loop against an emulated Flowable: acquire, handle, report, stop."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from flowable_worker import FlowableClient
from flowable_worker.job import Job
from flowable_worker.results import BpmnError
from flowable_worker.runtime import Worker
from tests.support.emulator import Fault, FaultKind, FlowableEmulator

from .conftest import eventually, serving, settings_for


def _finished(emulator: FlowableEmulator) -> int:
    return sum(1 for i in emulator.instances() if i.finished)


async def _all_finished(emulator: FlowableEmulator, count: int, within: float = 20) -> None:
    async def done() -> bool:
        return _finished(emulator) >= count

    await eventually(done, within=within)


async def test_every_job_is_completed_with_the_handlers_variables(
    emulator: FlowableEmulator,
) -> None:
    for n in range(30):
        emulator.create_job("calc", variables=[{"name": "n", "type": "integer", "value": n}])
    worker = Worker(settings_for(emulator, topics=("calc",)))

    @worker.topic("calc")
    def double(job: Job) -> dict[str, Any]:
        return {"doubled": job.variables["n"] * 2}

    async with serving(worker):
        await _all_finished(emulator, 30)
    completions = emulator.completions()
    assert len(completions) == 30
    for instance in emulator.instances():
        n = instance.variables["n"]["value"]
        assert instance.variables["doubled"]["value"] == 2 * n


async def test_one_process_works_several_topics_with_their_own_handlers(
    emulator: FlowableEmulator,
) -> None:
    for _ in range(5):
        emulator.create_job("a")
        emulator.create_job("b")
    worker = Worker(settings_for(emulator))

    @worker.topic("a")
    async def complete(job: Job) -> None:
        return None

    @worker.topic("b")
    async def reject(job: Job) -> None:
        raise BpmnError("REJECTED")

    async with serving(worker):
        await _all_finished(emulator, 10)
    outcomes = {(i.topic, i.outcome) for i in emulator.instances()}
    assert outcomes == {("a", "complete"), ("b", "bpmnError")}


async def test_never_more_jobs_in_flight_than_the_concurrency(emulator: FlowableEmulator) -> None:
    for _ in range(40):
        emulator.create_job("slow")
    running = 0
    most = 0
    lock = threading.Lock()

    def slow(job: Job) -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.02)
        with lock:
            running -= 1

    worker = Worker(settings_for(emulator, topics=("slow",), concurrency=3, batch_size=10))
    worker.add_handler("slow", slow)
    async with serving(worker):
        await _all_finished(emulator, 40)
    assert most == 3
    asked = [r.body["numberOfTasks"] for r in emulator.requests(endpoint="acquire")]
    assert max(asked) <= 3


async def test_a_full_batch_is_followed_by_an_immediate_poll(emulator: FlowableEmulator) -> None:
    for _ in range(50):
        emulator.create_job("fast")
    worker = Worker(settings_for(emulator, topics=("fast",), concurrency=10,
                                 poll_interval_min=1, poll_interval_max=2))
    worker.add_handler("fast", lambda job: None)
    started = time.monotonic()
    async with serving(worker):
        await _all_finished(emulator, 50, within=10)
        elapsed = time.monotonic() - started
    # Had the worker slept after any of its (at least 5) non-empty polls, this would take >= 5s.
    assert elapsed < 3


async def test_empty_polls_back_off_up_to_the_bound(emulator: FlowableEmulator) -> None:
    worker = Worker(settings_for(emulator, topics=("idle",), poll_interval_min=0.05,
                                 poll_interval_max=0.2))
    worker.add_handler("idle", lambda job: None)
    async with serving(worker):
        await asyncio.sleep(1.5)
    polls = len(emulator.requests(endpoint="acquire"))
    # Unbounded hammering would be hundreds; no backoff bound would be ~4 (0.05+0.1+0.2+0.4...).
    assert 6 <= polls <= 25


async def test_a_handler_exception_fails_the_job_with_its_traceback(
    emulator: FlowableEmulator,
) -> None:
    created = emulator.create_job("broken")
    worker = Worker(settings_for(emulator, topics=("broken",), fail_retries=1))

    def explode(job: Job) -> None:
        raise RuntimeError("database down")

    worker.add_handler("broken", explode)
    async with serving(worker):
        async def failed() -> bool:
            return len(emulator.requests(endpoint="fail")) >= 1

        await eventually(failed, within=10)
    # The fail request itself, not the job's last state: with a retry left the job is acquirable
    # again at once, and a worker that took it again before stopping gives it back with a
    # message of its own (a race this test lost about once in a few hundred runs).
    first = emulator.requests(endpoint="fail")[0]
    assert first.job_id == created.id
    assert first.body["errorMessage"] == "RuntimeError: database down"
    assert "explode" in first.body["errorDetails"]
    assert first.body["retries"] == 1


async def test_a_handler_that_overruns_its_timeout_fails_the_job(
    emulator: FlowableEmulator,
) -> None:
    created = emulator.create_job("hang")
    worker = Worker(settings_for(emulator, topics=("hang",), handler_timeout=0.3,
                                 lock_duration=5, fail_retries=0))

    async def hang(job: Job) -> None:
        await asyncio.sleep(30)

    worker.add_handler("hang", hang)
    async with serving(worker):
        async def dead_lettered() -> bool:
            return any(j.id == created.id for j in emulator.dead_letter_jobs())

        await eventually(dead_lettered, within=10)
    assert emulator.dead_letter_jobs()[0].exception_message == "handler timed out after 0.3s"


async def test_stop_lets_running_handlers_finish_within_the_grace_period(
    emulator: FlowableEmulator,
) -> None:
    for _ in range(3):
        emulator.create_job("finish")
    started = asyncio.Event()

    async def slowish(job: Job) -> None:
        started.set()
        await asyncio.sleep(0.5)

    worker = Worker(settings_for(emulator, topics=("finish",), grace_period=5))
    worker.add_handler("finish", slowish)
    async with serving(worker):
        await started.wait()
    assert _finished(emulator) == 3


async def test_handlers_past_the_grace_period_are_abandoned_and_given_back(
    emulator: FlowableEmulator,
) -> None:
    created = [emulator.create_job("stuck") for _ in range(2)]
    started = asyncio.Event()

    async def stuck(job: Job) -> None:
        started.set()
        await asyncio.sleep(60)

    worker = Worker(settings_for(emulator, topics=("stuck",), grace_period=0.3))
    worker.add_handler("stuck", stuck)
    begun = time.monotonic()
    async with serving(worker):
        await started.wait()
    assert time.monotonic() - begun < 5
    for job in created:
        current = emulator.job(job.id)
        assert current is not None
        assert current.lock_owner is None
        assert current.lock_expiration_time is None
        assert current.retries == 3  # given back: no retry spent
    assert emulator.completions() == []
    assert await _acquire_all(emulator, "stuck") == {j.id for j in created}


async def test_jobs_acquired_while_stopping_are_given_back_unstarted(
    emulator: FlowableEmulator,
) -> None:
    created = [emulator.create_job("late") for _ in range(4)]
    emulator.inject(Fault(FaultKind.LATENCY, endpoint="acquire", delay_seconds=0.5))
    handled: list[str] = []
    worker = Worker(settings_for(emulator, topics=("late",)))
    worker.add_handler("late", lambda job: handled.append(job.id))
    async with serving(worker):
        await asyncio.sleep(0.2)  # the first acquire is in flight now
    assert handled == []
    # Exclusive BPMN jobs are given back by a fail that keeps their retries (an unacquire would
    # leave the process instance locked): at once acquirable again, nothing spent.
    gave_back = emulator.requests(endpoint="fail")
    assert {r.job_id for r in gave_back} == {j.id for j in created}
    assert {r.body["retries"] for r in gave_back} == {3}
    emulator.clear_faults()
    again = await _acquire_all(emulator, "late")
    assert again == {j.id for j in created}


async def test_cmmn_jobs_are_given_back_by_unacquire(emulator: FlowableEmulator) -> None:
    created = [emulator.create_job("late-case", scope_type="cmmn") for _ in range(2)]
    emulator.inject(Fault(FaultKind.LATENCY, endpoint="acquire", delay_seconds=0.5))
    worker = Worker(settings_for(emulator, topics=("late-case",)))
    worker.add_handler("late-case", lambda job: None)
    async with serving(worker):
        await asyncio.sleep(0.2)
    unacquired = emulator.requests(endpoint="unacquire")
    assert {r.job_id for r in unacquired} == {j.id for j in created}


async def _acquire_all(emulator: FlowableEmulator, topic: str) -> set[str]:
    async with FlowableClient(settings_for(emulator).client_settings()) as client:
        jobs = await client.acquire_jobs(
            topic=topic, worker_id="other", lock_duration="PT1M", number_of_tasks=100
        )
    return {j.id for j in jobs}


async def test_probes_and_metrics_are_served(emulator: FlowableEmulator) -> None:
    emulator.create_job("probe")
    worker = Worker(settings_for(emulator, topics=("probe",), metrics_host="127.0.0.1",
                                 metrics_port=_free_port()))
    worker.add_handler("probe", lambda job: {"ok": True})
    async with serving(worker):
        await _all_finished(emulator, 1)
        base = f"http://127.0.0.1:{worker.probe_port}"
        healthz = await asyncio.to_thread(_get, base + "/healthz")
        readyz = await asyncio.to_thread(_get, base + "/readyz")
        metrics = await asyncio.to_thread(_get, base + "/metrics")
    assert healthz == (200, "ok\n")
    assert readyz == (200, "ok\n")
    text = metrics[1]
    assert 'flowable_worker_jobs_completed_total{topic="probe"} 1.0' in text
    assert 'flowable_worker_jobs_acquired_total{topic="probe"} 1.0' in text
    assert "flowable_worker_capacity 16.0" in text
    assert "flowable_worker_acquire_latency_seconds_bucket" in text
    assert "flowable_worker_handler_duration_seconds_bucket" in text


async def test_readyz_fails_while_flowable_does_not_answer(emulator: FlowableEmulator) -> None:
    emulator.inject(Fault(FaultKind.SERVER_ERROR, endpoint="acquire"))
    worker = Worker(settings_for(emulator, topics=("down",), metrics_host="127.0.0.1",
                                 metrics_port=_free_port()))
    worker.add_handler("down", lambda job: None)
    async with serving(worker):
        await asyncio.sleep(0.3)
        base = f"http://127.0.0.1:{worker.probe_port}"
        readyz = await asyncio.to_thread(_get, base + "/readyz")
        healthz = await asyncio.to_thread(_get, base + "/healthz")
    assert readyz[0] == 503
    assert healthz[0] == 200


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.fixture(autouse=True)
def _quiet_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING")


class _BrokenHandler:
    """A handler object (not a function) that raises: the loop itself turns that into a fail."""

    async def handle(self, job: Job) -> Any:
        raise RuntimeError("handler object broke")

    async def aclose(self) -> None:
        return None


async def test_each_failure_is_counted_by_why(emulator: FlowableEmulator) -> None:
    for topic in ("raises", "signals", "object", "slow"):
        emulator.create_job(topic)
    worker = Worker(settings_for(emulator, fail_retries=0, handler_timeout=0.2, lock_duration=5))

    def raises(job: Job) -> None:
        raise ValueError("bad input")

    def signals(job: Job) -> None:
        from flowable_worker import Fail

        raise Fail("not now", retries=0)

    async def slow(job: Job) -> None:
        await asyncio.sleep(5)

    worker.add_handler("raises", raises)
    worker.add_handler("signals", signals)
    worker.add_handler("object", _BrokenHandler())
    worker.add_handler("slow", slow)

    def failed(topic: str, reason: str) -> float | None:
        return worker.metrics.registry.get_sample_value(
            "flowable_worker_jobs_failed_total", {"topic": topic, "reason": reason}
        )

    async with serving(worker):
        async def all_failed() -> bool:
            return len(emulator.requests(endpoint="fail")) >= 4

        await eventually(all_failed, within=10)
    assert failed("raises", "handler") == 1
    assert failed("signals", "signal") == 1
    assert failed("object", "handler") == 1
    assert failed("slow", "timeout") == 1
