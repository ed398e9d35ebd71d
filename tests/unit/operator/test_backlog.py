"""Backlog probes as a specification: exact counts, shared requests, failures that never read as 0.

Counting runs against the in-process emulator (its `/jobs` filters are Flowable's); where the
prober also needs the process/CMMN repository, which the emulator doesn't serve, a routing
transport answers those paths from a small fake and sends the rest to the emulator. Failures come
from the emulator's fault injection or from `httpx.MockTransport`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote

import httpx
import pytest

from flowable_worker import ClientSettings, FlowableClient
from flowable_worker_operator import metrics
from flowable_worker_operator.backlog import BacklogProber, ProbeError, ProbeResult, Selector
from flowable_worker_operator.discovery import TopicUse
from flowable_worker_operator.engines import Engine
from flowable_worker_operator.scaling import Backlog
from flowable_worker_operator.shared_answers import SharedAnswers
from tests.support.emulator import FaultKind, FlowableEmulator


def uid() -> str:
    return uuid.uuid4().hex[:12]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def engine(emulator: FlowableEmulator) -> Engine:
    return Engine(ClientSettings(base_url=emulator.base_url, read_retries=0))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def prober(clock: Clock) -> AsyncIterator[BacklogProber]:
    probing = BacklogProber(clock=clock)
    yield probing
    await probing.aclose()


@pytest.fixture
def clean_faults(emulator: FlowableEmulator) -> Iterator[FlowableEmulator]:
    yield emulator
    emulator.clear_faults()


def jobs_of(emulator: FlowableEmulator, selector_id: str) -> int:
    """Requests the emulator got that name `selector_id` (each test uses its own ids)."""
    return len(queries_naming(emulator, selector_id))


def queries_naming(emulator: FlowableEmulator, selector_id: str) -> list[str]:
    """The decoded query strings of the emulator's `GET /jobs` requests naming `selector_id`."""
    decoded = (unquote(r.query) for r in emulator.requests(endpoint="listJobs"))
    return [query for query in decoded if selector_id in query]


async def acquire(emulator: FlowableEmulator, topic: str, worker: str, n: int) -> None:
    async with FlowableClient(ClientSettings(base_url=emulator.base_url)) as client:
        got = await client.acquire_jobs(
            topic=topic, worker_id=worker, lock_duration="PT10M", number_of_tasks=n
        )
    assert len(got) == n


# -- values ----------------------------------------------------------------------------------


def test_a_selector_names_at_most_one_definition_id() -> None:
    with pytest.raises(ValueError, match="at most one"):
        Selector("task", process_definition_id="p", scope_definition_id="c")
    with pytest.raises(ValueError, match="element_id"):
        Selector("", process_definition_id="p")
    with pytest.raises(ValueError, match="element_id"):
        Selector("")


def test_a_selector_without_definition_means_the_element_in_every_definition() -> None:
    every = Selector("task")
    filters = every.filters("unlocked")

    assert every.every_definition
    assert not Selector("task", process_definition_id="p").every_definition
    assert not Selector("task", scope_definition_id="c").every_definition
    assert filters["element_id"] == "task"
    assert filters["process_definition_id"] is None
    assert filters["scope_definition_id"] is None
    assert filters["tenant_id"] is None
    assert filters["unlocked"] is True
    assert str(every) == "element 'task' of every definition"
    assert str(Selector("t", process_definition_id="p:1:x")) == (
        "element 't' of process definition p:1:x"
    )
    assert str(Selector("t", scope_definition_id="c", tenant_id="")) == (
        "element 't' of case definition c, tenant ''"
    )


