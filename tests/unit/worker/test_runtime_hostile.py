"""The runtime when the world misbehaves: topics competing for slots, handlers that never return.

Each test here failed before the fix it guards (see the issue notes in docs/worker.md): a topic's
poller that read "no slot this time" as "stop", and a hung sync handler whose thread starved the
jobs after it until they were failed without having run.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from flowable_worker.job import Job
from flowable_worker.runtime import Worker
from tests.support.emulator import FlowableEmulator

from .conftest import eventually, serving, settings_for


def _finished(emulator: FlowableEmulator, topic: str | None = None) -> int:
    return sum(
        1 for i in emulator.instances() if i.finished and (topic is None or i.topic == topic)
    )


def _polls(worker: Worker, topic: str) -> float:
    value = worker.metrics.registry.get_sample_value(
        "flowable_worker_acquire_requests_total", {"topic": topic}
    )
    return value or 0.0


async def test_a_worker_serving_several_topics_keeps_every_poller_alive(
    emulator: FlowableEmulator,
) -> None:
    topics = ("t1", "t2", "t3", "t4")
    for topic in topics:
        for _ in range(150):
            emulator.create_job(topic)
    worker = Worker(settings_for(emulator, concurrency=16))

    def work(job: Job) -> None:
        time.sleep(0.002)

    for topic in topics:
        worker.add_handler(topic, work)
    async with serving(worker):
        async def drained() -> bool:
            return _finished(emulator) == 600

        await eventually(drained, within=40)
        # Every topic's poller is still polling afterwards (its backlog is empty, so it backs
        # off, but it never stops).
        before = {t: _polls(worker, t) for t in topics}
        await asyncio.sleep(0.6)
        after = {t: _polls(worker, t) for t in topics}
        ready, reason = worker.health.ready()
    assert {t: _finished(emulator, t) for t in topics} == dict.fromkeys(topics, 150)
    assert all(after[t] > before[t] for t in topics), (before, after)
    assert (ready, reason) == (True, "ok")


async def test_hung_sync_handlers_do_not_starve_the_jobs_after_them(
    emulator: FlowableEmulator,
) -> None:
    hung = [emulator.create_job("mixed", variables=[{"name": "hang", "type": "boolean",
                                                      "value": True}]) for _ in range(2)]
    healthy = [emulator.create_job("mixed") for _ in range(10)]
    release = threading.Event()
    ran: list[str] = []

    def handler(job: Job) -> None:
        if job.variables.get("hang"):
            release.wait(30)  # "never" returns (released when the test ends)
            return
        ran.append(job.id)
        time.sleep(0.05)

    worker = Worker(settings_for(emulator, topics=("mixed",), concurrency=2, batch_size=2,
                                 handler_timeout=1, lock_duration=30))
    worker.add_handler("mixed", handler)
    try:
        async with serving(worker):
            async def healthy_done() -> bool:
                return sum(1 for j in healthy if _is_completed(emulator, j.id)) == 10

            await eventually(healthy_done, within=20)
            hung_gauge = worker.metrics.registry.get_sample_value(
                "flowable_worker_handlers_hung"
            )
            ready, reason = worker.health.ready()
    finally:
        release.set()
    assert sorted(ran) == sorted(j.id for j in healthy)  # every healthy job really ran
    failed = {r.job_id for r in emulator.requests(endpoint="fail")
              if r.body.get("errorMessage", "").startswith("handler timed out")}
    assert failed <= {j.id for j in hung}, "a healthy job was failed as timed out"
    assert hung_gauge is not None
    assert hung_gauge >= 2  # each run of a hanging job leaves one thread behind
    assert not ready
    assert "hung" in reason


def _is_completed(emulator: FlowableEmulator, job_id: str) -> bool:
    return any(r.job_id == job_id for r in emulator.requests(endpoint="complete"))


async def test_stop_returns_within_the_grace_period_while_a_sync_handler_hangs(
    emulator: FlowableEmulator,
) -> None:
    created = emulator.create_job("stuck-sync")
    started = threading.Event()
    release = threading.Event()

    def stuck(job: Job) -> None:
        started.set()
        release.wait(60)

    worker = Worker(settings_for(emulator, topics=("stuck-sync",), grace_period=0.5))
    worker.add_handler("stuck-sync", stuck)
    try:
        async with serving(worker):
            await asyncio.to_thread(started.wait, 10)
            begun = time.monotonic()
        took = time.monotonic() - begun
    finally:
        release.set()
    assert took < 3
    job = emulator.job(created.id)
    assert job is not None
    assert job.lock_owner is None  # given back, not left locked
    assert job.retries == 3


@pytest.fixture(autouse=True)
def _quiet_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("ERROR")
