"""`handlers` at its seam with kopf: the decorated functions are called as kopf calls them, with a
fake reconciler and workload behind the memo's `Runtime`, and `kopf.event` recorded. What is
checked is the wiring's own job: each pool's ticks on the one clock (Events before the status
write, a status written only when it changed, metrics recorded, a failed tick counted and
retried, the pool forgotten when it goes), wake-ups on spec or annotation changes, deletion and
re-creation, the claim indexes, and the operator settings."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import kopf
import pytest
from prometheus_client import CollectorRegistry

from flowable_worker_operator import handlers, metrics
from flowable_worker_operator.conflicts import Claim, ClaimKey, Target
from flowable_worker_operator.lean_bodies import fingerprint
from flowable_worker_operator.reconcile import Event, Outcome
from flowable_worker_operator.scaling import Backlog
from flowable_worker_operator.spec import GROUP, PAUSED_REPLICAS_ANNOTATION

NAMESPACE, NAME = "billing", "handlers-test"


def _body(generation: int = 1, paused: str | None = None) -> kopf.Body:
    annotations = {} if paused is None else {PAUSED_REPLICAS_ANNOTATION: paused}
    return kopf.Body(
        {
            "apiVersion": f"{GROUP}/v1alpha1",
            "kind": "ExternalWorkerPool",
            "metadata": {
                "name": NAME,
                "namespace": NAMESPACE,
                "uid": "u1",
                "generation": generation,
                "annotations": annotations,
            },
            "spec": {
                "engine": {"url": "http://flowable:8080"},
                "topic": "t",
                "worker": {"handler": {"python": "a:b"}},
            },
        }
    )


@dataclass
class Reconciler:
    """Answers each tick with the next of `outcomes` (an exception is raised); once they are all
    given, sets `done` and holds the next tick until the pool goes."""

    outcomes: list[Outcome | Exception]
    done: asyncio.Event
    claims_seen: list[list[Claim]] = field(default_factory=list)
    """What the tick's claim lookup answers for the workload `Deployment d`."""
    forgotten: list[tuple[str, str]] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    async def tick(
        self, body: Any, state: Any, now: Any, *, claims: Callable[[Target], list[Claim]]
    ) -> Outcome:
        if not self.outcomes:
            self.done.set()
            await asyncio.Event().wait()  # cancelled when the pool goes
        self.claims_seen.append(claims(Target.of("apps/v1", "Deployment", "d")))
        step = self.outcomes.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    def forget(self, namespace: str, name: str) -> None:
        self.forgotten.append((namespace, name))


@dataclass
class Workload:
    log: list[str]
    writes: list[dict[str, Any]] = field(default_factory=list)

    async def write_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.log.append("status")
        self.writes.append(status)


def _outcome(replicas: int, *events: Event) -> Outcome:
    return Outcome(
        status={"replicas": replicas, "conditions": [{"type": "Ready", "status": "True"}]},
        events=events,
        next_tick=timedelta(milliseconds=1),
        backlog=Backlog(unlocked=7, locked=1),
    )


def _value(name: str, **labels: str) -> float | None:
    registry: CollectorRegistry = metrics.REGISTRY
    return registry.get_sample_value(name, {"namespace": NAMESPACE, "pool": NAME, **labels})