def test_bpmn_selectors_filter_by_process_definition_and_cmmn_by_scope_definition() -> None:
    bpmn = Selector("t", process_definition_id="p:1:x").filters("unlocked")
    cmmn = Selector("t", scope_definition_id="c", tenant_id="acme").filters("locked")

    assert bpmn["process_definition_id"] == "p:1:x"
    assert bpmn["scope_definition_id"] is None
    assert bpmn["unlocked"] is True
    assert bpmn["locked"] is False
    assert bpmn["tenant_id"] is None
    assert cmmn["scope_definition_id"] == "c"
    assert cmmn["process_definition_id"] is None
    assert cmmn["locked"] is True
    assert cmmn["tenant_id"] == "acme"
    assert "scope_type" not in bpmn  # BPMN jobs have scopeType null on a real Flowable


def test_discovered_uses_become_selectors_of_their_kind() -> None:
    assert Selector.for_use(TopicUse("bpmn", "p:1:x", "t")) == Selector(
        "t", process_definition_id="p:1:x"
    )
    assert Selector.for_use(TopicUse("cmmn", "c", "t")) == Selector("t", scope_definition_id="c")


def test_engines_with_equal_settings_are_one_sharing_key() -> None:
    one = Engine(ClientSettings(base_url="http://f:8080", username="u", password="p"))
    same = Engine(ClientSettings(base_url="http://f:8080/", username="u", password="p"))
    other_user = Engine(ClientSettings(base_url="http://f:8080", username="v", password="p"))

    assert one == same
    assert hash(one) == hash(same)
    assert one != other_user
    assert len({one, same, other_user}) == 2


# -- counting --------------------------------------------------------------------------------


async def test_counts_unlocked_and_locked_jobs_per_selector_and_sums_them(
    emulator: FlowableEmulator, engine: Engine, prober: BacklogProber
) -> None:
    topic, definition, case = uid(), f"p:1:{uid()}", uid()
    for _ in range(5):
        emulator.create_job(topic, element_id="a", definition_id=definition)
    for _ in range(2):
        emulator.create_job(topic, element_id="c", scope_type="cmmn", definition_id=case)
    emulator.create_job(topic, element_id="not-counted", definition_id=definition)
    await acquire(emulator, topic, "w1", 3)
    selectors = [
        Selector("a", process_definition_id=definition),
        Selector("c", scope_definition_id=case),
    ]

    result = await prober.backlog(engine, topic, selectors)

    unlocked_a = sum(
        1 for j in emulator.jobs() if j.element_id == "a" and j.topic == topic and not j.lock_owner
    )
    unlocked_c = sum(
        1 for j in emulator.jobs() if j.element_id == "c" and j.topic == topic and not j.lock_owner
    )
    assert result == ProbeResult(
        backlog=Backlog(unlocked=unlocked_a + unlocked_c, locked=7 - unlocked_a - unlocked_c),
        selectors=tuple(selectors),
    )


async def test_a_tenant_selector_counts_only_that_tenant(
    emulator: FlowableEmulator, engine: Engine, prober: BacklogProber
) -> None:
    topic, definition = uid(), f"p:1:{uid()}"
    emulator.create_job(topic, definition_id=definition, tenant_id="acme")
    emulator.create_job(topic, definition_id=definition, tenant_id="acme")
    emulator.create_job(topic, definition_id=definition, tenant_id="other")

    def counted(tenant: str | None) -> Selector:
        return Selector("externalTask", process_definition_id=definition, tenant_id=tenant)

    acme = await prober.backlog(engine, topic, [counted("acme")])
    every = await prober.backlog(engine, topic, [counted(None)])

    assert acme.backlog == Backlog(unlocked=2, locked=0)
    assert every.backlog == Backlog(unlocked=3, locked=0)


async def test_repeated_selectors_are_counted_once(
    emulator: FlowableEmulator, engine: Engine, prober: BacklogProber
) -> None:
    topic, definition = uid(), f"p:1:{uid()}"
    emulator.create_job(topic, definition_id=definition)
    selector = Selector("externalTask", process_definition_id=definition)

    result = await prober.backlog(engine, topic, [selector, selector])

    assert result.backlog == Backlog(unlocked=1, locked=0)
    assert result.selectors == (selector,)


