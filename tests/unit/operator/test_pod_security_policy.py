"""The operator's `--pod-security` setting in a tick and on the command line.

Off by default (`privileged`): a pool author may write any pod template, as a Deployment's author
could. With `baseline` or `restricted`, a template outside the standard stops the pool with
Ready=False (`PodSecurityViolation`) and one Warning naming the fields; nothing is built or scaled.
"""

from __future__ import annotations

from typing import Any

import pytest

from flowable_worker_operator import main as cli
from flowable_worker_operator.podsecurity import Level
from flowable_worker_operator.reconcile import Outcome, PoolState, Reconciler
from tests.unit.operator.test_reconcile import NOW, FakeProber, FakeWorkload, body, condition

PRIVILEGED_SIDECAR = {
    "template": {
        "spec": {
            "hostNetwork": True,
            "containers": [
                {"name": "debug", "image": "busybox", "securityContext": {"privileged": True}}
            ],
        }
    }
}


def pool_with(worker_extra: dict[str, Any]) -> dict[str, Any]:
    worker = {"handler": {"python": "h:check"}, "concurrency": 4, **worker_extra}
    return body(spec={"worker": worker})


async def tick(
    level: Level, pool: dict[str, Any], workload: FakeWorkload, state: PoolState | None = None
) -> Outcome:
    reconciler = Reconciler(workload=workload, prober=FakeProber(), pod_security=level)
    return await reconciler.tick(pool, state or PoolState(), NOW)


async def test_by_default_any_template_is_accepted() -> None:
    workload = FakeWorkload()
    outcome = await tick("privileged", pool_with(PRIVILEGED_SIDECAR), workload)
    assert condition(outcome, "Ready")["status"] == "True"
    assert workload.calls[0][0] == "ensure"


@pytest.mark.parametrize("level", ["baseline", "restricted"])
async def test_a_template_outside_the_standard_is_refused_naming_the_fields(level: Level) -> None:
    workload, state = FakeWorkload(), PoolState()
    outcome = await tick(level, pool_with(PRIVILEGED_SIDECAR), workload, state)

    ready = condition(outcome, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "PodSecurityViolation")
    assert f"outside the {level} Pod Security Standard" in ready["message"]
    assert "worker.template.spec.hostNetwork" in ready["message"]
    assert "worker.template.spec.containers[debug].securityContext.privileged" in ready["message"]
    ((kind, reason, message),) = [(e.type, e.reason, e.message) for e in outcome.events]
    assert (kind, reason, message) == ("Warning", "PodSecurityViolation", ready["message"])
    assert workload.calls == []  # no Deployment built, nothing scaled

    again = await tick(level, pool_with(PRIVILEGED_SIDECAR), workload, state)
    assert again.events == ()  # one Warning per generation and problem


async def test_the_operators_own_template_passes_restricted() -> None:
    workload = FakeWorkload()
    outcome = await tick("restricted", pool_with({}), workload)
    assert condition(outcome, "Ready")["status"] == "True"


async def test_a_template_adding_only_allowed_fields_passes_restricted() -> None:
    extra = {
        "template": {
            "spec": {
                "securityContext": {"fsGroup": 2000, "runAsUser": 10001},
                "containers": [{"name": "worker", "resources": {"limits": {"memory": "1Gi"}}}],
            }
        }
    }
    outcome = await tick("restricted", pool_with(extra), FakeWorkload())
    assert condition(outcome, "Ready")["status"] == "True"


async def test_a_scale_target_ref_pool_has_no_template_to_check() -> None:
    pool = body(spec={"scaleTargetRef": {"name": "legacy"}}, scaling={"jobsPerReplica": 2})
    pool["spec"].pop("worker")
    outcome = await tick("restricted", pool, FakeWorkload())
    assert condition(outcome, "Ready")["reason"] != "PodSecurityViolation"


def test_the_setting_is_off_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWABLE_OPERATOR_POD_SECURITY", raising=False)
    assert cli.parse_args([]).pod_security == "privileged"
    assert cli.parse_args(["--pod-security", "restricted"]).pod_security == "restricted"
    monkeypatch.setenv("FLOWABLE_OPERATOR_POD_SECURITY", "baseline")
    assert cli.parse_args([]).pod_security == "baseline"


def test_a_bad_level_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLOWABLE_OPERATOR_POD_SECURITY", "strict")
    with pytest.raises(SystemExit) as exited:
        cli.parse_args([])
    assert exited.value.code == 2
    assert "FLOWABLE_OPERATOR_POD_SECURITY: 'strict' is not one of" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.parse_args(["--pod-security", "strict"])
