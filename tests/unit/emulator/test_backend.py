"""EmulatedFlowable: the contract suite's FlowableBackend over the emulator, from asyncio."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal

import httpx
import pytest

from tests.support.emulator import FlowableEmulator
from tests.support.emulator.backend import EmulatedFlowable


@pytest.fixture
def backend(emulator: FlowableEmulator) -> EmulatedFlowable:
    return EmulatedFlowable(emulator)


@pytest.fixture
async def aapi(emulator: FlowableEmulator) -> AsyncIterator[httpx.AsyncClient]:
    """An async client: the emulator serves from its own thread, so the event loop stays free."""
    async with httpx.AsyncClient(base_url=emulator.api_url) as client:
        yield client


async def test_created_jobs_round_trip_python_variables(
        backend: EmulatedFlowable, aapi: httpx.AsyncClient) -> None:
    values = {"n": 5, "big": 2**40, "price": Decimal("1.50"), "day": date(2025, 1, 2),
              "ok": True, "doc": {"a": [1, 2]}}
    [created] = await backend.create_jobs("topic", variables=values)
    assert created.definition_id.startswith("proc_topic:1:")
    assert created.scope_type == "bpmn"
    [job] = (await aapi.post("/acquire/jobs", json={"topic": "topic", "lockDuration": "PT1M",
                                                    "workerId": "w"})).json()
    assert job["processInstanceId"] == created.instance_id
    await aapi.post(f"/acquire/jobs/{job['id']}/complete", json={
        "workerId": "w", "variables": [{"name": "done", "type": "boolean", "value": True}]})
    assert await backend.instance_finished(created)
    assert await backend.instance_variables(created) == {**values, "done": True}


async def test_cmmn_jobs_and_dead_letters(backend: EmulatedFlowable,
                                          aapi: httpx.AsyncClient) -> None:
    created = await backend.create_jobs("topic", 2, scope_type="cmmn", tenant_id="t1")
    assert len({c.instance_id for c in created}) == 2
    assert created[0].definition_id.startswith("case_topic:1:")
    jobs = (await aapi.post("/acquire/jobs", json={"topic": "topic", "lockDuration": "PT1M",
                                                   "workerId": "w", "numberOfTasks": 2})).json()
    assert {j["scopeId"] for j in jobs} == {c.instance_id for c in created}
    await aapi.post(f"/acquire/jobs/{jobs[0]['id']}/fail", json={"workerId": "w", "retries": 0})
    assert await backend.dead_letter_job_ids(created) == [jobs[0]["id"]]
    assert not await backend.instance_finished(created[0])


async def test_client_settings_point_at_the_server_root(backend: EmulatedFlowable,
                                                         emulator: FlowableEmulator) -> None:
    assert str(backend.client_settings().base_url).rstrip("/") == emulator.base_url
    await backend.reset_expired_locks()