async def test_each_question_is_one_size_1_request(
    emulator: FlowableEmulator, engine: Engine, prober: BacklogProber
) -> None:
    definition = f"p:1:{uid()}"

    await prober.backlog(engine, "t", [Selector("x", process_definition_id=definition)])

    queries = queries_naming(emulator, definition)
    assert len(queries) == 2
    assert all("size=1" in q for q in queries)
    assert sum("unlocked=true" in q for q in queries) == 1
    assert sum("locked=true" in q and "unlocked" not in q for q in queries) == 1


# -- sharing ---------------------------------------------------------------------------------


async def test_concurrent_pools_asking_the_same_question_cause_one_request_each(
    emulator: FlowableEmulator, engine: Engine, prober: BacklogProber
) -> None:
    topic, definition = uid(), f"p:1:{uid()}"
    for _ in range(4):
        emulator.create_job(topic, definition_id=definition)
    selector = Selector("externalTask", process_definition_id=definition)
    shared_before = sample("flowable_pool_shared_answers_total")

    results = await asyncio.gather(*(prober.backlog(engine, topic, [selector]) for _ in range(20)))

    assert {r.backlog for r in results} == {Backlog(unlocked=4, locked=0)}
    assert jobs_of(emulator, definition) == 2  # unlocked + locked, for all twenty pools
    assert sample("flowable_pool_shared_answers_total") - shared_before == 38


async def test_pools_asking_one_question_together_share_the_whole_measurement(
    emulator: FlowableEmulator,
    engine: Engine,
    prober: BacklogProber,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    topic, definition = uid(), f"p:1:{uid()}"
    emulator.create_job(topic, definition_id=definition)
    selector = [Selector("externalTask", process_definition_id=definition)]
    measured: list[str] = []
    real = BacklogProber._measure

    async def measure(self: BacklogProber, *args: Any) -> ProbeResult:
        measured.append(args[1])
        return await real(self, *args)

    monkeypatch.setattr(BacklogProber, "_measure", measure)
    results = await asyncio.gather(*(prober.backlog(engine, topic, selector) for _ in range(5)))
    assert len({id(r) for r in results}) == 1  # one measurement, five pools
    assert results[0].backlog == Backlog(unlocked=1, locked=0)
    await prober.backlog(engine, "another-topic", selector)  # another question: measured
    assert measured == [topic, "another-topic"]
    assert jobs_of(emulator, definition) == 2  # and its counts were still shared


async def test_an_answer_is_reused_within_max_age_and_asked_again_after(
    emulator: FlowableEmulator, engine: Engine, prober: BacklogProber, clock: Clock
) -> None:
    topic, definition = uid(), f"p:1:{uid()}"
    emulator.create_job(topic, definition_id=definition)
    selector = Selector("externalTask", process_definition_id=definition)

    await prober.backlog(engine, topic, [selector])
    clock.now += 0.9
    await prober.backlog(engine, topic, [selector])
    assert jobs_of(emulator, definition) == 2

    emulator.create_job(topic, definition_id=definition)
    clock.now += 0.2  # 1.1 s after the answer arrived
    fresh = await prober.backlog(engine, topic, [selector])

    assert jobs_of(emulator, definition) == 4
    assert fresh.backlog == Backlog(unlocked=2, locked=0)


async def test_max_age_zero_shares_only_requests_in_flight(emulator: FlowableEmulator) -> None:
    engine = Engine(ClientSettings(base_url=emulator.base_url, read_retries=0))
    definition = f"p:1:{uid()}"
    selector = [Selector("x", process_definition_id=definition)]
    clock = Clock()
    prober = BacklogProber(max_age=0.0, clock=clock)
    try:
        await asyncio.gather(
            prober.backlog(engine, "t", selector), prober.backlog(engine, "t", selector)
        )
        clock.now += 0.001
        await prober.backlog(engine, "t", selector)
    finally:
        await prober.aclose()

    assert jobs_of(emulator, definition) == 4


async def test_pools_with_different_engine_settings_do_not_share(
    emulator: FlowableEmulator, prober: BacklogProber
) -> None:
    definition = f"p:1:{uid()}"
    selector = [Selector("x", process_definition_id=definition)]
    one = Engine(ClientSettings(base_url=emulator.base_url, username="a", password="1"))
    two = Engine(ClientSettings(base_url=emulator.base_url, username="b", password="2"))

    await asyncio.gather(prober.backlog(one, "t", selector), prober.backlog(two, "t", selector))

    assert jobs_of(emulator, definition) == 4


async def test_a_failure_is_shared_by_waiters_but_the_next_asker_retries() -> None:
    calls = 0

    async def flaky() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        if calls == 1:
            raise ProbeError("boom")
        return 3

    shared: SharedAnswers[str, int] = SharedAnswers(max_age=10.0)

    first = await asyncio.gather(
        *(shared.get("q", flaky) for _ in range(5)), return_exceptions=True
    )
    second = await shared.get("q", flaky)

    assert all(isinstance(outcome, ProbeError) for outcome in first)
    assert second == 3
    assert calls == 2


async def test_a_shared_request_survives_one_asker_being_cancelled() -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow() -> int:
        started.set()
        await release.wait()
        return 42

    shared: SharedAnswers[str, int] = SharedAnswers(max_age=1.0)
    impatient = asyncio.ensure_future(shared.get("q", slow))
    await started.wait()
    patient = asyncio.ensure_future(shared.get("q", slow))
    await asyncio.sleep(0)
    impatient.cancel()
    release.set()

    assert await patient == 42
    assert impatient.cancelled()


# -- failures never read as zero -------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        (FaultKind.SERVER_ERROR, "500"),
        (FaultKind.CONNECTION_RESET, "counting"),
        (FaultKind.MALFORMED_JSON, "not the JSON the API promises"),
        (FaultKind.UNAUTHORIZED, "401"),
    ],
)
async def test_any_failure_to_count_is_a_probe_error(
    clean_faults: FlowableEmulator,
    engine: Engine,
    prober: BacklogProber,
    kind: FaultKind,
    message: str,
) -> None:
    definition = f"p:1:{uid()}"
    clean_faults.inject_fault(kind, endpoint="listJobs")
    errors_before = sample("flowable_pool_probe_requests_total", kind="count", result="error")

    with pytest.raises(ProbeError, match=message):
        await prober.backlog(engine, "t", [Selector("x", process_definition_id=definition)])

    assert (
        sample("flowable_pool_probe_requests_total", kind="count", result="error") > errors_before
    )


