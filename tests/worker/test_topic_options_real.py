"""Per-topic settings against the real Flowable: each topic's jobs are locked for its own duration.

`@worker.topic("x", lock_duration=...)` must reach Flowable's acquire, and Flowable must lock
that topic's jobs for that long (its `lockExpirationTime`), while the other topics keep the
worker's `--lock-duration`.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from flowable_worker import FlowableClient
from flowable_worker.job import Job
from flowable_worker.runtime import Worker
from tests.support.real_flowable import RealFlowable

from .conftest import eventually, serving, worker_settings

pytestmark = pytest.mark.real_flowable


async def test_each_topic_is_locked_for_its_own_duration(
    real_flowable: RealFlowable, topic: str
) -> None:
    export, lookup = f"{topic}-export", f"{topic}-lookup"
    created = {
        export: await real_flowable.create_jobs(export, 2),
        lookup: await real_flowable.create_jobs(lookup, 2),
    }
    release = asyncio.Event()
    holding: set[str] = set()

    async def hold(job: Job) -> None:
        holding.add(job.id)
        await release.wait()

    worker = Worker(worker_settings(real_flowable.base_url, lock_duration=120,
                                    worker_id="per-topic"))
    worker.topic(export, lock_duration="PT20M", handler_timeout="PT19M")(hold)
    worker.topic(lookup)(hold)
    try:
        async with serving(worker):
            async def all_held() -> bool:
                return len(holding) == 4

            await eventually(all_held, within=30)
            now = datetime.now(UTC)
            async with FlowableClient(real_flowable.client_settings()) as client:
                page = await client.list_jobs(locked=True, size=1000)
            release.set()
    finally:
        release.set()
    expires = {
        name: [
            (j.lock_expiration_time - now).total_seconds()
            for j in page.data
            if j.lock_owner == "per-topic"
            and j.process_instance_id in {c.instance_id for c in jobs}
            and j.lock_expiration_time is not None
        ]
        for name, jobs in created.items()
    }
    assert len(expires[export]) == 2, expires
    assert len(expires[lookup]) == 2, expires
    assert all(20 * 60 - 60 < s <= 20 * 60 + 5 for s in expires[export]), expires
    assert all(120 - 60 < s <= 120 + 5 for s in expires[lookup]), expires
