"""The real Flowable test server does what the tests rely on (localstack/flowable-server).

These tests talk to the external-worker API with raw httpx, not with the project's client, so a
bug in the client can't hide a broken server recipe (or the other way round). Where the real
server differs from Flowable's REST API documentation, a test here pins the real behaviour and
docs/flowable-server.md ("Where the real server surprised") lists it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import partial
from typing import Any

import httpx
import pytest

from flowable_worker import TypedValue
from localstack.flowable_server import FlowableServer, start_flowable_server
from tests.support.backend import CreatedJob, ScopeType
from tests.support.real_flowable import RealFlowable
from tests.support.waiting import eventually

pytestmark = pytest.mark.real_flowable

SCOPES: list[ScopeType] = ["bpmn", "cmmn"]


@pytest.fixture(scope="module")
def server() -> Iterator[FlowableServer]:
    with start_flowable_server() as started:
        yield started


@pytest.fixture
def real(server: FlowableServer) -> RealFlowable:
    return RealFlowable.for_server(server)


@pytest.fixture
async def http(server: FlowableServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        yield client


@pytest.fixture
def topic() -> str:
    return f"smoke-{uuid.uuid4().hex[:12]}"


async def acquire(
    http: httpx.AsyncClient, topic: str, *, worker: str = "w1", lock: str = "PT1M", n: int = 10,
    scope_type: ScopeType | None = None,
) -> list[dict[str, Any]]:
    body: dict[str, Any] = {
        "topic": topic, "lockDuration": lock, "workerId": worker, "numberOfTasks": n}
    if scope_type is not None:
        body["scopeType"] = scope_type
    response = await http.post("/external-job-api/acquire/jobs", json=body)
    assert response.status_code == 200, response.text
    jobs: list[dict[str, Any]] = response.json()
    return jobs


def instance_of(job: dict[str, Any], created: list[CreatedJob]) -> CreatedJob:
    instance_id = job["processInstanceId"] or job["scopeId"]
    return next(c for c in created if c.instance_id == instance_id)


async def test_server_serves_process_cmmn_and_external_job_apis(
    http: httpx.AsyncClient,
) -> None:
    engine = await http.get("/process-api/management/engine")
    assert engine.json()["version"] == "7.2.0"
    for path in ("/cmmn-api/cmmn-repository/deployments", "/external-job-api/jobs"):
        assert (await http.get(path)).status_code == 200, path


async def test_bpmn_jobs_are_acquired_completed_and_their_instances_finish(
    real: RealFlowable, http: httpx.AsyncClient, topic: str
) -> None:
    created = await real.create_jobs(topic, 3, variables={"order": "A-1", "amount": 42})

    jobs = await acquire(http, topic)

    assert {j["processInstanceId"] for j in jobs} == {c.instance_id for c in created}
    for job in jobs:
        assert job["elementId"] == "externalTask"
        assert job["processDefinitionId"] == created[0].definition_id
        assert job["lockOwner"] == "w1"
        assert {v["name"]: v["value"] for v in job["variables"]} == {"order": "A-1", "amount": 42}
        done = await http.post(
            f"/external-job-api/acquire/jobs/{job['id']}/complete",
            json={"workerId": "w1",
                  "variables": [{"name": "ok", "type": "boolean", "value": True}]},
        )
        assert done.status_code == 204, done.text

    for one in created:
        await eventually(partial(real.instance_finished, one), within=20)
        assert (await real.instance_variables(one))["ok"] is True


async def test_cmmn_job_has_scope_type_cmmn_and_completing_it_ends_the_case(
    real: RealFlowable, http: httpx.AsyncClient, topic: str
) -> None:
    [created] = await real.create_jobs(topic, scope_type="cmmn")

    [job] = await acquire(http, topic, scope_type="cmmn")

    assert job["scopeType"] == "cmmn"
    assert job["scopeId"] == created.instance_id
    assert job["scopeDefinitionId"] == created.definition_id
    assert job["elementId"] == "externalTask"
    assert job["processInstanceId"] is None
    done = await http.post(
        f"/external-job-api/acquire/jobs/{job['id']}/complete", json={"workerId": "w1"}
    )
    assert done.status_code == 204, done.text
    await eventually(lambda: real.instance_finished(created), within=20)


async def test_bpmn_jobs_have_no_scope_type_yet_acquire_with_scope_type_bpmn_finds_them(
    real: RealFlowable, http: httpx.AsyncClient, topic: str
) -> None:
    """Surprise: BPMN jobs carry scopeType null, so `GET /jobs?scopeType=bpmn` finds none of
    them, while acquire's `scopeType: bpmn` does select them."""
    [created] = await real.create_jobs(topic)
    listed = await http.get(
        "/external-job-api/jobs", params={"processInstanceId": created.instance_id}
    )
    [row] = listed.json()["data"]
    assert row["scopeType"] is None
    by_scope = await http.get(
        "/external-job-api/jobs",
        params={"processInstanceId": created.instance_id, "scopeType": "bpmn"},
    )
    assert by_scope.json()["total"] == 0
    without_scope = await http.get(
        "/external-job-api/jobs",
        params={"processInstanceId": created.instance_id, "withoutScopeType": "true"},
    )
    assert without_scope.json()["total"] == 1

    assert await acquire(http, topic, scope_type="cmmn") == []
    assert [j["id"] for j in await acquire(http, topic, scope_type="bpmn")] == [row["id"]]


