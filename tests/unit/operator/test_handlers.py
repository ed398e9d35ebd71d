"""`handlers` at its seam with kopf: the decorated functions are called as kopf calls them, with a
fake reconciler and workload behind the memo's `Runtime`, and `kopf.event` recorded. What is
checked is the wiring's own job: one daemon loop per pool (Events before the status write, a
status written only when it changed, metrics recorded, a failed tick counted and retried, the
pool forgotten when the daemon stops), wake-ups on spec or annotation changes, the claim indexes,
and the operator settings."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import kopf
import pytest
from prometheus_client import CollectorRegistry

from flowable_worker_operator import handlers, metrics
from flowable_worker_operator.conflicts import Claim, ClaimKey, Target
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


class Stopped:
    """kopf.DaemonStopped as the daemon uses it: falsy until set, and awaitable."""

    def __init__(self) -> None:
        self.flag = asyncio.Event()

    def __bool__(self) -> bool:
        return self.flag.is_set()

    async def wait(self) -> None:
        await self.flag.wait()


@dataclass
class Reconciler:
    """Answers each tick with the next of `outcomes` (an exception is raised), then stops."""

    outcomes: list[Outcome | Exception]
    stopped: Stopped
    claims_seen: list[list[Claim]] = field(default_factory=list)
    """What the tick's claim lookup answers for the workload `Deployment d`."""
    forgotten: list[tuple[str, str]] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    async def tick(
        self, body: Any, state: Any, now: Any, *, claims: Callable[[Target], list[Claim]]
    ) -> Outcome:
        self.claims_seen.append(claims(Target.of("apps/v1", "Deployment", "d")))
        step = self.outcomes.pop(0)
        if not self.outcomes:
            self.stopped.flag.set()
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


async def _run_daemon(
    monkeypatch: pytest.MonkeyPatch,
    outcomes: list[Outcome | Exception],
    *,
    pool_claims: dict[ClaimKey, list[Claim]] | None = None,
) -> tuple[Reconciler, Workload, list[tuple[str, str]]]:
    monkeypatch.setattr(handlers, "ERROR_BACKOFF", timedelta(milliseconds=1))
    stopped = Stopped()
    log: list[str] = []
    posted: list[tuple[str, str]] = []

    def event(body: Any, *, type: str, reason: str, message: str) -> None:
        log.append("event")
        posted.append((type, reason))

    monkeypatch.setattr(kopf, "event", event)
    reconciler = Reconciler(outcomes, stopped, log=log)
    workload = Workload(log)
    runtime = handlers.Runtime(workload=workload, prober=None, reconciler=reconciler)  # type: ignore[arg-type]
    memo = kopf.Memo(runtime=runtime)
    await asyncio.wait_for(
        handlers._scale_pool(
            body=_body(),
            memo=memo,
            stopped=stopped,  # type: ignore[arg-type]
            pool_claims=pool_claims or {},
            hpa_claims={},
        ),
        timeout=10,
    )
    return reconciler, workload, posted


async def test_a_tick_posts_events_before_writing_its_status_and_writes_only_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scaled = Event("Normal", "ScaleUp", "to 2")
    reconciler, workload, posted = await _run_daemon(
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
    _, workload, _ = await _run_daemon(
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
    reconciler, _, _ = await _run_daemon(monkeypatch, [_outcome(4)])
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
    reconciler, _, _ = await _run_daemon(monkeypatch, [_outcome(1)], pool_claims=claims)
    assert reconciler.claims_seen == [[claim]]


async def test_a_new_generation_or_paused_replicas_wakes_the_daemon_and_status_does_not() -> None:
    wake = asyncio.Event()
    memo = kopf.Memo(wake=wake)
    await handlers._wake_on_change(body=_body(1), memo=memo)  # the first sight
    wake.clear()
    await handlers._wake_on_change(body=_body(1), memo=memo)  # e.g. our own status write
    assert not wake.is_set()
    await handlers._wake_on_change(body=_body(2), memo=memo)
    assert wake.is_set()
    wake.clear()
    await handlers._wake_on_change(body=_body(2, paused="0"), memo=memo)
    assert wake.is_set()


async def test_the_sleep_ends_at_a_wake_up_or_a_stop_long_before_the_interval() -> None:
    wake, stopped = asyncio.Event(), Stopped()
    loop = asyncio.get_running_loop()
    started = loop.time()
    loop.call_later(0.01, wake.set)
    await handlers._sleep(timedelta(seconds=30), wake, stopped)  # type: ignore[arg-type]
    loop.call_later(0.01, stopped.flag.set)
    await handlers._sleep(timedelta(seconds=30), asyncio.Event(), stopped)  # type: ignore[arg-type]
    assert loop.time() - started < 5


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


async def test_cleanup_closes_the_prober() -> None:
    closed: list[bool] = []

    class Prober:
        async def aclose(self) -> None:
            closed.append(True)

    runtime = handlers.Runtime(workload=None, prober=Prober(), reconciler=None)  # type: ignore[arg-type]
    await handlers._close(memo=kopf.Memo(runtime=runtime))
    await handlers._close(memo=kopf.Memo())  # before startup built anything: nothing to close
    assert closed == [True]


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


async def test_a_daemon_asleep_for_a_long_interval_stops_at_once_or_wakes_on_a_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kopf, "event", lambda *_a, **_k: None)
    stopped = Stopped()
    ticks: list[float] = []
    loop = asyncio.get_running_loop()

    class Slow:
        async def tick(self, *_a: Any, **_k: Any) -> Outcome:
            ticks.append(loop.time())
            return Outcome(status={}, events=(), next_tick=timedelta(seconds=30))

        def forget(self, *_a: Any) -> None:
            pass

    wake = asyncio.Event()
    runtime = handlers.Runtime(workload=Workload([]), prober=None, reconciler=Slow())  # type: ignore[arg-type]
    memo = kopf.Memo(runtime=runtime, wake=wake)
    daemon = asyncio.ensure_future(
        handlers._scale_pool(
            body=_body(), memo=memo, stopped=stopped, pool_claims={}, hpa_claims={}
        )
    )
    await asyncio.sleep(0.05)
    await handlers._wake_on_change(body=_body(2), memo=memo)  # a new generation: ticks now
    await asyncio.sleep(0.05)
    assert len(ticks) == 2
    started = loop.time()
    stopped.flag.set()
    await asyncio.wait_for(daemon, timeout=5)
    assert loop.time() - started < 1  # not at the end of its 30 s wait


async def test_the_tick_wait_ends_at_its_time_or_at_a_wake_up() -> None:
    wake = asyncio.Event()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await handlers._nap(timedelta(milliseconds=20), wake)
    assert 0.015 < loop.time() - started < 2
    assert wake.is_set()  # the daemon clears it before its next tick
    wake.clear()
    loop.call_later(0.01, wake.set)
    started = loop.time()
    await handlers._nap(timedelta(seconds=30), wake)
    assert loop.time() - started < 5
