"""An engine after a year of deployments, probed with fakes: what each pool is told, and counted.

Many versions of an expression-topic model are one bounded note for every pool, never a reason
to stop a pool whose topic is found; a topic no model uses is said so and held; key selectors
count every version; a pinned definition left behind by a newer version is noticed; pools that
count the same jobs are named to each other. The real-engine version of each: tests/e2e/
test_messy_engine.py.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from flowable_worker import ClientSettings
from flowable_worker_operator.backlog import Note, ProbeError, ProbeResult, Selector
from flowable_worker_operator.engines import Engine
from flowable_worker_operator.overlap import Overlaps, overlaps
from flowable_worker_operator.reconcile import PoolState, Reconciler
from flowable_worker_operator.scaling import Backlog
from flowable_worker_operator.spec import SpecError, parse_pool
from flowable_worker_operator.status import MESSAGE_LIMIT, set_condition

from .test_backlog import FakeFlowable, probe_fake
from .test_reconcile import NOW, FakeProber, FakeWorkload, body, condition, tick


@pytest.fixture
def fake() -> FakeFlowable:
    return FakeFlowable()


async def test_220_expression_versions_are_one_bounded_note_not_a_problem(
    fake: FakeFlowable,
) -> None:
    fake.deploy_versions("dynamic", {"work": "${topicVar}"}, 220)
    versions = fake.deploy_versions("invoice", {"check": "invoices"}, 2)
    fake.add_jobs(versions[1], "check", unlocked=3)

    result, _ = await probe_fake(fake, "invoices")

    assert result.problems == ()
    assert result.topic_found
    assert result.backlog == Backlog(unlocked=3, locked=0)
    [note] = result.notes
    assert note.reason == "UnresolvedTopics"
    assert "220 external-worker element(s) whose topic is an expression" in note.message
    assert len(note.message) <= MESSAGE_LIMIT


async def test_a_topic_only_expressions_might_name_is_one_bounded_problem(
    fake: FakeFlowable,
) -> None:
    fake.deploy_versions("dynamic", {"work": "${" + "x" * 3000 + "}"}, 220)

    result, _ = await probe_fake(fake, "invoices")

    assert not result.topic_found
    [problem] = result.problems
    assert problem.startswith("no deployed model names topic 'invoices' literally")
    assert len(problem) <= MESSAGE_LIMIT


async def test_a_topic_no_model_uses_is_not_found(fake: FakeFlowable) -> None:
    fake.deploy_versions("invoice", {"check": "invoices"}, 1)

    result, requests = await probe_fake(fake, "invoice")  # one letter short

    assert not result.topic_found
    assert result.problems == ()
    assert result.notes == ()
    assert result.selectors == ()
    assert requests == 0


async def test_a_key_selector_counts_every_version_with_one_pair_of_counts(
    fake: FakeFlowable,
) -> None:
    versions = fake.deploy_versions("invoice", {"check": "${topicVar}"}, 3)
    for definition_id in versions:
        fake.add_jobs(definition_id, "check", unlocked=2, locked=1)

    selector = Selector("check", process_definition_key="invoice")
    result, requests = await probe_fake(fake, "invoices", selectors=[selector])

    assert result.selectors == (Selector("check"),)  # `check` is this key's alone
    assert result.backlog == Backlog(unlocked=6, locked=3)
    assert requests == 2


async def test_a_key_selector_is_counted_per_version_when_another_model_shares_the_id(
    fake: FakeFlowable,
) -> None:
    versions = fake.deploy_versions("invoice", {"check": "${topicVar}"}, 2)
    other = fake.deploy_versions("shipment", {"check": "shipments"}, 1)[0]
    for definition_id in versions:
        fake.add_jobs(definition_id, "check", unlocked=1)
    fake.add_jobs(other, "check", unlocked=10)

    selector = Selector("check", process_definition_key="invoice")
    result, _ = await probe_fake(fake, "invoices", selectors=[selector])

    assert set(result.selectors) == {Selector("check", process_definition_id=v) for v in versions}
    assert result.backlog == Backlog(unlocked=2, locked=0)


async def test_a_key_that_matches_nothing_is_not_found_and_noted(fake: FakeFlowable) -> None:
    fake.deploy_versions("invoice", {"check": "invoices"}, 1)

    selector = Selector("check", process_definition_key="invoce")
    result, _ = await probe_fake(fake, "invoices", selectors=[selector])

    assert not result.topic_found
    assert [note.reason for note in result.notes] == ["SelectorNotFound"]


async def test_a_pinned_definition_behind_a_newer_version_without_jobs_is_noted(
    fake: FakeFlowable,
) -> None:
    old, new = fake.deploy_versions("invoice", {"check": "invoices"}, 2)
    fake.add_jobs(new, "check", unlocked=4)
    pinned = Selector("check", process_definition_id=old)

    stale, _ = await probe_fake(fake, "invoices", selectors=[pinned])
    fake.add_jobs(old, "check", unlocked=1)
    busy, _ = await probe_fake(fake, "invoices", selectors=[pinned])
    latest, _ = await probe_fake(
        fake, "invoices", selectors=[Selector("check", process_definition_id=new)]
    )

    [note] = stale.notes
    assert note.reason == "StaleSelector"
    assert new in note.message
    assert "version 2" in note.message
    assert busy.notes == ()  # its own jobs are still there: counted, nothing to say yet
    assert latest.notes == ()


def test_selectors_overlap_when_a_job_could_match_both() -> None:
    every = Selector("check")
    v1 = Selector("check", process_definition_id="inv:1:a")
    v2 = Selector("check", process_definition_id="inv:2:b")
    acme = Selector("check", tenant_id="acme")
    globex = Selector("check", tenant_id="globex")
    assert overlaps(every, v1)
    assert overlaps(v1, v1)
    assert overlaps(acme, v1)
    assert not overlaps(v1, v2)
    assert not overlaps(acme, globex)
    assert not overlaps(every, Selector("mail"))


def test_the_overlap_registry_names_the_others_and_forgets_lapsed_pools() -> None:
    engine = Engine(ClientSettings(base_url="http://flowable:8080"))
    with_password = Engine(ClientSettings(base_url="http://flowable:8080/", token="t"))
    elsewhere = Engine(ClientSettings(base_url="http://other:8080"))
    registry = Overlaps()
    lapse = timedelta(seconds=30)
    check = [Selector("check")]
    assert registry.record("a/one", engine, check, NOW, lapse=lapse) == ()
    assert registry.record("b/two", with_password, check, NOW, lapse=lapse) == ("a/one",)
    assert registry.record("c/three", elsewhere, check, NOW, lapse=lapse) == ()
    assert registry.record("a/one", engine, check, NOW, lapse=lapse) == ("b/two",)
    registry.forget("b/two")
    assert registry.record("a/one", engine, check, NOW, lapse=lapse) == ()
    registry.record("b/two", engine, check, NOW, lapse=lapse)
    later = NOW + timedelta(seconds=31)
    assert registry.record("a/one", engine, check, later, lapse=lapse) == ()


def test_a_condition_message_is_capped() -> None:
    [ready] = set_condition(
        [], type="Ready", status=False, reason="X", message="y" * 50000, generation=1, now=NOW
    )
    assert len(ready["message"]) == MESSAGE_LIMIT
    assert ready["message"].endswith("(truncated)")


# -- the tick -------------------------------------------------------------------------------


class ResultProber(FakeProber):
    """A prober answering a fixed `ProbeResult`."""

    def __init__(self, result: ProbeResult) -> None:
        super().__init__()
        self.result = result

    async def backlog(self, engine: Engine, topic: str, selectors: object) -> ProbeResult:
        return self.result


QUICK_DOWN = {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}}


async def test_an_engine_note_keeps_a_found_topic_ready_and_is_warned_once() -> None:
    note = Note("UnresolvedTopics", "this engine has 220 external-worker element(s) ...")
    prober = ResultProber(ProbeResult(Backlog(8, 0), (Selector("check"),), notes=(note,)))
    state = PoolState()
    first = await tick(FakeWorkload(replicas=2), prober, body(), state)
    second = await tick(
        FakeWorkload(replicas=2), prober, body(), state, NOW + timedelta(seconds=15)
    )

    assert condition(first, "Ready")["status"] == "True"
    assert [(e.type, e.reason) for e in first.events if e.type == "Warning"] == [
        ("Warning", "UnresolvedTopics")
    ]
    assert first.status["warnings"] == [note.message]
    assert not [e for e in second.events if e.type == "Warning"]


async def test_a_topic_not_found_is_ready_false_and_holds_a_busy_pool() -> None:
    prober = ResultProber(ProbeResult(Backlog(0, 0), (), topic_found=False))
    workload = FakeWorkload(replicas=3)
    state = PoolState()
    outcome = await tick(workload, prober, body(QUICK_DOWN), state)
    later = await tick(workload, prober, body(QUICK_DOWN), state, NOW + timedelta(minutes=10))

    ready = condition(outcome, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "TopicNotFound")
    assert "'invoices'" in ready["message"]
    assert [(e.type, e.reason) for e in outcome.events] == [("Warning", "TopicNotFound")]
    assert later.events == ()
    assert workload.replicas == 3  # never scaled down for a count of nothing
    assert condition(later, "EngineReachable")["status"] == "True"
    assert outcome.status["probe"]["consecutiveFailures"] == 0


async def test_a_topic_not_found_leaves_an_idle_pool_at_zero() -> None:
    prober = ResultProber(ProbeResult(Backlog(0, 0), (), topic_found=False))
    workload = FakeWorkload(replicas=0)
    outcome = await tick(workload, prober, body(), PoolState())
    assert workload.replicas == 0
    assert condition(outcome, "Ready")["reason"] == "TopicNotFound"


class TopicProber(FakeProber):
    """A prober whose answer depends on the pool's topic."""

    def __init__(self, results: dict[str, ProbeResult]) -> None:
        super().__init__()
        self.results = results

    async def backlog(self, engine: Engine, topic: str, selectors: object) -> ProbeResult:
        return self.results[topic]