async def _run_ticks(
    monkeypatch: pytest.MonkeyPatch,
    outcomes: list[Outcome | Exception],
    *,
    pool_claims: dict[ClaimKey, list[Claim]] | None = None,
) -> tuple[Reconciler, Workload, list[tuple[str, str]]]:
    """One pool through kopf's calls: its first event, its ticks on the clock until `outcomes`
    are used up, then its deletion."""
    monkeypatch.setattr(handlers, "ERROR_BACKOFF", timedelta(milliseconds=1))
    monkeypatch.setattr(handlers, "STOP_TIMEOUT", timedelta(milliseconds=20))
    done = asyncio.Event()
    log: list[str] = []
    posted: list[tuple[str, str]] = []

    def event(body: Any, *, type: str, reason: str, message: str) -> None:
        log.append("event")
        posted.append((type, reason))

    monkeypatch.setattr(kopf, "event", event)
    reconciler = Reconciler(outcomes, done, log=log)
    workload = Workload(log)
    runtime = handlers.Runtime(workload=workload, prober=None, reconciler=reconciler)  # type: ignore[arg-type]
    memo = kopf.Memo(runtime=runtime)
    await _event(memo, _body(), pool_claims=pool_claims or {})
    await asyncio.wait_for(done.wait(), timeout=10)
    await asyncio.wait_for(handlers._on_pool_delete(body=_body(), memo=memo), timeout=10)
    await runtime.stop()
    return reconciler, workload, posted


async def _event(
    memo: kopf.Memo,
    body: kopf.Body,
    type: str | None = None,
    pool_claims: dict[ClaimKey, list[Claim]] | None = None,
) -> None:
    await handlers._on_pool_event(
        type=type, body=body, memo=memo, pool_claims=pool_claims or {}, hpa_claims={}
    )


async def test_a_tick_posts_events_before_writing_its_status_and_writes_only_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scaled = Event("Normal", "ScaleUp", "to 2")
    reconciler, workload, posted = await _run_ticks(
        monkeypatch, [_outcome(2, scaled), _outcome(2), _outcome(3)]
    )
    assert posted == [("Normal", "ScaleUp")]
    assert reconciler.log[:2] == ["event", "status"]
    assert [w["replicas"] for w in workload.writes] == [2, 3]  # the unchanged one not rewritten