async def test_a_failure_after_a_success_is_still_an_error_not_the_old_or_zero_count(
    clean_faults: FlowableEmulator, engine: Engine, prober: BacklogProber, clock: Clock
) -> None:
    topic, definition = uid(), f"p:1:{uid()}"
    clean_faults.create_job(topic, definition_id=definition)
    selector = [Selector("externalTask", process_definition_id=definition)]
    assert (await prober.backlog(engine, topic, selector)).backlog.unlocked == 1

    clock.now += 5
    clean_faults.inject_fault(FaultKind.SERVER_ERROR, endpoint="listJobs")

    with pytest.raises(ProbeError):
        await prober.backlog(engine, topic, selector)


async def test_successful_requests_are_counted_and_timed(
    engine: Engine, prober: BacklogProber
) -> None:
    ok_before = sample("flowable_pool_probe_requests_total", kind="count", result="ok")
    timed_before = sample("flowable_pool_probe_request_duration_seconds_count", kind="count")

    await prober.backlog(engine, "t", [Selector("x", process_definition_id=f"p:1:{uid()}")])

    assert sample("flowable_pool_probe_requests_total", kind="count", result="ok") == ok_before + 2
    assert (
        sample("flowable_pool_probe_request_duration_seconds_count", kind="count")
        == timed_before + 2
    )


