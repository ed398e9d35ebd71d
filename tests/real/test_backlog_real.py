"""Backlog probes against a real Flowable 7.2: discovery finds the right elements, counts are exact.

Each test deploys its own models under fresh keys, topics and element ids (the session's server is
shared), so assertions about "exactly these selectors" hold whatever else is deployed: an element
id is counted with one selector for every definition only while no other model gives it another
topic, so a reused id such as `taskA` would make the selectors depend on the tests run before.
The prober re-lists definitions on every probe (`discovery_interval=0`) and shares nothing across
probes (`max_age=0`), so every probe sees the engine's state at that moment.

Pinned here: a CMMN external-worker job's `elementId` is the `<task>`'s id, not the id of the
`<planItem>` that uses it; `tenantId=""` selects jobs without a tenant; `elementId` alone selects
the element's jobs in every version, BPMN and CMMN alike, across tenants.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flowable_worker import ClientSettings, FlowableClient
from flowable_worker_operator.backlog import BacklogProber, ProbeResult, Selector
from flowable_worker_operator.engines import Engine
from flowable_worker_operator.scaling import Backlog
from localstack.flowable_server import DeployedModel, FlowableRestApi
from tests.support.real_flowable import MODELS_DIR, RealFlowable, one_task_model
from tests.support.waiting import eventually

pytestmark = pytest.mark.real_flowable

TWO_TOPICS_MODEL: Path = MODELS_DIR / "backlog-two-topics.bpmn20.xml"


def uid() -> str:
    return uuid.uuid4().hex[:10]


def two_topics_model(key: str, topics: Topics) -> str:
    """taskA on `topics.a`, taskB on `topics.b`, taskExpr on `${exprTopic}`, all in parallel; the
    tasks' ids are `topics.task_a`, `topics.task_b` and `topics.task_expr`."""
    return (
        TWO_TOPICS_MODEL.read_text()
        .replace("@DEFINITION_KEY@", key)
        .replace("@TOPIC_A@", topics.a)
        .replace("@TOPIC_B@", topics.b)
        .replace("taskA", topics.task_a)
        .replace("taskB", topics.task_b)
        .replace("taskExpr", topics.task_expr)
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
async def per_definition() -> AsyncIterator[BacklogProber]:
    """A prober that never collapses: one selector per definition, the count to compare with."""
    probing = BacklogProber(max_age=0.0, discovery_interval=0.0, collapse_elements=False)
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
    """Fresh topic names for one test: A and B are static, C is what the expression yields; and
    fresh ids for the two-topics model's tasks."""

    def __init__(self) -> None:
        run = uid()
        self.a, self.b, self.c = f"a-{run}", f"b-{run}", f"c-{run}"
        self.task_a, self.task_b, self.task_expr = f"taskA_{run}", f"taskB_{run}", f"taskExpr_{run}"


async def deploy_two_topics(
    api: FlowableRestApi, topics: Topics, *, key: str, tenant_id: str | None = None
) -> DeployedModel:
    xml = two_topics_model(key, topics)
    return await api.deploy(xml, scope_type="bpmn", tenant_id=tenant_id)


async def start_processes(
    api: FlowableRestApi, model: DeployedModel, topics: Topics, count: int
) -> None:
    variables = [{"name": "exprTopic", "type": "string", "value": topics.c}]
    for _ in range(count):
        await api.start_process_instance(definition_id=model.definition_id, variables=variables)


async def deploy_case(api: FlowableRestApi, topic: str, element_id: str) -> DeployedModel:
    xml = one_task_model(
        scope_type="cmmn", definition_key=f"case_{uid()}", topic=topic, element_id=element_id
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
    api: FlowableRestApi, engine: Engine, prober: BacklogProber, per_definition: BacklogProber
) -> None:
    topics = Topics()
    case_task = f"caseTask_{uid()}"
    process = await deploy_two_topics(api, topics, key=f"two_{uid()}")
    case = await deploy_case(api, topics.a, case_task)

    on_a = await prober.backlog(engine, topics.a, None)
    on_b = await prober.backlog(engine, topics.b, None)
    on_a_per_definition = await per_definition.backlog(engine, topics.a, None)

    # Every id is used by one definition, on one topic: one selector for every definition each.
    assert set(on_a.selectors) == {Selector(topics.task_a), Selector(case_task)}
    assert on_b.selectors == (Selector(topics.task_b),)
    assert set(on_a_per_definition.selectors) == {
        Selector(topics.task_a, process_definition_id=process.definition_id),
        Selector(case_task, scope_definition_id=case.definition_id),
    }
    assert on_a.backlog == on_b.backlog == Backlog(unlocked=0, locked=0)
    # Topic a is on literal tasks: the engine's expression topic (this model's `${exprTopic}`,
    # and any other model's) is one bounded note for the pool, not a problem that stops it.
    assert on_a.problems == ()
    [note] = [n for n in on_a.notes if n.reason == "UnresolvedTopics"]
    assert "expression" in note.message
    assert len(note.message) <= 1024


async def test_a_cmmn_job_carries_the_task_id_not_the_plan_item_id(
    api: FlowableRestApi, engine: Engine, prober: BacklogProber, client: FlowableClient
) -> None:
    topic, task = f"cmmn-{uid()}", f"caseTask_{uid()}"
    case = await deploy_case(api, topic, task)  # <planItem id="planItem_<task>" definitionRef=...>
    await start_cases(api, case, 2)

    jobs = await client.list_jobs(scope_definition_id=case.definition_id)
    by_task = Selector(task, scope_definition_id=case.definition_id)
    by_plan_item = Selector(f"planItem_{task}", scope_definition_id=case.definition_id)

    assert {job.element_id for job in jobs.data} == {task}
    assert {job.scope_type for job in jobs.data} == {"cmmn"}
    assert (await prober.backlog(engine, topic, [by_task])).backlog == Backlog(2, 0)
    assert (await prober.backlog(engine, topic, [by_plan_item])).backlog == Backlog(0, 0)
    assert (await prober.backlog(engine, topic, None)).selectors == (Selector(task),)


async def test_counts_follow_jobs_through_acquire_and_complete(
    api: FlowableRestApi,
    engine: Engine,
    prober: BacklogProber,
    client: FlowableClient,
) -> None:
    topics = Topics()
    process = await deploy_two_topics(api, topics, key=f"two_{uid()}")
    case = await deploy_case(api, topics.a, f"caseTask_{uid()}")
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
    assert all(selector.every_definition for selector in acquired.selectors)
    held = await prober.in_flight(engine, acquired.selectors)
    assert held.owners == {"pod-1": 3, "pod-2": 2}
    # The engine's own createTime: the newest job held, and the longest-waiting one.
    assert held.newest_created == max(job.create_time for job in [*first, *second])
    waiting = [
        job
        for selector in acquired.selectors
        for job in (await client.list_jobs(size=10, **selector.filters("unlocked"))).data
    ]
    assert len(waiting) == 2
    oldest = await prober.oldest_waiting(engine, acquired.selectors)
    assert oldest == min(job.create_time for job in waiting)

    for job in first[:2]:
        await client.complete_job(job.id, worker_id="pod-1")

    await settles_at(prober, engine, topics.a, Backlog(unlocked=2, locked=3))
    held = await prober.in_flight(engine, acquired.selectors)
    assert held.owners == {"pod-1": 1, "pod-2": 2}
    assert (await prober.backlog(engine, topics.b, None)).backlog == Backlog(unlocked=4, locked=0)


async def test_every_version_is_counted_with_one_selector_until_another_model_reuses_the_id(
    api: FlowableRestApi,
    engine: Engine,
    prober: BacklogProber,
    per_definition: BacklogProber,
    client: FlowableClient,
) -> None:
    topics = Topics()
    key = f"versioned_{uid()}"
    versions = [await deploy_two_topics(api, topics, key=key) for _ in range(3)]
    for started, version in zip((2, 3, 4), versions, strict=True):
        await start_processes(api, version, topics, started)
    await client.acquire_jobs(
        topic=topics.a, worker_id="pod-1", lock_duration="PT10M", number_of_tasks=2
    )

    collapsed = await prober.backlog(engine, topics.a, None)
    summed = await per_definition.backlog(engine, topics.a, None)

    assert [v.definition_id.split(":")[1] for v in versions] == ["1", "2", "3"]
    assert collapsed.selectors == (Selector(topics.task_a),)
    assert set(summed.selectors) == {
        Selector(topics.task_a, process_definition_id=v.definition_id) for v in versions
    }
    assert collapsed.backlog == summed.backlog == Backlog(unlocked=7, locked=2)
    assert (await prober.in_flight(engine, collapsed.selectors)).owners == {"pod-1": 2}

    # A 4th deployment, of another model, gives the same element id another topic; its jobs
    # have that elementId too, and must not count for topic A.
    other_topic = f"other-{uid()}"
    xml = one_task_model(
        scope_type="bpmn",
        definition_key=f"reuser_{uid()}",
        topic=other_topic,
        element_id=topics.task_a,
    )
    reuser = await api.deploy(xml, scope_type="bpmn")
    for _ in range(5):
        await api.start_process_instance(definition_id=reuser.definition_id, variables=[])

    fallen_back = await prober.backlog(engine, topics.a, None)
    other = await prober.backlog(engine, other_topic, None)

    assert set(fallen_back.selectors) == set(summed.selectors)
    assert fallen_back.backlog == Backlog(unlocked=7, locked=2)
    assert other.selectors == (Selector(topics.task_a, process_definition_id=reuser.definition_id),)
    assert other.backlog == Backlog(unlocked=5, locked=0)
    # What the collapsed selector would read now: both topics' jobs (why it is not used).
    assert (await prober.backlog(engine, topics.a, [Selector(topics.task_a)])).backlog == Backlog(
        unlocked=12, locked=2
    )


async def test_bpmn_and_cmmn_sharing_an_id_and_the_topic_are_counted_together(
    api: FlowableRestApi, engine: Engine, prober: BacklogProber, per_definition: BacklogProber
) -> None:
    topics = Topics()
    process = await deploy_two_topics(api, topics, key=f"shared_{uid()}")
    case = await deploy_case(api, topics.a, topics.task_a)  # the CMMN task has taskA's id
    await start_processes(api, process, topics, 3)
    await start_cases(api, case, 2)

    collapsed = await prober.backlog(engine, topics.a, None)
    summed = await per_definition.backlog(engine, topics.a, None)

    assert collapsed.selectors == (Selector(topics.task_a),)
    assert len(summed.selectors) == 2
    assert collapsed.backlog == summed.backlog == Backlog(unlocked=5, locked=0)


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
            topics.task_a, process_definition_id=definition.definition_id, tenant_id=tenant
        )
        return (await prober.backlog(engine, topics.a, [selector])).backlog

    # Discovered: one selector for both tenants' definitions, no tenant filter (as workers acquire).
    discovered = await prober.backlog(engine, topics.a, None)
    assert discovered.selectors == (Selector(topics.task_a),)
    assert discovered.backlog == Backlog(unlocked=5, locked=0)
    assert await count(acme, "acme") == Backlog(unlocked=2, locked=0)
    assert await count(acme, "other") == Backlog(unlocked=0, locked=0)
    assert await count(acme, None) == Backlog(unlocked=2, locked=0)
    # Flowable stores "no tenant" as "", and `tenantId=` selects exactly those jobs.
    assert await count(shared, "") == Backlog(unlocked=3, locked=0)
    assert await count(acme, "") == Backlog(unlocked=0, locked=0)
