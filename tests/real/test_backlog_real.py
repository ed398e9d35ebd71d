"""Backlog probes against a real Flowable 7.2: discovery finds the right elements, counts are exact.

Each test deploys its own models under fresh keys and topics (the session's server is shared), so
assertions about "exactly these selectors" hold whatever else is deployed. The prober re-lists
definitions on every probe (`discovery_interval=0`) and shares nothing across probes
(`max_age=0`), so every probe sees the engine's state at that moment.

Pinned here: a CMMN external-worker job's `elementId` is the `<task>`'s id, not the id of the
`<planItem>` that uses it; `tenantId=""` selects jobs without a tenant.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flowable_worker import ClientSettings, FlowableClient
from flowable_worker_operator.backlog import BacklogProber, Engine, ProbeResult, Selector
from flowable_worker_operator.scaling import Backlog
from tests.support.flowable_server import (
    MODELS_DIR,
    DeployedModel,
    FlowableRestApi,
    RealFlowable,
    one_task_model,
)
from tests.support.waiting import eventually

pytestmark = pytest.mark.real_flowable

TWO_TOPICS_MODEL: Path = MODELS_DIR / "backlog-two-topics.bpmn20.xml"


def uid() -> str:
    return uuid.uuid4().hex[:10]


def two_topics_model(key: str, topic_a: str, topic_b: str) -> str:
    """taskA on `topic_a`, taskB on `topic_b`, taskExpr on `${exprTopic}`, all in parallel."""
    return (
        TWO_TOPICS_MODEL.read_text()
        .replace("@DEFINITION_KEY@", key)
        .replace("@TOPIC_A@", topic_a)
        .replace("@TOPIC_B@", topic_b)
    )


@pytest.fixture
def engine(real_flowable: RealFlowable) -> Engine:
    return Engine(ClientSettings(base_url=real_flowable.base_url, read_retries=0))


@pytest.fixture
async def prober() -> AsyncIterator[BacklogProber]:
    probing = BacklogProber(max_age=0.0, discovery_interval=0.0)
    yield probing
    await probing.aclose()


@pytest.fixture
async def api(real_flowable: RealFlowable) -> AsyncIterator[FlowableRestApi]:
    async with real_flowable.api() as rest:
        yield rest


@pytest.fixture
async def client(real_flowable: RealFlowable) -> AsyncIterator[FlowableClient]:
    async with FlowableClient(real_flowable.client_settings()) as flowable:
        yield flowable


class Topics:
    """Fresh topic names for one test: A and B are static, C is what the expression yields."""

    def __init__(self) -> None:
        run = uid()
        self.a, self.b, self.c = f"a-{run}", f"b-{run}", f"c-{run}"


async def deploy_two_topics(
    api: FlowableRestApi, topics: Topics, *, key: str, tenant_id: str | None = None
) -> DeployedModel:
    xml = two_topics_model(key, topics.a, topics.b)
    return await api.deploy(xml, scope_type="bpmn", tenant_id=tenant_id)


async def start_processes(
    api: FlowableRestApi, model: DeployedModel, topics: Topics, count: int
) -> None:
    variables = [{"name": "exprTopic", "type": "string", "value": topics.c}]
    for _ in range(count):
        await api.start_process_instance(definition_id=model.definition_id, variables=variables)


async def deploy_case(api: FlowableRestApi, topic: str) -> DeployedModel:
    xml = one_task_model(
        scope_type="cmmn", definition_key=f"case_{uid()}", topic=topic, element_id="caseTask"
    )
    return await api.deploy(xml, scope_type="cmmn")


async def start_cases(api: FlowableRestApi, model: DeployedModel, count: int) -> None:
    for _ in range(count):
        await api.start_case_instance(definition_id=model.definition_id)


async def settles_at(
    prober: BacklogProber, engine: Engine, topic: str, expected: Backlog
) -> ProbeResult:
    """The probe once it reads `expected` (completion ends a job within the request, but the
    engine's continuation runs asynchronously; polling keeps the test honest either way)."""
    seen: list[ProbeResult] = []

    async def reads_expected() -> bool:
        seen.append(await prober.backlog(engine, topic, None))
        return seen[-1].backlog == expected

    await eventually(reads_expected, within=15.0)
    return seen[-1]


async def test_discovery_finds_exactly_the_elements_of_each_topic(
    api: FlowableRestApi, engine: Engine, prober: BacklogProber
) -> None:
    topics = Topics()
    process = await deploy_two_topics(api, topics, key=f"two_{uid()}")
    case = await deploy_case(api, topics.a)

    on_a = await prober.backlog(engine, topics.a, None)
    on_b = await prober.backlog(engine, topics.b, None)

    assert set(on_a.selectors) == {
        Selector("taskA", process_definition_id=process.definition_id),
        Selector("caseTask", scope_definition_id=case.definition_id),
    }
    assert on_b.selectors == (Selector("taskB", process_definition_id=process.definition_id),)
    assert on_a.backlog == on_b.backlog == Backlog(unlocked=0, locked=0)
    expression_problems = [p for p in on_a.problems if process.definition_id in p]
    assert len(expression_problems) == 1
    assert "'taskExpr'" in expression_problems[0]
    assert "${exprTopic}" in expression_problems[0]


async def test_a_cmmn_job_carries_the_task_id_not_the_plan_item_id(
    api: FlowableRestApi, engine: Engine, prober: BacklogProber, client: FlowableClient
) -> None:
    topic = f"cmmn-{uid()}"
    case = await deploy_case(api, topic)  # <planItem id="planItem_caseTask" definitionRef=...>
    await start_cases(api, case, 2)

    jobs = await client.list_jobs(scope_definition_id=case.definition_id)
    by_task = Selector("caseTask", scope_definition_id=case.definition_id)
    by_plan_item = Selector("planItem_caseTask", scope_definition_id=case.definition_id)

    assert {job.element_id for job in jobs.data} == {"caseTask"}
    assert {job.scope_type for job in jobs.data} == {"cmmn"}
    assert (await prober.backlog(engine, topic, [by_task])).backlog == Backlog(2, 0)
    assert (await prober.backlog(engine, topic, [by_plan_item])).backlog == Backlog(0, 0)
    assert (await prober.backlog(engine, topic, None)).selectors == (by_task,)


async def test_counts_follow_jobs_through_acquire_and_complete(
    api: FlowableRestApi,
    engine: Engine,
    prober: BacklogProber,
    client: FlowableClient,
) -> None:
    topics = Topics()
    process = await deploy_two_topics(api, topics, key=f"two_{uid()}")
    case = await deploy_case(api, topics.a)
    await start_processes(api, process, topics, 4)
    await start_cases(api, case, 3)

    assert (await prober.backlog(engine, topics.a, None)).backlog == Backlog(unlocked=7, locked=0)
    assert (await prober.backlog(engine, topics.b, None)).backlog == Backlog(unlocked=4, locked=0)

    first = await client.acquire_jobs(
        topic=topics.a, worker_id="pod-1", lock_duration="PT10M", number_of_tasks=3
    )
    second = await client.acquire_jobs(
        topic=topics.a, worker_id="pod-2", lock_duration="PT10M", number_of_tasks=2
    )
    assert (len(first), len(second)) == (3, 2)

    acquired = await prober.backlog(engine, topics.a, None)
    assert acquired.backlog == Backlog(unlocked=2, locked=5)
    owners = await prober.lock_owners(engine, acquired.selectors)
    assert owners == {"pod-1": 3, "pod-2": 2}

    for job in first[:2]:
        await client.complete_job(job.id, worker_id="pod-1")

    await settles_at(prober, engine, topics.a, Backlog(unlocked=2, locked=3))
    assert await prober.lock_owners(engine, acquired.selectors) == {"pod-1": 1, "pod-2": 2}
    assert (await prober.backlog(engine, topics.b, None)).backlog == Backlog(unlocked=4, locked=0)


async def test_every_deployed_version_of_a_model_is_counted(
    api: FlowableRestApi, engine: Engine, prober: BacklogProber
) -> None:
    topics = Topics()
    key = f"versioned_{uid()}"
    first = await deploy_two_topics(api, topics, key=key)
    await start_processes(api, first, topics, 2)
    second = await deploy_two_topics(api, topics, key=key)
    await start_processes(api, second, topics, 3)

    result = await prober.backlog(engine, topics.a, None)

    assert first.definition_id.startswith(f"{key}:1:")
    assert second.definition_id.startswith(f"{key}:2:")
    assert set(result.selectors) == {
        Selector("taskA", process_definition_id=first.definition_id),
        Selector("taskA", process_definition_id=second.definition_id),
    }
    assert result.backlog == Backlog(unlocked=5, locked=0)


async def test_tenant_scoped_selectors_count_only_their_tenant(
    api: FlowableRestApi, engine: Engine, prober: BacklogProber
) -> None:
    topics = Topics()
    key = f"tenanted_{uid()}"
    acme = await deploy_two_topics(api, topics, key=key, tenant_id="acme")
    shared = await deploy_two_topics(api, topics, key=key)
    await start_processes(api, acme, topics, 2)
    await start_processes(api, shared, topics, 3)

    async def count(definition: DeployedModel, tenant: str | None) -> Backlog:
        selector = Selector(
            "taskA", process_definition_id=definition.definition_id, tenant_id=tenant
        )
        return (await prober.backlog(engine, topics.a, [selector])).backlog

    assert (await prober.backlog(engine, topics.a, None)).backlog == Backlog(unlocked=5, locked=0)
    assert await count(acme, "acme") == Backlog(unlocked=2, locked=0)
    assert await count(acme, "other") == Backlog(unlocked=0, locked=0)
    assert await count(acme, None) == Backlog(unlocked=2, locked=0)
    # Flowable stores "no tenant" as "", and `tenantId=` selects exactly those jobs.
    assert await count(shared, "") == Backlog(unlocked=3, locked=0)
    assert await count(acme, "") == Backlog(unlocked=0, locked=0)