async def test_requests_in_flight_per_engine_are_bounded() -> None:
    in_flight = peak = 0

    async def handle(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return httpx.Response(200, json={"data": [], "total": 1, "start": 0, "size": 0})

    prober = BacklogProber(max_concurrency=3, transport=httpx.MockTransport(handle))
    engine = Engine(ClientSettings(base_url="http://flowable.test"))
    selectors = [Selector(f"t{n}", process_definition_id="p:1:x") for n in range(10)]
    try:
        result = await prober.backlog(engine, "t", selectors)
    finally:
        await prober.aclose()

    assert result.backlog == Backlog(unlocked=10, locked=10)
    assert peak == 3


# -- discovery through the prober ------------------------------------------------------------


class RepositoryThenEmulator(httpx.AsyncBaseTransport):
    """The repository APIs from `models`; everything else goes to the real (emulated) network."""

    def __init__(self, models: dict[str, tuple[str, str]], *, cmmn: bool = False) -> None:
        self._models = models  # process definition id -> (key, BPMN XML)
        self._cmmn = cmmn
        self._network = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/process-api/repository/process-definitions"):
            data = [{"id": i, "key": k, "tenantId": ""} for i, (k, _) in self._models.items()]
            return httpx.Response(200, json={"data": data, "total": len(data)})
        if "/process-api/repository/process-definitions/" in path:
            definition_id = path.split("/")[-2]
            return httpx.Response(200, text=self._models[unquote(definition_id)][1])
        if "/cmmn-api/" in path:
            return httpx.Response(404, json={"error": "Not Found"})
        return await self._network.handle_async_request(request)

    async def aclose(self) -> None:
        await self._network.aclose()


def one_process(key: str, tasks: dict[str, str]) -> str:
    body = "".join(
        f'<serviceTask id="{element}" flowable:type="external-worker" flowable:topic="{topic}"/>'
        for element, topic in tasks.items()
    )
    return (
        '<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL" '
        'xmlns:flowable="http://flowable.org/bpmn">'
        f'<process id="{key}">{body}</process></definitions>'
    )


async def test_without_selectors_the_topic_is_discovered_and_counted(
    emulator: FlowableEmulator,
) -> None:
    # The emulator is the session's: element ids of its own keep other tests' jobs out.
    topic, definition, a, b = uid(), f"inv:1:{uid()}", f"a{uid()}", f"b{uid()}"
    models = {definition: ("inv", one_process("inv", {a: topic, b: "other", "c": "${x}"}))}
    for _ in range(3):
        emulator.create_job(topic, element_id=a, definition_id=definition)
    emulator.create_job("other", element_id=b, definition_id=definition)
    prober = BacklogProber(transport=RepositoryThenEmulator(models))
    engine = Engine(ClientSettings(base_url=emulator.base_url, read_retries=0))
    try:
        result = await prober.backlog(engine, topic, None)
        same = await prober.backlog(engine, topic, [])
    finally:
        await prober.aclose()

    assert result.backlog == Backlog(unlocked=3, locked=0)
    assert result.selectors == (Selector(a),)  # only this definition uses `a`: every definition
    # The expression on `c` concerns this pool only as one note: its topic is found.
    assert result.problems == ()
    assert [note.reason for note in result.notes] == ["UnresolvedTopics"]
    assert "'c'" in result.notes[0].message
    assert same == result


async def test_a_discovery_failure_is_a_probe_error() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, text="unavailable")

    prober = BacklogProber(transport=httpx.MockTransport(handle))
    engine = Engine(ClientSettings(base_url="http://flowable.test"))
    try:
        with pytest.raises(ProbeError, match=r"discovery failed.*503"):
            await prober.backlog(engine, "t", None)
    finally:
        await prober.aclose()


# -- lock owners -----------------------------------------------------------------------------


