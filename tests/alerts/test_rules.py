"""The alert and recording rules, evaluated by Prometheus's own rule engine; the metrics, linted.

tests/unit/test_observability.py reads the rules file statically (PromQL parses, names registered
metrics, runbooks exist). That cannot tell whether an alert fires when it should: this suite runs
the real `promtool` (built from Prometheus's Go module by localstack/prometheus/build.sh and cached
outside the repo) on

- the rules file: `promtool check rules`, with every lint on and fatal;
- tests/alerts/rules_test.yaml: `promtool test rules`, where every alert fires after its `for:`
  with its labels and rendered annotations, and near-miss series stay silent; then the same test
  file against deliberately broken copies of the rules, which must fail it (so the test file
  really pins the thresholds and durations);
- the text exposition both components serve (`prometheus_client.generate_latest` of the
  operator's `REGISTRY` and of a worker's registry, each with every labelled series present):
  `promtool check metrics`, Prometheus's naming and type linter.

This suite never skips: without Go (needed once, to build promtool) it fails and says what to
install, because a rule test that quietly skips proves nothing. `FWO_PROMTOOL=/path/to/promtool`
uses a promtool you already have.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest

import flowable_worker_operator.metrics as operator_metrics
from flowable_worker.metrics import TopicMetrics, WorkerMetrics
from flowable_worker_operator import handlers
from flowable_worker_operator.reconcile import Outcome
from flowable_worker_operator.scaling import Backlog, Decision, History, Reason

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "localstack" / "prometheus" / "build.sh"
RULES_PATH = ROOT / "charts" / "flowable-worker-operator" / "files" / "prometheus-rules.yaml"
RULES_TEST_PATH = Path(__file__).resolve().parent / "rules_test.yaml"

INSTALL_HINT = (
    "install Go 1.26 or newer (https://go.dev/doc/install) and put its bin/ on PATH, then run "
    "'make promtool-bin'; or set FWO_PROMTOOL to an existing promtool"
)

BUILD_TIMEOUT = 1200.0
"""A cold build of promtool takes about 6 minutes on 2 cores (docs/observability.md)."""

# The first test builds promtool through the session fixture when it is not cached yet (`make
# test-alerts` builds it beforehand): allow for that beyond the project's 300 s per test.
pytestmark = pytest.mark.timeout(BUILD_TIMEOUT + 60)


# --- promtool -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def promtool() -> Path:
    """The promtool binary: whatever build.sh builds, reuses, or takes from `$FWO_PROMTOOL`."""
    try:
        built = subprocess.run(
            ["bash", str(BUILD_SCRIPT)],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"building promtool took over {BUILD_TIMEOUT:.0f}s", pytrace=False)
    if built.returncode != 0:
        pytest.fail(
            f"{BUILD_SCRIPT} failed (exit {built.returncode}): {built.stderr.strip()}\n"
            f"{INSTALL_HINT}",
            pytrace=False,
        )
    lines = built.stdout.strip().splitlines()
    binary = Path(lines[-1]) / "promtool" if lines else Path()
    if not binary.is_file():
        pytest.fail(f"{BUILD_SCRIPT} printed no bin directory:\n{built.stdout}", pytrace=False)
    return binary


def run_promtool(
    promtool: Path, *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(promtool), *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result


def output(result: subprocess.CompletedProcess[str]) -> str:
    return (result.stdout + result.stderr).strip()


# --- the rules file -------------------------------------------------------------------------------


def _alert_names() -> list[str]:
    data: dict[str, Any] = yaml.safe_load(RULES_PATH.read_text())
    return [rule["alert"] for group in data["groups"] for rule in group["rules"] if "alert" in rule]


def test_promtool_accepts_the_rules_file_with_every_lint_fatal(promtool: Path) -> None:
    result = run_promtool(promtool, "check", "rules", "--lint=all", "--lint-fatal", str(RULES_PATH))
    assert result.returncode == 0, output(result)
    assert "SUCCESS" in result.stdout
    assert "WARNING" not in output(result)


def test_every_alert_has_a_unit_test() -> None:
    tests: dict[str, Any] = yaml.safe_load(RULES_TEST_PATH.read_text())
    fired: set[str] = set()
    silent: set[str] = set()
    for group in tests["tests"]:
        for case in group.get("alert_rule_test", []):
            (fired if case["exp_alerts"] else silent).add(case["alertname"])
    assert fired == set(_alert_names()), "every alert is shown to fire"
    assert silent == set(_alert_names()), "every alert is shown to stay silent before its for:"


def test_the_alerts_fire_and_stay_silent_as_the_unit_tests_say(promtool: Path) -> None:
    result = run_promtool(promtool, "test", "rules", str(RULES_TEST_PATH))
    assert result.returncode == 0, output(result)
    assert "SUCCESS" in result.stdout


# --- the unit tests catch a broken rule -----------------------------------------------------------

Mutation = Callable[[dict[str, Any]], None]


def _alert(rules: dict[str, Any], name: str) -> dict[str, Any]:
    (alert,) = [r for g in rules["groups"] for r in g["rules"] if r.get("alert") == name]
    found: dict[str, Any] = alert
    return found


def _shorter_for(name: str) -> Mutation:
    def mutate(rules: dict[str, Any]) -> None:
        alert = _alert(rules, name)
        alert["for"] = f"{int(alert['for'].removesuffix('m')) - 1}m"

    return mutate


def _replace_in_expr(name: str, old: str, new: str) -> Mutation:
    def mutate(rules: dict[str, Any]) -> None:
        alert = _alert(rules, name)
        assert old in alert["expr"], f"{name}: {old!r} not in its expression"
        alert["expr"] = alert["expr"].replace(old, new)

    return mutate


MUTATIONS: dict[str, tuple[str, Mutation]] = {
    **{f"{name} fires 1m early": (name, _shorter_for(name)) for name in _alert_names()},
    "engine unreachable from 2 failures": (
        "FlowablePoolEngineUnreachable",
        _replace_in_expr("FlowablePoolEngineUnreachable", ">= 3", ">= 2"),
    ),
    "at max replicas without waiting jobs": (
        "FlowablePoolAtMaxReplicasWithBacklog",
        _replace_in_expr("FlowablePoolAtMaxReplicasWithBacklog", ") > 0", ") >= 0"),
    ),
    "backlog growing at zero replicas": (
        "FlowablePoolBacklogGrowing",
        _replace_in_expr("FlowablePoolBacklogGrowing", "flowable_pool_replicas > 0", "vector(1)"),
    ),
    "jobs failing from 5%": (
        "FlowableWorkerJobsFailing",
        _replace_in_expr("FlowableWorkerJobsFailing", "> 0.1", "> 0.04"),
    ),
    "operator down ignores the chart's job name": (
        "FlowableOperatorDown",
        _replace_in_expr(
            "FlowableOperatorDown", '".*flowable-worker-operator.*"', '"flowable-worker-operator"'
        ),
    ),
}


@pytest.fixture
def mutated_rules_test(tmp_path: Path) -> Callable[[Mutation], Path]:
    """Writes a broken copy of the rules and a copy of rules_test.yaml that loads it instead."""

    def make(mutation: Mutation) -> Path:
        rules: dict[str, Any] = yaml.safe_load(RULES_PATH.read_text())
        mutation(rules)
        (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
        tests: dict[str, Any] = yaml.safe_load(RULES_TEST_PATH.read_text())
        tests["rule_files"] = ["rules.yaml"]
        (tmp_path / "rules_test.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
        return tmp_path / "rules_test.yaml"

    return make


def test_the_unit_tests_pass_on_an_unchanged_copy_of_the_rules(
    promtool: Path, mutated_rules_test: Callable[[Mutation], Path]
) -> None:
    """The copies below differ from the original in their mutation alone."""
    result = run_promtool(promtool, "test", "rules", str(mutated_rules_test(lambda rules: None)))
    assert result.returncode == 0, output(result)


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_the_unit_tests_fail_on_a_broken_rule(
    promtool: Path, mutated_rules_test: Callable[[Mutation], Path], mutation: str
) -> None:
    alertname, mutate = MUTATIONS[mutation]
    result = run_promtool(promtool, "test", "rules", str(mutated_rules_test(mutate)))
    assert result.returncode != 0, f"the unit tests missed: {mutation}"
    assert f"alertname: {alertname}," in result.stderr


# --- the exported metrics -------------------------------------------------------------------------


@contextmanager
def _operator_exposition() -> Iterator[bytes]:
    """The operator's /metrics after one tick of a fake pool, with every family's series present."""
    namespace, pool = "shop", "promtool-lint"
    outcome = Outcome(
        status={
            "replicas": 2,
            "probe": {"consecutiveFailures": 1},
            "conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "Active", "status": "Unknown"},
            ],
        },
        events=(),
        next_tick=timedelta(seconds=15),
        decision=Decision(
            desired_replicas=3, reason=Reason.SCALE_UP, message="scale up", history=History()
        ),
        backlog=Backlog(unlocked=12, locked=2),
        change=1,
        workload_replicas=2,
        replica_bounds=(0, 10),
    )
    # What the operator's daemon records after a tick: the same call, not a copy of it.
    handlers._record(namespace, pool, outcome)
    operator_metrics.TICK_ERRORS.labels(namespace=namespace, pool=pool).inc()
    try:
        with operator_metrics.observe_probe_request("count"):
            pass
        yield generate_latest(operator_metrics.REGISTRY)
    finally:
        operator_metrics.forget_pool(namespace, pool)


def _worker_exposition() -> bytes:
    """A worker's /metrics with one observation of each metric."""
    metrics = WorkerMetrics()
    topic = TopicMetrics(metrics, "charge")
    for counter in (
        topic.acquired,
        topic.completed,
        topic.bpmn_errors,
        topic.cmmn_terminated,
        topic.unacquired,
        topic.lost,
        topic.acquire_requests,
        topic.empty_polls,
    ):
        counter.inc()
    topic.failed("handler")
    topic.acquire_error("timeout")
    topic.report_error("complete", "transport")
    topic.handled("completed", 0.2)
    topic.acquire_latency.observe(0.01)
    metrics.in_flight.set(1)
    metrics.capacity.set(4)
    return generate_latest(metrics.registry)


def test_the_operator_metrics_pass_promtools_linter(promtool: Path) -> None:
    with _operator_exposition() as exposition:
        assert b'flowable_pool_backlog_jobs{namespace="shop"' in exposition
        result = run_promtool(promtool, "check", "metrics", stdin=exposition)
        assert result.returncode == 0, output(result)
        assert output(result) == ""


def test_the_worker_metrics_pass_promtools_linter(promtool: Path) -> None:
    exposition = _worker_exposition()
    assert b'flowable_worker_report_errors_total{call="complete"' in exposition
    result = run_promtool(promtool, "check", "metrics", stdin=exposition)
    assert result.returncode == 0, output(result)
    assert output(result) == ""


def test_promtools_linter_would_flag_a_badly_named_metric(promtool: Path) -> None:
    """The linter is really on: a counter without `_total` in the exposition is reported."""
    bad = b"# HELP jobs Jobs.\n# TYPE jobs counter\njobs 1\n"
    result = run_promtool(promtool, "check", "metrics", stdin=bad)
    assert result.returncode != 0
    assert 'counter metrics should have "_total" suffix' in output(result)