async def test_a_failed_tick_is_counted_retried_and_rewrites_the_status(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    errors_at_stop: list[float | None] = []
    real_forget = metrics.forget_pool

    def forget(namespace: str, pool: str) -> None:
        errors_at_stop.append(_value("flowable_pool_tick_errors_total"))
        real_forget(namespace, pool)

    monkeypatch.setattr(metrics, "forget_pool", forget)
    _, workload, _ = await _run_ticks(
        monkeypatch, [_outcome(1), RuntimeError("API server said no"), _outcome(1)]
    )
    assert errors_at_stop == [1.0]
    # After a failure the last write is not trusted: the same status is written again.
    assert [w["replicas"] for w in workload.writes] == [1, 1]


async def test_metrics_are_recorded_each_tick_and_forgotten_with_the_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorded: list[dict[str, Any]] = []
    real_record = metrics.record_tick

    def spy(namespace: str, pool: str, **values: Any) -> None:
        recorded.append(values)
        real_record(namespace, pool, **values)
        # While the pool lives, its series are there.
        assert _value("flowable_pool_backlog_jobs", state="unlocked") == 7

    monkeypatch.setattr(metrics, "record_tick", spy)
    reconciler, _, _ = await _run_ticks(monkeypatch, [_outcome(4)])
    assert recorded[0]["replicas"] == 4
    assert recorded[0]["backlog"] == Backlog(unlocked=7, locked=1)
    assert recorded[0]["conditions"] == ({"type": "Ready", "status": "True"},)
    assert reconciler.forgotten == [(NAMESPACE, NAME)]
    assert _value("flowable_pool_backlog_jobs", state="unlocked") is None
    assert _value("flowable_pool_replicas") is None


async def test_the_tick_sees_the_claims_on_its_workload_in_its_own_namespace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    claim = Claim(kind="ExternalWorkerPool", name="other", uid="u2", created=None, target=None)  # type: ignore[arg-type]
    claims = {
        (NAMESPACE, "Deployment", "d"): [claim],
        (NAMESPACE, "Deployment", "e"): [claim, claim],
        ("elsewhere", "Deployment", "d"): [claim, claim],
    }
    reconciler, _, _ = await _run_ticks(monkeypatch, [_outcome(1)], pool_claims=claims)
    assert reconciler.claims_seen == [[claim]]


def _idle_runtime() -> tuple[handlers.Runtime, kopf.Memo, list[tuple[str, str]]]:
    """A runtime whose clock is not started, with its wake-ups recorded."""
    runtime = handlers.Runtime(workload=None, prober=None, reconciler=Forgetful())  # type: ignore[arg-type]
    woken: list[tuple[str, str]] = []
    runtime.ticker.wake = woken.append  # type: ignore[method-assign]
    runtime.start = lambda: None  # type: ignore[method-assign]
    return runtime, kopf.Memo(runtime=runtime), woken


class Forgetful:
    def __init__(self) -> None:
        self.forgotten: list[tuple[str, str]] = []

    def forget(self, namespace: str, name: str) -> None:
        self.forgotten.append((namespace, name))


async def test_a_new_generation_or_paused_replicas_wakes_the_pool_and_status_does_not() -> None:
    runtime, memo, woken = _idle_runtime()
    await _event(memo, _body(1))  # the first sight: filed, due at once
    assert (NAMESPACE, NAME) in runtime.ticker
    await _event(memo, _body(1), "MODIFIED")  # e.g. our own status write
    assert woken == []
    await _event(memo, _body(2), "MODIFIED")
    assert woken == [(NAMESPACE, NAME)]
    await _event(memo, _body(2, paused="0"), "MODIFIED")
    assert woken == [(NAMESPACE, NAME)] * 2
    newest = _body(2, paused="0")
    await _event(memo, newest, "MODIFIED")
    assert runtime.pools[NAMESPACE, NAME].body == newest  # ticks read the newest body


async def test_a_pool_marked_for_deletion_or_deleted_ticks_no_more_and_is_forgotten() -> None:
    runtime, memo, _ = _idle_runtime()
    await _event(memo, _body())
    going = _body()
    going["metadata"]["deletionTimestamp"] = "2026-11-30T22:00:00Z"
    await _event(memo, going, "MODIFIED")
    assert (NAMESPACE, NAME) not in runtime.ticker
    assert runtime.pools == {}
    assert runtime.reconciler.forgotten == [(NAMESPACE, NAME)]  # type: ignore[attr-defined]
    await _event(memo, going, "MODIFIED")  # kopf removing the finalizer: not filed again
    await _event(memo, going, "DELETED")
    await handlers._on_pool_delete(body=going, memo=memo)
    assert runtime.pools == {}
    assert runtime.reconciler.forgotten == [(NAMESPACE, NAME)]  # type: ignore[attr-defined]


async def test_a_pool_made_again_under_the_same_name_starts_afresh() -> None:
    runtime, memo, _ = _idle_runtime()
    await _event(memo, _body())
    runtime.pools[NAMESPACE, NAME].written = fingerprint({"replicas": 3})
    again = _body()
    again["metadata"]["uid"] = "u2"
    await _event(memo, again)
    pool = runtime.pools[NAMESPACE, NAME]
    assert pool.body == again
    assert pool.written is None  # nothing carried over from the pool that went
    assert (NAMESPACE, NAME) in runtime.ticker


def test_the_indexes_key_claims_by_namespace_and_workload() -> None:
    claims = handlers._pool_claims(body=_body())
    key = (NAMESPACE, "Deployment", f"{NAME}-worker")
    assert list(claims) == [key]
    assert claims[key].name == NAME
    hpa = kopf.Body(
        {
            "metadata": {"name": "h", "namespace": NAMESPACE, "uid": "u3"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"}
            },
        }
    )
    assert handlers._hpa_claims(body=hpa)[(NAMESPACE, "Deployment", "d")].kind == (
        "HorizontalPodAutoscaler"
    )
    assert handlers._hpa_claims(body=kopf.Body({"metadata": {"name": "x"}, "spec": {}})) == {}
    broken = kopf.Body({"metadata": {"name": "p", "namespace": NAMESPACE}, "spec": {}})
    assert handlers._pool_claims(body=broken) == {}


async def test_the_operator_settings_post_only_explicit_events_and_own_the_finalizer() -> None:
    settings = kopf.OperatorSettings()
    await handlers._configure(settings=settings)
    assert settings.posting.loggers is False
    assert settings.persistence.finalizer == f"{GROUP}/operator"
    assert settings.watching.server_timeout == 300
    # What kopf writes in a pool is under the operator's domain.
    body = _body()
    patch = kopf.Patch()
    settings.persistence.diffbase_storage.store(
        body=body, patch=patch, essence=settings.persistence.diffbase_storage.build(body=body)
    )
    written = list(patch["metadata"]["annotations"])
    assert f"{GROUP}/last-handled-configuration" in written
    assert all(key.startswith(f"{GROUP}/") for key in written), written
    # The handler whose progress kopf keeps is the deletion handler: the finalizer's reason.
    registry = kopf.get_default_registry()
    deleting = [h for h in registry._changing.get_all_handlers() if h.reason == "delete"]
    assert [h.id for h in deleting] == ["scaler"]
    assert all(h.requires_finalizer for h in deleting)


async def test_cleanup_stops_the_clock_and_closes_the_prober() -> None:
    closed: list[bool] = []

    class Prober:
        async def aclose(self) -> None:
            closed.append(True)

    runtime = handlers.Runtime(workload=None, prober=Prober(), reconciler=Forgetful())  # type: ignore[arg-type]
    runtime.start()
    await _event(kopf.Memo(runtime=runtime), _body())
    await handlers._close(memo=kopf.Memo(runtime=runtime))
    await handlers._close(memo=kopf.Memo())  # before startup built anything: nothing to close
    assert closed == [True]
    assert len(runtime.ticker) == 0
    assert runtime.reconciler.forgotten == [(NAMESPACE, NAME)]  # type: ignore[attr-defined]


def test_pools_on_one_topic_of_one_engine_tick_in_the_same_instant(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    interval = timedelta(seconds=15)
    other = _body()
    other["spec"]["engine"]["url"] = "http://flowable:8080/"  # the same engine
    elsewhere = _body()
    elsewhere["spec"]["topic"] = "mail"
    monkeypatch.setattr(handlers.time, "time", lambda: 1_796_000_003.0)
    first = 1_796_000_003.0 + handlers._in_phase(interval, _body()).total_seconds()
    monkeypatch.setattr(handlers.time, "time", lambda: 1_796_000_011.5)
    second = 1_796_000_011.5 + handlers._in_phase(interval, other).total_seconds()
    mail = 1_796_000_011.5 + handlers._in_phase(interval, elsewhere).total_seconds()
    assert (second - first) % 15 == pytest.approx(0, abs=1e-6)
    apart = (mail - first) % 15
    assert min(apart, 15 - apart) > 1e-3
    assert timedelta(0) < handlers._in_phase(interval, _body()) <= interval


async def test_a_pool_waiting_a_long_interval_goes_at_once_or_wakes_on_a_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kopf, "event", lambda *_a, **_k: None)
    ticks: list[float] = []
    loop = asyncio.get_running_loop()

    class Slow(Forgetful):
        async def tick(self, *_a: Any, **_k: Any) -> Outcome:
            ticks.append(loop.time())
            return Outcome(status={}, events=(), next_tick=timedelta(seconds=30))

    runtime = handlers.Runtime(workload=Workload([]), prober=None, reconciler=Slow())  # type: ignore[arg-type]
    memo = kopf.Memo(runtime=runtime)
    runtime.start()
    await _event(memo, _body())
    await asyncio.sleep(0.05)
    await _event(memo, _body(2), "MODIFIED")  # a new generation: ticks now
    await asyncio.sleep(0.05)
    assert len(ticks) == 2
    started = loop.time()
    await asyncio.wait_for(handlers._on_pool_delete(body=_body(2), memo=memo), timeout=5)
    assert loop.time() - started < 1  # not at the end of its 30 s wait
    await runtime.stop()


async def test_a_pool_of_another_replica_is_not_ticked_until_its_shard_comes_here(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kopf, "event", lambda *_a, **_k: None)
    ticks: list[str] = []

    class Ticking(Forgetful):
        async def tick(self, body: Any, *_a: Any, **_k: Any) -> Outcome:
            ticks.append(body["metadata"]["name"])
            return Outcome(status={"r": 1}, events=(), next_tick=timedelta(seconds=30))

    class Shards:
        """The part of `ShardKeeper` the runtime uses: ownership, and its changes."""

        shards = 4

        def __init__(self) -> None:
            self.mine = False
            self.moved = asyncio.Event()

        def owns(self, namespace: str, name: str) -> bool:
            return self.mine

        async def changed(self) -> None:
            await self.moved.wait()
            self.moved = asyncio.Event()

    shards = Shards()
    workload = Workload([])
    runtime = handlers.Runtime(
        workload=workload,  # type: ignore[arg-type]
        prober=None,  # type: ignore[arg-type]
        reconciler=Ticking(),  # type: ignore[arg-type]
        shards=shards,  # type: ignore[arg-type]
    )
    memo = kopf.Memo(runtime=runtime)
    runtime.start()
    await _event(memo, _body())
    await asyncio.sleep(0.05)
    assert ticks == []
    assert workload.writes == []
    shards.mine = True
    shards.moved.set()
    await asyncio.sleep(0.05)
    assert ticks == [NAME]  # woken by the move, not a minute later
    assert workload.writes == [{"r": 1}]
    await runtime.stop()


KOPF_CONTEXT: contextvars.ContextVar[str] = contextvars.ContextVar("kopf_context")


async def test_ticks_run_in_the_context_kopf_gives_its_event_handlers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`kopf.event` posts through context variables kopf sets for its handlers, not yet set at
    startup: the clock starts at the first event, so that every tick inherits them."""
    seen: list[str] = []

    class Reading(Forgetful):
        async def tick(self, *_a: Any, **_k: Any) -> Outcome:
            seen.append(KOPF_CONTEXT.get("unset"))
            return Outcome(status={}, events=(), next_tick=timedelta(seconds=30))

    runtime = handlers.Runtime(workload=Workload([]), prober=None, reconciler=Reading())  # type: ignore[arg-type]

    async def as_kopf_calls_it() -> None:
        KOPF_CONTEXT.set("the event queue")
        await _event(kopf.Memo(runtime=runtime), _body())

    await asyncio.ensure_future(as_kopf_calls_it())  # a task: the variable stays in it
    assert KOPF_CONTEXT.get("unset") == "unset"
    await asyncio.sleep(0.05)
    assert seen == ["the event queue"]
    await runtime.stop()


async def test_new_pools_wait_in_line_for_a_first_tick_and_the_gauge_counts_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = asyncio.Event()
    ticking: list[tuple[str, str]] = []

    async def tick(runtime: handlers.Runtime, key: tuple[str, str]) -> float:
        ticking.append(key)
        await release.wait()
        return 3600.0

    monkeypatch.setattr(handlers, "_tick", tick)
    monkeypatch.setattr(handlers, "FIRST_TICKS", 2)
    runtime = handlers.Runtime(workload=None, prober=None, reconciler=Forgetful())  # type: ignore[arg-type]
    runtime.ticker.start()
    for index in range(5):
        runtime.ticker.add((NAMESPACE, f"pool-{index}"))
    for _ in range(1000):
        if len(ticking) == 2:
            break
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.01)
    assert len(ticking) == 2
    waiting = metrics.REGISTRY.get_sample_value("flowable_pool_first_ticks_waiting")
    assert waiting == 3
    release.set()
    for _ in range(1000):
        if len(ticking) == 5:
            break
        await asyncio.sleep(0.001)
    assert len(ticking) == 5
    assert metrics.REGISTRY.get_sample_value("flowable_pool_first_ticks_waiting") == 0
    await runtime.ticker.stop()
