"""A tick when the operator cannot see, or must not act: a failing or hanging probe, refused
credentials, a spec only the API server or the operator's own limit refuses.

Uses the fakes of test_reconcile; what is checked is what Ready, `status.backlog` and the Events
say, and that nothing is scaled on a guess.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from flowable_worker import FlowableHTTPError
from flowable_worker_operator import main as cli
from flowable_worker_operator.backlog import ProbeError, ProbeResult, Selector
from flowable_worker_operator.engines import Engine
from flowable_worker_operator.reconcile import PoolState, Reconciler
from flowable_worker_operator.scaling import Backlog
from flowable_worker_operator.spec import Pool
from flowable_worker_operator.targets import WorkloadRefusedError

from .test_reconcile import NOW, FakeProber, FakeWorkload, body, condition, tick


async def test_a_failing_probe_is_ready_false_while_holding_and_marks_the_backlog_stale() -> None:
    workload, prober, state = FakeWorkload(replicas=0), FakeProber(Backlog(8, 0)), PoolState()
    first = await tick(workload, prober, body(), state)
    assert first.status["backlog"] == {
        "unlocked": 8, "locked": 0, "observedTime": "2026-11-28T10:00:00Z", "stale": False,
    }
    prober.backlog_value = ProbeError("counting unlocked jobs of ...: HTTP 503")
    later = NOW + timedelta(seconds=15)
    second = await tick(workload, prober, body(status=first.status), state, later)
    ready = condition(second, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "BacklogUnknown")
    assert "holding 2 replicas" in ready["message"]
    assert workload.replicas == 2  # held, never scaled down on an unknown backlog
    assert second.status["backlog"] == {
        "unlocked": 8, "locked": 0, "observedTime": "2026-11-28T10:00:00Z", "stale": True,
    }
    assert condition(second, "EngineReachable")["status"] == "False"


async def test_a_fallback_in_effect_is_still_not_ready() -> None:
    workload = FakeWorkload(replicas=1)
    prober = FakeProber(ProbeError("503"))
    outcome = await tick(
        workload, prober, body({"fallback": {"failureThreshold": 1, "replicas": 3}}), PoolState()
    )
    assert workload.replicas == 3
    assert condition(outcome, "Fallback")["status"] == "True"
    assert (condition(outcome, "Ready")["status"], condition(outcome, "Ready")["reason"]) == (
        "False",
        "BacklogUnknown",
    )
    assert "backlog" not in outcome.status  # never measured: nothing to keep


def _refused(status: int) -> ProbeError:
    error = ProbeError(f"counting unlocked jobs of ...: HTTP {status}")
    error.__cause__ = FlowableHTTPError(status=status, message="no")
    return error


async def test_refused_credentials_warn_once_naming_the_secret() -> None:
    workload, state = FakeWorkload(replicas=1), PoolState()
    prober = FakeProber(_refused(401))
    pool = body(spec={"engine": {"url": "http://flowable:8080", "authSecretRef": {"name": "fl"}}})
    first = await tick(workload, prober, pool, state)
    warnings = [e for e in first.events if e.reason == "EngineAuthFailed"]
    assert len(warnings) == 1
    assert warnings[0].type == "Warning"
    assert "Secret billing/fl (engine.authSecretRef) with HTTP 401" in warnings[0].message
    again = await tick(workload, prober, pool, state, NOW + timedelta(seconds=15))
    assert [e for e in again.events if e.reason == "EngineAuthFailed"] == []
    prober.backlog_value = Backlog(0, 0)  # the Secret was fixed
    await tick(workload, prober, pool, state, NOW + timedelta(seconds=30))
    prober.backlog_value = _refused(403)  # and broken again: warned again
    fourth = await tick(workload, prober, pool, state, NOW + timedelta(seconds=45))
    assert [e.reason for e in fourth.events if e.type == "Warning"] == ["EngineAuthFailed"]


async def test_a_5xx_is_no_auth_warning() -> None:
    outcome = await tick(FakeWorkload(replicas=1), FakeProber(_refused(503)), body(), PoolState())
    assert [e.reason for e in outcome.events if e.reason == "EngineAuthFailed"] == []


@dataclass
class HangingProber(FakeProber):
    async def backlog(
        self, engine: Engine, topic: str, selectors: Sequence[Selector] | None
    ) -> ProbeResult:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")


async def test_a_probe_hanging_past_its_timeout_is_a_failed_probe() -> None:
    workload = FakeWorkload(replicas=2)
    pool = body(spec={"engine": {"url": "http://flowable:8080", "timeoutSeconds": 0.05}})
    outcome = await asyncio.wait_for(tick(workload, HangingProber(), pool, PoolState()), 5)
    reachable = condition(outcome, "EngineReachable")
    assert (reachable["status"], reachable["reason"]) == ("False", "ProbeFailed")
    assert "no answer within 0.1s" in reachable["message"]
    assert condition(outcome, "Ready")["reason"] == "BacklogUnknown"
    assert workload.replicas == 2


@dataclass
class RefusingWorkload(FakeWorkload):
    async def ensure(self, pool: Pool, *, initial_replicas: int) -> None:
        raise WorkloadRefusedError("the API server refused the worker Deployment x-worker: ...")


async def test_a_deployment_the_api_server_refuses_is_an_invalid_spec() -> None:
    outcome = await tick(RefusingWorkload(), FakeProber(), body(), PoolState())
    ready = condition(outcome, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert [(e.type, e.reason) for e in outcome.events] == [("Warning", "InvalidSpec")]


async def test_the_operators_replica_limit_refuses_a_pool_before_anything_is_scaled() -> None:
    workload = FakeWorkload()
    pool: dict[str, Any] = body({"minReplicas": 10**9, "maxReplicas": 10**9})
    reconciler = Reconciler(workload=workload, prober=FakeProber(), max_replicas_limit=1000)
    outcome = await reconciler.tick(pool, PoolState(), NOW)
    ready = condition(outcome, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert "--max-replicas-limit of 1000" in ready["message"]
    assert workload.calls == []


def test_the_replica_limit_is_1000_unless_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWABLE_OPERATOR_MAX_REPLICAS_LIMIT", raising=False)
    assert cli.parse_args([]).max_replicas_limit == 1000
    assert cli.parse_args(["--max-replicas-limit", "50"]).max_replicas_limit == 50
    monkeypatch.setenv("FLOWABLE_OPERATOR_MAX_REPLICAS_LIMIT", "20000")
    assert cli.parse_args([]).max_replicas_limit == 20000


@pytest.mark.parametrize("value", ["0", "2147483648"])
def test_a_replica_limit_out_of_range_exits_2(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.parse_args(["--max-replicas-limit", value])
    assert caught.value.code == 2
    assert f"--max-replicas-limit: must be 1..2147483647 (got {value})" in capsys.readouterr().err


@dataclass
class SlowProber(FakeProber):
    """Answers after `delay` seconds, counting how many probes were started."""

    delay: float = 0.3
    started: int = 0

    async def backlog(
        self, engine: Engine, topic: str, selectors: Sequence[Selector] | None
    ) -> ProbeResult:
        self.started += 1
        await asyncio.sleep(self.delay)
        return await super().backlog(engine, topic, selectors)


async def test_a_probe_past_its_deadline_goes_on_and_the_next_tick_takes_its_answer() -> None:
    """A slow discovery must finish some time: the late probe is awaited, not started over."""
    workload, state = FakeWorkload(replicas=0), PoolState()
    prober = SlowProber(Backlog(8, 0))
    pool = body(spec={"engine": {"url": "http://flowable:8080", "timeoutSeconds": 0.1}})
    first = await tick(workload, prober, pool, state)
    assert condition(first, "EngineReachable")["status"] == "False"
    await asyncio.sleep(0.3)
    second = await tick(workload, prober, pool, state, NOW + timedelta(seconds=1))
    assert condition(second, "EngineReachable")["status"] == "True"
    assert prober.started == 1
    assert workload.replicas == 2
    assert state.probe is None
