"""Topic discovery as a specification: which model elements a topic's jobs come from.

Parsing is tested on XML text; `TopicDiscovery` against a fake repository behind
`httpx.MockTransport` (the emulator serves only the external-job API), with a hand-driven clock
so "at most once per interval" is checked without waiting.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest

from flowable_worker_operator import metrics
from flowable_worker_operator.discovery import (
    MISS_RELIST_SECONDS,
    DiscoveryError,
    ExternalTask,
    ParsedModel,
    TopicDiscovery,
    TopicMatch,
    TopicUse,
    parse_model,
)

BASE_URL = "http://flowable.test"


def bpmn(*processes: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL" '
        'xmlns:flowable="http://flowable.org/bpmn" targetNamespace="t">'
        + "".join(processes)
        + "</definitions>"
    )


def process(key: str, *tasks: str) -> str:
    return f'<process id="{key}" isExecutable="true"><startEvent id="s"/>{"".join(tasks)}</process>'


def external(element_id: str, topic: str) -> str:
    return (
        f'<serviceTask id="{element_id}" flowable:type="external-worker" flowable:topic="{topic}"/>'
    )


def cmmn(key: str, body: str) -> str:
    return (
        '<definitions xmlns="http://www.omg.org/spec/CMMN/20151109/MODEL" '
        'xmlns:flowable="http://flowable.org/cmmn" targetNamespace="t">'
        f'<case id="{key}"><casePlanModel id="plan">{body}</casePlanModel></case></definitions>'
    )


# -- parsing ---------------------------------------------------------------------------------


def test_bpmn_external_worker_tasks_are_found_with_their_topics() -> None:
    xml = bpmn(
        process(
            "p",
            external("checkInvoice", "invoices"),
            external("sendMail", "mail"),
            '<serviceTask id="javaTask" flowable:class="x.Y"/>',
            '<userTask id="review"/>',
        )
    )

    parsed = parse_model(xml, scope="bpmn", definition_key="p")

    assert parsed == ParsedModel(
        tasks=(ExternalTask("checkInvoice", "invoices"), ExternalTask("sendMail", "mail"))
    )


def test_bpmn_tasks_in_sub_processes_are_found() -> None:
    xml = bpmn(process("p", f'<subProcess id="sub">{external("inner", "deep")}</subProcess>'))

    assert parse_model(xml, scope="bpmn").tasks == (ExternalTask("inner", "deep"),)


def test_only_the_definition_named_by_its_key_counts_in_a_multi_process_resource() -> None:
    xml = bpmn(process("a", external("taskA", "t")), process("b", external("taskB", "t")))

    assert parse_model(xml, scope="bpmn", definition_key="b").tasks == (ExternalTask("taskB", "t"),)


def test_the_old_activiti_namespace_is_read_as_flowable_reads_it() -> None:
    xml = bpmn(process("p")).replace(
        "</process>",
        '<serviceTask xmlns:activiti="http://activiti.org/bpmn" id="old" '
        'activiti:type="external-worker" activiti:topic="legacy"/></process>',
    )

    assert parse_model(xml, scope="bpmn").tasks == (ExternalTask("old", "legacy"),)


def test_cmmn_external_worker_task_is_found_by_its_task_id_not_its_plan_item_id() -> None:
    xml = cmmn(
        "case1",
        '<planItem id="planItem1" definitionRef="approve"/>'
        '<planItem id="planItem2" definitionRef="human"/>'
        '<task id="approve" flowable:type="external-worker" flowable:topic="approvals"/>'
        '<humanTask id="human"/>',
    )

    parsed = parse_model(xml, scope="cmmn", definition_key="case1")

    assert parsed.tasks == (ExternalTask("approve", "approvals"),)


def test_cmmn_tasks_inside_stages_are_found() -> None:
    xml = cmmn(
        "c",
        '<planItem id="pi" definitionRef="stage"/><stage id="stage">'
        '<planItem id="pi2" definitionRef="t"/>'
        '<task id="t" flowable:type="external-worker" flowable:topic="staged"/></stage>',
    )

    assert parse_model(xml, scope="cmmn").tasks == (ExternalTask("t", "staged"),)


def test_a_bpmn_parser_does_not_read_cmmn_tasks() -> None:
    xml = cmmn("c", '<task id="t" flowable:type="external-worker" flowable:topic="x"/>')

    assert parse_model(xml, scope="bpmn").problems


def test_a_model_without_external_tasks_has_no_tasks_and_no_problems() -> None:
    assert parse_model(bpmn(process("p", '<userTask id="u"/>')), scope="bpmn") == ParsedModel()


def test_expression_topics_are_recognised() -> None:
    assert ExternalTask("t", "${topicVar}").topic_is_expression
    assert ExternalTask("t", "prefix-#{bean.topic()}").topic_is_expression
    assert not ExternalTask("t", "plain-topic").topic_is_expression


def test_malformed_xml_is_a_problem_naming_the_source_not_a_crash() -> None:
    parsed = parse_model("<definitions><process", scope="bpmn", source="process definition p:1")

    assert parsed.tasks == ()
    assert len(parsed.problems) == 1
    assert parsed.problems[0].startswith("process definition p:1: malformed XML")


def test_a_doctype_is_refused_so_no_entity_can_expand() -> None:
    xml = '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaa">]><definitions>&a;</definitions>'

    assert "DOCTYPE" in parse_model(xml, scope="bpmn").problems[0]


def test_a_missing_definition_element_is_a_problem() -> None:
    parsed = parse_model(bpmn(process("other")), scope="bpmn", definition_key="wanted")

    assert parsed.problems
    assert "'wanted'" in parsed.problems[0]


# -- discovery over the repository API -------------------------------------------------------


@dataclass
class FakeRepository:
    """The process and CMMN repository APIs: definitions, their XML, and a log of requests."""

    processes: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (key, xml)
    cases: dict[str, tuple[str, str]] = field(default_factory=dict)
    cmmn_api: bool = True
    failing: dict[str, int] = field(default_factory=dict)  # path fragment -> status
    requests: list[httpx.Request] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        for fragment, status in self.failing.items():
            if fragment in path:
                return httpx.Response(status, json={"message": "injected"})
        for prefix, rows, present in (
            ("/process-api/repository/process-definitions", self.processes, True),
            ("/cmmn-api/cmmn-repository/case-definitions", self.cases, self.cmmn_api),
        ):
            if not path.startswith(prefix) or not present:
                continue
            rest = path[len(prefix) :]
            if not rest:
                return self._page(request, rows)
            definition_id = httpx.URL(rest.removesuffix("/resourcedata")).path.strip("/")
            found = rows.get(definition_id)
            if found is None:
                return httpx.Response(404, json={"message": "Not found"})
            return httpx.Response(200, text=found[1], headers={"content-type": "text/xml"})
        return httpx.Response(404, json={"status": 404, "error": "Not Found"})

    @staticmethod
    def _page(request: httpx.Request, rows: dict[str, tuple[str, str]]) -> httpx.Response:
        start = int(request.url.params.get("start", "0"))
        size = int(request.url.params.get("size", "10"))
        ordered = sorted(rows.items())
        data = [
            {"id": key, "key": value[0], "tenantId": ""}
            for key, value in ordered[start : start + size]
        ]
        return httpx.Response(200, json={"data": data, "total": len(rows), "start": start})

    def count(self, fragment: str) -> int:
        return sum(1 for request in self.requests if fragment in str(request.url))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def repository() -> FakeRepository:
    return FakeRepository()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def http(repository: FakeRepository) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.MockTransport(repository.handle)
    async with httpx.AsyncClient(base_url=BASE_URL, transport=transport) as client:
        yield client


def discovery(http: httpx.AsyncClient, clock: Clock, *, page_size: int = 100) -> TopicDiscovery:
    return TopicDiscovery(http=http, interval_seconds=60.0, clock=clock, page_size=page_size)


def add_process(repo: FakeRepository, definition_id: str, *tasks: str) -> None:
    key = definition_id.split(":")[0]
    repo.processes[definition_id] = (key, bpmn(process(key, *tasks)))


async def test_finds_the_bpmn_and_cmmn_elements_using_a_topic(
    repository: FakeRepository, http: httpx.AsyncClient, clock: Clock
) -> None:
    add_process(repository, "inv:1:a", external("check", "invoices"), external("mail", "mail"))
    add_process(repository, "inv:2:b", external("check", "invoices"))
    repository.cases["c-uuid"] = (
        "case",
        cmmn(
            "case", '<task id="approve" flowable:type="external-worker" flowable:topic="invoices"/>'
        ),
    )

    match = await discovery(http, clock).find("invoices")

    assert set(match.uses) == {
        TopicUse("bpmn", "inv:1:a", "check"),
        TopicUse("bpmn", "inv:2:b", "check"),
        TopicUse("cmmn", "c-uuid", "approve"),
    }
    assert match.problems == ()


async def test_a_topic_nobody_uses_has_no_uses(
    repository: FakeRepository, http: httpx.AsyncClient, clock: Clock
) -> None:
    add_process(repository, "p:1:a", external("t", "other"))

    match = await discovery(http, clock).find("invoices")

    assert match.uses == ()
    assert match.problems == ()


async def test_definitions_are_listed_page_by_page(
    repository: FakeRepository, http: httpx.AsyncClient, clock: Clock
) -> None:
    for n in range(5):
        add_process(repository, f"p{n}:1:x", external(f"task{n}", "topic"))

    match = await discovery(http, clock, page_size=2).find("topic")

    assert len(match.uses) == 5
    assert repository.count("process-definitions?") == 3  # 2 + 2 + 1
    listed = [r for r in repository.requests if r.url.path.endswith("process-definitions")]
    assert [r.url.params["start"] for r in listed] == ["0", "2", "4"]
    assert all(r.url.params["sort"] == "id" for r in listed)


async def test_each_model_is_fetched_once_and_the_list_once_per_interval(
    repository: FakeRepository, http: httpx.AsyncClient, clock: Clock
) -> None:
    add_process(repository, "p:1:a", external("t", "topic"))
    found = discovery(http, clock)

    await found.find("topic")
    clock.now += 30
    await found.find("topic")
    assert repository.count("process-definitions?") == 1  # within the interval: no listing

    clock.now += 31
    add_process(repository, "p:2:b", external("t", "topic"))
    match = await found.find("topic")

    assert repository.count("process-definitions?") == 2
    assert repository.count("p%3A1%3Aa/resourcedata") == 1  # cached for good
    assert repository.count("p%3A2%3Ab/resourcedata") == 1
    assert len(match.uses) == 2


async def test_a_topic_deployed_after_the_listing_is_found_at_once_not_an_interval_later(
    repository: FakeRepository, http: httpx.AsyncClient, clock: Clock
) -> None:
    """A pool created right after its model's deployment: the operator's listing predates it."""
    add_process(repository, "other:1:a", external("t", "other"))
    found = discovery(http, clock)
    assert (await found.find("other")).uses  # the listing every pool shares, made at 1000

    clock.now += MISS_RELIST_SECONDS
    add_process(repository, "inv:1:b", external("check", "invoices"))
    match = await found.find("invoices")

    assert match.uses == (TopicUse("bpmn", "inv:1:b", "check"),)
    assert repository.count("process-definitions?") == 2


async def test_a_topic_that_stays_unknown_costs_one_early_listing_not_one_per_tick(
    repository: FakeRepository, http: httpx.AsyncClient, clock: Clock
) -> None:
    add_process(repository, "other:1:a", external("t", "other"))
    found = discovery(http, clock)
    await found.find("other")

    for _ in range(10):  # a pool with a typo, ticking every 5 s for 50 s
        clock.now += 5
        assert (await found.find("invioces")).uses == ()

    assert repository.count("process-definitions?") == 2  # the first, and one early re-list
    clock.now += 15  # 60 s after the early re-list (at 1005): listed as usual
    await found.find("invioces")
    assert repository.count("process-definitions?") == 3


async def test_a_fresh_listing_is_not_repeated_for_a_missing_topic(
    repository: FakeRepository, http: httpx.AsyncClient, clock: Clock
) -> None:
    found = discovery(http, clock)
    await found.find("invoices")
    clock.now += MISS_RELIST_SECONDS - 1
    await found.find("invoices")
    assert repository.count("process-definitions?") == 1


async def test_a_topic_found_then_undeployed_may_re_list_early_again(
    repository: FakeRepository, http: httpx.AsyncClient, clock: Clock
) -> None:
    add_process(repository, "inv:1:a", external("check", "invoices"))
    found = discovery(http, clock)
    assert (await found.find("invoices")).uses
    del repository.processes["inv:1:a"]
    clock.now += 61
    assert (await found.find("invoices")).uses == ()  # the regular listing
    clock.now += MISS_RELIST_SECONDS
    add_process(repository, "inv:2:b", external("check", "invoices"))
    assert (await found.find("invoices")).uses == (TopicUse("bpmn", "inv:2:b", "check"),)


async def test_a_topic_is_matched_once_per_listing_and_again_after_a_new_one(
    repository: FakeRepository,
    http: httpx.AsyncClient,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A thousand pools ask every interval: the walk over every model's tasks is done once per
    topic and listing, and a listing that brings a new version changes the answer."""
    add_process(repository, "p:1:a", external("t", "topic"))
    found = discovery(http, clock)
    walks: list[str] = []
    match_topic = found._match

    def counted(topic: str) -> TopicMatch:
        walks.append(topic)
        return match_topic(topic)

    monkeypatch.setattr(found, "_match", counted)
    first = [await found.find("topic") for _ in range(5)]
    await found.find("other")
    assert walks == ["topic", "other"]
    assert all(match is first[0] for match in first)

    clock.now += 61
    add_process(repository, "p:2:b", external("t", "topic"))
    again = await found.find("topic")
    assert walks == ["topic", "other", "topic"]
    assert len(again.uses) == 2
    found.forget()
    await found.find("topic")
    assert walks[-1] == "topic"
    assert len(walks) == 4