async def test_in_flight_counts_locked_jobs_per_worker_across_pages(
    emulator: FlowableEmulator, engine: Engine
) -> None:
    topic, definition, case = uid(), f"p:1:{uid()}", uid()
    for _ in range(5):
        emulator.create_job(topic, definition_id=definition)
    for _ in range(2):
        emulator.create_job(topic, element_id="c", scope_type="cmmn", definition_id=case)
    await acquire(emulator, topic, "pod-a", 4)
    await acquire(emulator, topic, "pod-b", 2)
    selectors = [
        Selector("externalTask", process_definition_id=definition),
        Selector("c", scope_definition_id=case),
    ]
    held: dict[str, int] = {}
    for job in emulator.jobs():
        if job.topic == topic and job.lock_owner:
            held[job.lock_owner] = held.get(job.lock_owner, 0) + 1
    created = [job.create_time for job in emulator.jobs() if job.topic == topic and job.lock_owner]
    prober = BacklogProber(lock_owners_page_size=2)
    try:
        in_flight = await prober.in_flight(engine, selectors)
    finally:
        await prober.aclose()

    assert in_flight.owners == held == {"pod-a": 4, "pod-b": 2}
    assert in_flight.newest_created == max(created)
    pages = queries_naming(emulator, definition)
    assert all("locked=true" in q and "size=2" in q for q in pages)
    assert len(pages) >= 2


async def test_in_flight_failure_is_a_probe_error(
    clean_faults: FlowableEmulator, engine: Engine, prober: BacklogProber
) -> None:
    clean_faults.inject_fault(FaultKind.SERVER_ERROR, endpoint="listJobs")

    with pytest.raises(ProbeError, match="locked jobs"):
        await prober.in_flight(engine, [Selector("x", process_definition_id="p")])


async def test_a_closed_prober_refuses_work(engine: Engine) -> None:
    prober = BacklogProber()
    await prober.aclose()

    with pytest.raises(RuntimeError, match="closed"):
        await prober.backlog(engine, "t", [Selector("x", process_definition_id="p")])


async def test_answers_nobody_asks_for_again_are_forgotten() -> None:
    clock = Clock()
    shared: SharedAnswers[str, int] = SharedAnswers(max_age=1.0, clock=clock)

    async def answer() -> int:
        return 1

    for n in range(50):
        await shared.get(f"q{n}", answer)
    assert len(shared) == 50

    clock.now += 2.0
    await shared.get("fresh", answer)

    assert len(shared) == 1


# -- one count pair per element id, not per deployed version ---------------------------------


@dataclass
class FakeJob:
    element_id: str
    definition_id: str
    scope: Literal["bpmn", "cmmn"]
    locked: bool = False


@dataclass
class FakeFlowable:
    """Definitions, their models and `GET /jobs` counts with Flowable's filters, behind
    `httpx.MockTransport`; `job_queries` logs every `GET /jobs`."""

    processes: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (key, xml)
    cases: dict[str, tuple[str, str]] = field(default_factory=dict)
    jobs: list[FakeJob] = field(default_factory=list)
    job_queries: list[httpx.QueryParams] = field(default_factory=list)

    def deploy_versions(self, key: str, tasks: dict[str, str], versions: int) -> list[str]:
        """`versions` deployments of one process model; their definition ids, oldest first."""
        ids = [f"{key}:{version}:{uid()}" for version in range(1, versions + 1)]
        for definition_id in ids:
            self.processes[definition_id] = (key, one_process(key, tasks))
        return ids

    def deploy_case(self, key: str, tasks: dict[str, str]) -> str:
        body = "".join(
            f'<task id="{element}" flowable:type="external-worker" flowable:topic="{topic}"/>'
            for element, topic in tasks.items()
        )
        definition_id = str(uuid.uuid4())
        self.cases[definition_id] = (
            key,
            '<definitions xmlns="http://www.omg.org/spec/CMMN/20151109/MODEL" '
            'xmlns:flowable="http://flowable.org/cmmn">'
            f'<case id="{key}"><casePlanModel id="plan">{body}</casePlanModel></case>'
            "</definitions>",
        )
        return definition_id

    def add_jobs(
        self,
        definition_id: str,
        element_id: str,
        *,
        unlocked: int = 0,
        locked: int = 0,
    ) -> None:
        scope: Literal["bpmn", "cmmn"] = "cmmn" if definition_id in self.cases else "bpmn"
        for n in range(unlocked + locked):
            self.jobs.append(FakeJob(element_id, definition_id, scope, locked=n >= unlocked))

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/external-job-api/jobs":
            self.job_queries.append(request.url.params)
            total = sum(1 for job in self.jobs if self._matches(job, request.url.params))
            return httpx.Response(200, json={"data": [], "total": total, "start": 0, "size": 0})
        for prefix, rows in (
            ("/process-api/repository/process-definitions", self.processes),
            ("/cmmn-api/cmmn-repository/case-definitions", self.cases),
        ):
            if path == prefix:
                data = [
                    {"id": i, "key": key, "tenantId": "", "version": _version(i)}
                    for i, (key, _) in rows.items()
                ]
                return httpx.Response(200, json={"data": data, "total": len(data)})
            if path.startswith(prefix + "/"):
                return httpx.Response(200, text=rows[unquote(path.split("/")[-2])][1])
        return httpx.Response(404, json={"message": "Not found"})

    @staticmethod
    def _matches(job: FakeJob, params: httpx.QueryParams) -> bool:
        by_definition = {"bpmn": "processDefinitionId", "cmmn": "scopeDefinitionId"}
        for scope, name in by_definition.items():
            if name in params and (job.scope != scope or params[name] != job.definition_id):
                return False
        if "elementId" in params and params["elementId"] != job.element_id:
            return False
        if params.get("locked") == "true" and not job.locked:
            return False
        return not (params.get("unlocked") == "true" and job.locked)