async def test_tenant_jobs_carry_the_tenant_and_jobs_without_one_an_empty_string(
    real: RealFlowable, http: httpx.AsyncClient, topic: str
) -> None:
    await real.create_jobs(topic, tenant_id="acme")
    await real.create_jobs(topic)

    jobs = await acquire(http, topic)

    assert sorted(j["tenantId"] for j in jobs) == ["", "acme"]


@pytest.mark.parametrize("scope_type", SCOPES)
async def test_an_expired_lock_is_reset_by_the_engine_within_seconds(
    real: RealFlowable, http: httpx.AsyncClient, topic: str, scope_type: ScopeType
) -> None:
    await real.create_jobs(topic, scope_type=scope_type)
    [job] = await acquire(http, topic, lock="PT1S")

    async def unlocked() -> bool:
        row = (await http.get(f"/external-job-api/jobs/{job['id']}")).json()
        return row["lockOwner"] is None and row["lockExpirationTime"] is None

    await eventually(unlocked, within=8)
    assert [j["id"] for j in await acquire(http, topic, worker="w2")] == [job["id"]]


async def test_reset_expired_locks_returns_once_the_engine_has_cleared_them(
    real: RealFlowable, http: httpx.AsyncClient, topic: str
) -> None:
    await real.create_jobs(topic, 2)
    await real.create_jobs(topic, scope_type="cmmn")
    jobs = await acquire(http, topic, lock="PT1S")
    assert len(jobs) == 3
    expiry = max(_instant(j["lockExpirationTime"]) for j in jobs)
    await asyncio.sleep(max(0.0, (expiry - datetime.now(UTC)).total_seconds()) + 0.05)

    await real.reset_expired_locks()

    assert len(await acquire(http, topic, worker="w2")) == 3


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.parametrize("scope_type", SCOPES)
async def test_failing_with_no_retries_left_makes_a_dead_letter_job(
    real: RealFlowable, http: httpx.AsyncClient, topic: str, scope_type: ScopeType
) -> None:
    created = await real.create_jobs(topic, scope_type=scope_type)
    [job] = await acquire(http, topic)

    failed = await http.post(
        f"/external-job-api/acquire/jobs/{job['id']}/fail",
        json={"workerId": "w1", "errorMessage": "boom", "retries": 0},
    )

    assert failed.status_code == 204, failed.text
    assert await real.dead_letter_job_ids(created) == [job["id"]]
    listed = await http.get("/external-job-api/jobs", params={"id": job["id"]})
    assert listed.json()["total"] == 0


@pytest.mark.parametrize("scope_type", SCOPES)
async def test_every_variable_type_survives_instance_start_and_history(
    real: RealFlowable, http: httpx.AsyncClient, topic: str, scope_type: ScopeType
) -> None:
    """Uses the project's own conversion both ways (what the contract suite relies on). Dates are
    whole seconds: the REST API drops a `date`'s milliseconds (see docs/flowable-server.md)."""
    values: dict[str, Any] = {
        "s": "text", "yes": True, "i": 7, "l": 2**40, "big": 2**70, "f": 1.5,
        "d": Decimal("12.50"), "at": datetime(2024, 5, 8, 9, 35, 45, tzinfo=UTC),
        "local": datetime(2024, 5, 8, 9, 35, 45, 583000), "day": date(2024, 5, 8),
        "doc": {"k": [1, "two", None]}, "nothing": None,
    }
    typed = {"small": TypedValue(3, "short"),
             "moment": TypedValue(datetime(2024, 5, 8, 9, 35, 45, 583000, tzinfo=UTC), "instant")}
    [created] = await real.create_jobs(topic, variables=values | typed, scope_type=scope_type)
    [job] = await acquire(http, topic)
    await http.post(f"/external-job-api/acquire/jobs/{job['id']}/complete",
                    json={"workerId": "w1"})
    await eventually(lambda: real.instance_finished(created), within=20)

    found = await real.instance_variables(created)

    assert found == values | {"small": 3, "moment": typed["moment"].value}