async def test_pools_counting_the_same_jobs_are_told_of_each_other() -> None:
    prober = TopicProber(
        {
            "invoices": ProbeResult(Backlog(8, 0), (Selector("check"),)),
            "mail": ProbeResult(Backlog(8, 0), (Selector("mail"),)),
        }
    )
    first, second = body(), body()
    second["metadata"] = {**second["metadata"], "name": "invoices-2"}
    third = body(spec={"topic": "mail"})
    third["metadata"] = {**third["metadata"], "name": "mail", "namespace": "post"}
    reconciler = Reconciler(workload=FakeWorkload(replicas=1), prober=prober)
    states = [PoolState(), PoolState(), PoolState()]

    one = await reconciler.tick(first, states[0], NOW)
    two = await reconciler.tick(second, states[1], NOW)
    three = await reconciler.tick(third, states[2], NOW)
    again = await reconciler.tick(first, states[0], NOW + timedelta(seconds=15))
    reconciler.forget("billing", "invoices-2")
    alone = await reconciler.tick(first, states[0], NOW + timedelta(seconds=30))

    assert condition(one, "SharedBacklog")["status"] == "False"
    assert condition(two, "SharedBacklog")["status"] == "True"
    assert "billing/invoices" in condition(two, "SharedBacklog")["message"]
    assert ("Warning", "SharedBacklog") in [(e.type, e.reason) for e in two.events]
    assert condition(three, "SharedBacklog")["status"] == "False"
    assert condition(again, "SharedBacklog")["status"] == "True"
    assert "billing/invoices-2" in condition(again, "SharedBacklog")["message"]
    assert ("Warning", "SharedBacklog") in [(e.type, e.reason) for e in again.events]
    assert condition(again, "Ready")["status"] == "True"
    assert condition(alone, "SharedBacklog")["status"] == "False"


def test_a_selector_names_exactly_one_definition_id_or_key() -> None:
    key = {"elementId": "work", "processDefinitionKey": "invoice", "tenantId": "acme"}
    pool = parse_pool(body(spec={"backlog": {"selectors": [key]}}))
    [selector] = pool.spec.backlog.selectors
    assert (selector.process_definition_key, selector.tenant_id) == ("invoice", "acme")
    both = {**key, "processDefinitionId": "invoice:1:x"}
    with pytest.raises(SpecError, match="exactly one of processDefinitionId"):
        parse_pool(body(spec={"backlog": {"selectors": [both]}}))


async def test_status_lists_at_most_100_selectors_and_a_bounded_error() -> None:
    many = tuple(Selector("check", process_definition_id=f"invoice:{n}:x") for n in range(300))
    listed = await tick(
        FakeWorkload(), ResultProber(ProbeResult(Backlog(0, 0), many)), body(), PoolState()
    )
    assert len(listed.status["selectors"]) == 100

    failing = FakeProber(ProbeError("x" * 5000))
    failed = await tick(FakeWorkload(), failing, body(), PoolState())
    assert len(failed.status["probe"]["lastError"]) <= MESSAGE_LIMIT