def _version(definition_id: str) -> int:
    """A process definition id's version (`key:version:uuid`); 1 for a case's plain UUID."""
    parts = definition_id.split(":")
    return int(parts[1]) if len(parts) == 3 else 1


@pytest.fixture
def fake() -> FakeFlowable:
    return FakeFlowable()


async def probe_fake(
    fake: FakeFlowable,
    topic: str,
    *,
    collapse: bool = True,
    selectors: Sequence[Selector] | None = None,
) -> tuple[ProbeResult, int]:
    """A probe with discovery (already listed), and the `GET /jobs` requests it cost."""
    prober = BacklogProber(
        max_age=0.0, collapse_elements=collapse, transport=httpx.MockTransport(fake.handle)
    )
    engine = Engine(ClientSettings(base_url="http://flowable.test", read_retries=0))
    try:
        await prober.backlog(engine, topic, selectors)  # lists and parses the definitions
        before = len(fake.job_queries)
        result = await prober.backlog(engine, topic, selectors)
    finally:
        await prober.aclose()
    return result, len(fake.job_queries) - before


async def test_a_topic_in_50_versions_is_one_selector_and_two_counts_per_probe(
    fake: FakeFlowable,
) -> None:
    versions = fake.deploy_versions("invoice", {"check": "invoices", "mail": "mail"}, 50)
    for n, definition_id in enumerate(versions):
        fake.add_jobs(definition_id, "check", unlocked=2, locked=n % 2)
        fake.add_jobs(definition_id, "mail", unlocked=1)

    collapsed, requests = await probe_fake(fake, "invoices")
    asked = [dict(query) for query in fake.job_queries[-2:]]
    per_version, requests_before = await probe_fake(fake, "invoices", collapse=False)

    assert collapsed.selectors == (Selector("check"),)
    assert collapsed.backlog == Backlog(unlocked=100, locked=25)
    assert requests == 2
    assert sorted(asked, key=lambda query: "unlocked" in query) == [
        {"elementId": "check", "locked": "true", "size": "1"},
        {"elementId": "check", "unlocked": "true", "size": "1"},
    ]
    assert len(per_version.selectors) == 50
    assert per_version.backlog == collapsed.backlog
    assert requests_before == 100