def _count_walks(found: TopicDiscovery, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The topics `found` walks every model's tasks for, in order."""
    walks: list[str] = []
    match_topic = found._match

    def counted(topic: str) -> TopicMatch:
        walks.append(topic)
        return match_topic(topic)

    monkeypatch.setattr(found, "_match", counted)
    return walks


async def test_a_listing_that_brings_nothing_new_keeps_every_match(
    repository: FakeRepository,
    http: httpx.AsyncClient,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The usual listing: the same definitions as the last one. Each topic is walked once, not
    once per listing (14 % of the operator's CPU at 3000 pools and 600 topics)."""
    add_process(repository, "p:1:a", external("t", "topic"))
    add_process(repository, "q:1:a", external("t", "other"))
    found = discovery(http, clock)
    walks = _count_walks(found, monkeypatch)
    first = await found.find("topic")
    await found.find("other")
    for _ in range(5):
        clock.now += 61
        assert await found.find("topic") is first
        await found.find("other")
    assert repository.count("process-definitions?") == 6  # listed every interval still
    assert repository.count("/resourcedata") == 2
    assert walks == ["topic", "other"]


async def test_a_listing_without_a_definition_or_with_another_one_matches_again(
    repository: FakeRepository,
    http: httpx.AsyncClient,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    add_process(repository, "p:1:a", external("t", "topic"))
    add_process(repository, "p:2:b", external("t", "topic"))
    found = discovery(http, clock)
    walks = _count_walks(found, monkeypatch)
    assert len((await found.find("topic")).uses) == 2

    del repository.processes["p:1:a"]  # undeployed
    clock.now += 61
    assert (await found.find("topic")).uses == (TopicUse("bpmn", "p:2:b", "t"),)

    del repository.processes["p:2:b"]  # one gone and one new: as many definitions as before
    add_process(repository, "p:3:c", external("t3", "topic"))
    clock.now += 61
    assert (await found.find("topic")).uses == (TopicUse("bpmn", "p:3:c", "t3"),)
    assert walks == ["topic"] * 3


async def test_a_definition_readable_only_at_a_later_listing_is_matched_then(
    repository: FakeRepository,
    http: httpx.AsyncClient,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A model that failed to load is fetched at the next listing of the same ids, and counts."""
    add_process(repository, "p:1:a", external("t", "topic"))
    add_process(repository, "p:2:b", external("t", "topic"))
    repository.failing["p:2:b/resourcedata"] = 404  # gone between listing and fetch, it seemed
    found = discovery(http, clock)
    walks = _count_walks(found, monkeypatch)
    assert len((await found.find("topic")).uses) == 1
    clock.now += 61
    assert len((await found.find("topic")).uses) == 1  # still not readable: the same answer
    assert walks == ["topic"]
    del repository.failing["p:2:b/resourcedata"]
    clock.now += 61
    assert len((await found.find("topic")).uses) == 2
    assert walks == ["topic"] * 2


async def test_concurrent_finds_share_one_listing(
    repository: FakeRepository, http: httpx.AsyncClient, clock: Clock
) -> None:
    add_process(repository, "p:1:a", external("t", "topic"))
    found = discovery(http, clock)

    await asyncio.gather(*(found.find("topic") for _ in range(10)))

    assert repository.count("process-definitions?") == 1
    assert repository.count("/resourcedata") == 1


async def test_an_undeployed_definition_leaves_the_answer_and_the_cache(
    repository: FakeRepository, http: httpx.AsyncClient, clock: Clock
) -> None:
    add_process(repository, "p:1:a", external("t", "topic"))
    add_process(repository, "q:1:a", external("t", "topic"))
    found = discovery(http, clock)
    await found.find("topic")

    del repository.processes["q:1:a"]
    clock.now += 61
    match = await found.find("topic")

    assert match.uses == (TopicUse("bpmn", "p:1:a", "t"),)
    assert [d.id for d in found.definitions] == ["p:1:a"]


async def test_a_definition_gone_between_listing_and_fetch_is_skipped(
    repository: FakeRepository, http: httpx.AsyncClient, clock: Clock
) -> None:
    add_process(repository, "p:1:a", external("t", "topic"))
    repository.failing["gone/resourcedata"] = 404
    repository.processes["gone"] = ("gone", "")

    match = await discovery(http, clock).find("topic")

    assert match.uses == (TopicUse("bpmn", "p:1:a", "t"),)


async def test_expression_topics_are_problems_naming_definition_and_element(
    repository: FakeRepository, http: httpx.AsyncClient, clock: Clock
) -> None:
    add_process(repository, "p:1:a", external("fixed", "topic"), external("dyn", "${topicVar}"))

    match = await discovery(http, clock).find("topic")

    assert match.uses == (TopicUse("bpmn", "p:1:a", "fixed"),)
    assert len(match.problems) == 1
    assert "p:1:a" in match.problems[0]
    assert "'dyn'" in match.problems[0]
    assert "${topicVar}" in match.problems[0]
    assert "selectors" in match.problems[0]


async def test_a_malformed_model_is_a_problem_and_the_others_still_count(
    repository: FakeRepository, http: httpx.AsyncClient, clock: Clock
) -> None:
    add_process(repository, "p:1:a", external("t", "topic"))
    repository.processes["bad:1:x"] = ("bad", "<definitions><process id=")
    found = discovery(http, clock)

    match = await found.find("topic")

    assert match.uses == (TopicUse("bpmn", "p:1:a", "t"),)
    assert len(match.problems) == 1
    assert "bad:1:x" in match.problems[0]
    clock.now += 61
    await found.find("topic")
    assert repository.count("bad%3A1%3Ax/resourcedata") == 1  # a broken model stays broken


async def test_a_missing_cmmn_api_is_noted_once_and_bpmn_discovery_goes_on(
    repository: FakeRepository,
    http: httpx.AsyncClient,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    repository.cmmn_api = False
    add_process(repository, "p:1:a", external("t", "topic"))
    found = discovery(http, clock)

    with caplog.at_level(logging.WARNING, logger="flowable_worker_operator.discovery"):
        first = await found.find("topic")
        clock.now += 61
        second = await found.find("topic")

    assert first.uses == second.uses == (TopicUse("bpmn", "p:1:a", "t"),)
    assert len([r for r in caplog.records if "no CMMN API" in r.getMessage()]) == 1


async def test_a_missing_process_api_is_an_error_not_an_empty_answer(
    repository: FakeRepository, clock: Clock
) -> None:
    transport = httpx.MockTransport(repository.handle)
    async with httpx.AsyncClient(base_url=BASE_URL, transport=transport) as client:
        found = TopicDiscovery(http=client, process_api_path="/service", clock=clock)
        with pytest.raises(DiscoveryError, match="processApiPath"):
            await found.find("topic")


@pytest.mark.parametrize("fragment", ["process-definitions", "resourcedata", "case-definitions"])
async def test_server_errors_fail_discovery_and_the_next_call_retries(
    repository: FakeRepository, http: httpx.AsyncClient, clock: Clock, fragment: str
) -> None:
    add_process(repository, "p:1:a", external("t", "topic"))
    repository.failing[fragment] = 500
    found = discovery(http, clock)

    with pytest.raises(DiscoveryError, match="500"):
        await found.find("topic")

    del repository.failing[fragment]
    assert (await found.find("topic")).uses == (TopicUse("bpmn", "p:1:a", "t"),)


async def test_a_malformed_listing_fails_discovery(clock: Clock) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=json.dumps({"rows": []}).encode())

    transport = httpx.MockTransport(answer)
    async with httpx.AsyncClient(base_url=BASE_URL, transport=transport) as client:
        with pytest.raises(DiscoveryError, match="not a page of definitions"):
            await TopicDiscovery(http=client, clock=clock).find("topic")


async def test_a_transport_failure_fails_discovery(clock: Clock) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    transport = httpx.MockTransport(answer)
    async with httpx.AsyncClient(base_url=BASE_URL, transport=transport) as client:
        with pytest.raises(DiscoveryError, match="ConnectError"):
            await TopicDiscovery(http=client, clock=clock).find("topic")


async def test_the_gauge_follows_the_cached_definitions(
    repository: FakeRepository, http: httpx.AsyncClient, clock: Clock
) -> None:
    def gauge() -> float:
        value = metrics.REGISTRY.get_sample_value("flowable_pool_discovery_definitions")
        assert value is not None
        return value

    before = gauge()
    add_process(repository, "p:1:a", external("t", "topic"))
    add_process(repository, "q:1:a", external("t", "topic"))
    found = discovery(http, clock)

    await found.find("topic")
    assert gauge() == before + 2

    found.forget()
    assert gauge() == before


async def test_models_loaded_before_another_failed_are_not_fetched_again(
    repository: FakeRepository, http: httpx.AsyncClient, clock: Clock
) -> None:
    add_process(repository, "good:1:a", external("t", "topic"))
    add_process(repository, "flaky:1:a", external("t", "topic"))
    repository.failing["flaky:1:a/resourcedata"] = 502
    found = discovery(http, clock)
    with pytest.raises(DiscoveryError):
        await found.find("topic")

    del repository.failing["flaky:1:a/resourcedata"]
    match = await found.find("topic")

    assert len(match.uses) == 2
    assert repository.count("good%3A1%3Aa/resourcedata") == 1


# -- element ids exclusive to a topic (one count for every version) --------------------------


def test_an_external_task_without_a_topic_is_kept_with_an_empty_topic() -> None:
    xml = bpmn(process("p", '<serviceTask id="bare" flowable:type="external-worker"/>'))

    assert parse_model(xml, scope="bpmn").tasks == (ExternalTask("bare", ""),)


async def test_an_id_with_the_topic_in_every_version_is_exclusive(
    repository: FakeRepository, http: httpx.AsyncClient, clock: Clock
) -> None:
    for version in range(1, 51):
        add_process(repository, f"inv:{version}:x", external("check", "invoices"))

    match = await discovery(http, clock).find("invoices")

    assert len(match.uses) == 50
    assert match.exclusive_elements == frozenset({"check"})


async def test_another_topic_on_the_id_in_one_definition_bars_only_that_id(
    repository: FakeRepository, http: httpx.AsyncClient, clock: Clock
) -> None:
    for version in range(1, 4):
        add_process(
            repository, f"inv:{version}:x", external("check", "invoices"), external("a", "invoices")
        )
    add_process(repository, "ship:1:x", external("check", "shipments"))
    found = discovery(http, clock)

    invoices = await found.find("invoices")
    shipments = await found.find("shipments")

    assert invoices.exclusive_elements == frozenset({"a"})
    assert shipments.uses == (TopicUse("bpmn", "ship:1:x", "check"),)
    assert shipments.exclusive_elements == frozenset()


@pytest.mark.parametrize(
    "other_task",
    [
        external("check", "${topicVar}"),
        '<serviceTask id="check" flowable:type="external-worker"/>',
    ],
    ids=["expression-topic", "no-topic"],
)
async def test_a_topic_not_known_to_be_ours_on_the_id_bars_it(
    repository: FakeRepository, http: httpx.AsyncClient, clock: Clock, other_task: str
) -> None:
    add_process(repository, "inv:1:x", external("check", "invoices"))
    add_process(repository, "dyn:1:x", other_task)

    match = await discovery(http, clock).find("invoices")

    assert match.uses == (TopicUse("bpmn", "inv:1:x", "check"),)
    assert match.exclusive_elements == frozenset()


async def test_an_unreadable_model_bars_every_id(
    repository: FakeRepository, http: httpx.AsyncClient, clock: Clock
) -> None:
    add_process(repository, "inv:1:x", external("check", "invoices"))
    repository.processes["bad:1:x"] = ("bad", "<definitions><process id=")

    match = await discovery(http, clock).find("invoices")

    assert match.uses == (TopicUse("bpmn", "inv:1:x", "check"),)
    assert match.problems
    assert match.exclusive_elements == frozenset()


async def test_bpmn_and_cmmn_tasks_sharing_an_id_and_the_topic_stay_exclusive(
    repository: FakeRepository, http: httpx.AsyncClient, clock: Clock
) -> None:
    add_process(repository, "inv:1:x", external("check", "invoices"))
    repository.cases["c-uuid"] = (
        "case",
        cmmn(
            "case", '<task id="check" flowable:type="external-worker" flowable:topic="invoices"/>'
        ),
    )

    match = await discovery(http, clock).find("invoices")

    assert set(match.uses) == {
        TopicUse("bpmn", "inv:1:x", "check"),
        TopicUse("cmmn", "c-uuid", "check"),
    }
    assert match.exclusive_elements == frozenset({"check"})


async def test_a_cmmn_task_giving_the_id_another_topic_bars_it(
    repository: FakeRepository, http: httpx.AsyncClient, clock: Clock
) -> None:
    add_process(repository, "inv:1:x", external("check", "invoices"))
    repository.cases["c-uuid"] = (
        "case",
        cmmn("case", '<task id="check" flowable:type="external-worker" flowable:topic="cases"/>'),
    )

    match = await discovery(http, clock).find("invoices")

    assert match.exclusive_elements == frozenset()


async def test_a_new_definition_is_judged_at_the_next_listing(
    repository: FakeRepository, http: httpx.AsyncClient, clock: Clock
) -> None:
    add_process(repository, "inv:1:x", external("check", "invoices"))
    found = discovery(http, clock)
    assert (await found.find("invoices")).exclusive_elements == frozenset({"check"})

    add_process(repository, "ship:1:x", external("check", "shipments"))
    clock.now += 30
    assert (await found.find("invoices")).exclusive_elements == frozenset({"check"})
    clock.now += 31

    assert (await found.find("invoices")).exclusive_elements == frozenset()