async def test_one_version_giving_the_id_another_topic_keeps_that_id_per_definition(
    fake: FakeFlowable,
) -> None:
    versions = fake.deploy_versions("invoice", {"check": "invoices", "archive": "invoices"}, 50)
    other = fake.deploy_versions("shipping", {"check": "shipments"}, 1)[0]
    for definition_id in versions:
        fake.add_jobs(definition_id, "check", unlocked=1, locked=1)
        fake.add_jobs(definition_id, "archive", unlocked=1)
    fake.add_jobs(other, "check", unlocked=7, locked=3)  # the same id, on another topic

    result, requests = await probe_fake(fake, "invoices")
    shipments, _ = await probe_fake(fake, "shipments")

    assert set(result.selectors) == {
        *(Selector("check", process_definition_id=v) for v in versions),
        Selector("archive"),  # no other model uses this id: still one selector
    }
    assert result.backlog == Backlog(unlocked=100, locked=50)  # the other model's 10 jobs left out
    assert requests == 102
    assert shipments.selectors == (Selector("check", process_definition_id=other),)
    assert shipments.backlog == Backlog(unlocked=7, locked=3)


async def test_an_expression_topic_on_the_same_id_bars_collapsing(fake: FakeFlowable) -> None:
    versions = fake.deploy_versions("invoice", {"check": "invoices"}, 3)
    dynamic = fake.deploy_versions("dynamic", {"check": "${topicVar}"}, 1)[0]
    for definition_id in versions:
        fake.add_jobs(definition_id, "check", unlocked=2)
    fake.add_jobs(dynamic, "check", unlocked=5)  # may be any topic's: never counted as ours

    result, requests = await probe_fake(fake, "invoices")

    assert set(result.selectors) == {Selector("check", process_definition_id=v) for v in versions}
    assert result.backlog == Backlog(unlocked=6, locked=0)
    assert requests == 6
    assert "${topicVar}" in result.notes[0].message


async def test_an_unreadable_model_bars_collapsing_every_id(fake: FakeFlowable) -> None:
    versions = fake.deploy_versions("invoice", {"check": "invoices"}, 3)
    fake.processes["broken:1:x"] = ("broken", "<definitions><process id=")
    for definition_id in versions:
        fake.add_jobs(definition_id, "check", unlocked=1)
    fake.add_jobs("broken:1:x", "check", unlocked=4)  # whatever its topic: it can't be known

    result, requests = await probe_fake(fake, "invoices")

    assert set(result.selectors) == {Selector("check", process_definition_id=v) for v in versions}
    assert result.backlog == Backlog(unlocked=3, locked=0)
    assert requests == 6
    assert "broken:1:x" in result.notes[0].message


async def test_bpmn_and_cmmn_sharing_an_id_and_the_topic_are_one_selector(
    fake: FakeFlowable,
) -> None:
    versions = fake.deploy_versions("invoice", {"check": "invoices"}, 2)
    case = fake.deploy_case("invoiceCase", {"check": "invoices"})
    for definition_id in versions:
        fake.add_jobs(definition_id, "check", unlocked=2, locked=1)
    fake.add_jobs(case, "check", unlocked=4, locked=2)

    result, requests = await probe_fake(fake, "invoices")
    per_definition, _ = await probe_fake(fake, "invoices", collapse=False)

    assert result.selectors == (Selector("check"),)
    assert result.backlog == per_definition.backlog == Backlog(unlocked=8, locked=4)
    assert requests == 2
    assert Selector("check", scope_definition_id=case) in per_definition.selectors


async def test_in_flight_of_an_every_definition_selector_spans_the_versions(
    emulator: FlowableEmulator, engine: Engine, prober: BacklogProber
) -> None:
    topic, element = uid(), f"e{uid()}"
    for version in (1, 2, 3):
        emulator.create_job(topic, element_id=element, definition_id=f"v:{version}:{uid()}")
    await acquire(emulator, topic, "pod-a", 2)
    await acquire(emulator, topic, "pod-b", 1)

    held = await prober.in_flight(engine, [Selector(element)])
    assert held.owners == {"pod-a": 2, "pod-b": 1}
    assert (await prober.backlog(engine, topic, [Selector(element)])).backlog == Backlog(0, 3)
