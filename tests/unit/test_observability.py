"""The dashboard, the alert rules and docs/observability.md speak of metrics the code registers.

What users see of the metrics lives in three files nobody imports: the Grafana dashboard and the
Prometheus rules (in the chart, symlinked under deploy/) and the metric table of the docs. A
renamed metric or a typo there fails silently in production (an empty panel, an alert that can
never fire), so these tests read them against the registries themselves: the operator's
module-level `REGISTRY` and the registry a worker's `WorkerMetrics` builds. PromQL is parsed with
`promql-parser` (Python bindings of the Rust parser used by GreptimeDB), so a query Prometheus
would refuse fails here, without a Prometheus. No network, no cluster.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

import flowable_worker_operator.metrics as operator_metrics
from flowable_worker.metrics import WorkerMetrics

ROOT = Path(__file__).resolve().parents[2]
CHART_FILES = ROOT / "charts" / "flowable-worker-operator" / "files"
DASHBOARD_PATH = CHART_FILES / "grafana-dashboard.json"
RULES_PATH = CHART_FILES / "prometheus-rules.yaml"
DOC_PATH = ROOT / "docs" / "observability.md"
DEPLOY_LINKS = {
    ROOT / "deploy" / "grafana" / "grafana-dashboard.json": DASHBOARD_PATH,
    ROOT / "deploy" / "prometheus" / "prometheus-rules.yaml": RULES_PATH,
}

PROJECT_PREFIXES = ("flowable_pool_", "flowable_worker_")
STANDARD_PREFIXES = ("process_", "python_")
"""prometheus-client's process, platform and GC collectors, which the operator also serves."""

PROMETHEUS_SERIES = frozenset({"up"})
"""Series Prometheus itself writes for every target."""

RUNBOOK_BASE = (
    "https://github.com/flowable-worker-operator/flowable-worker-operator/blob/main/"
    "docs/observability.md#"
)
REQUIRED_ALERTS = frozenset(
    {
        "FlowablePoolEngineUnreachable",
        "FlowablePoolAtMaxReplicasWithBacklog",
        "FlowablePoolReplicasNotReached",
        "FlowablePoolBacklogGrowing",
        "FlowableOperatorTickErrors",
        "FlowableOperatorDown",
        "FlowableWorkerJobsFailing",
        "FlowableWorkerAcquireErrors",
    }
)
OPERATOR_WIDE_ALERTS = frozenset({"FlowableOperatorTickErrors", "FlowableOperatorDown"})
"""Alerts about the operator process: their series carry no namespace/pool of a pool."""

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRAFANA_INTERVALS = re.compile(r"\$(__rate_interval|__interval|__range)\b|\$\{(__rate_interval)\}")
LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")


# --- what the code registers -------------------------------------------------------------------


@dataclass(frozen=True)
class Registered:
    """One metric family as it appears on /metrics."""

    name: str
    """The name users write: counters with `_total`, histograms by their base name."""
    type: str
    labels: tuple[str, ...]

    @property
    def series(self) -> frozenset[str]:
        """Names a PromQL selector may use for this family."""
        if self.type == "histogram":
            return frozenset(f"{self.name}_{suffix}" for suffix in ("bucket", "sum", "count"))
        return frozenset({self.name})


def _families(registry: CollectorRegistry) -> dict[str, str]:
    """Family name (as prometheus-client keeps it, counters without `_total`) -> type."""
    return {family.name: family.type for family in registry.collect()}


def _label_names(objects: Iterator[object]) -> dict[str, tuple[str, ...]]:
    # prometheus-client exposes no public way to read a metric's label names without a child.
    return {
        metric._name: tuple(metric._labelnames)
        for metric in objects
        if isinstance(metric, MetricWrapperBase)
    }


def _family_label_names(registry: CollectorRegistry) -> dict[str, tuple[str, ...]]:
    # A custom collector's families (`GaugeMetricFamily` and kin, built at collect time) carry
    # their label names themselves; again no public accessor.
    return {
        family.name: tuple(family._labelnames)
        for family in registry.collect()
        if getattr(family, "_labelnames", None)
    }


def _registered() -> dict[str, Registered]:
    worker = WorkerMetrics()
    labels = _label_names(iter(vars(operator_metrics).values()))
    labels |= _label_names(iter(vars(worker).values()))
    labels |= _family_label_names(operator_metrics.REGISTRY)
    result: dict[str, Registered] = {}
    for registry in (operator_metrics.REGISTRY, worker.registry):
        for family, kind in _families(registry).items():
            name = f"{family}_total" if kind == "counter" else family
            result[name] = Registered(name, kind, labels.get(family, ()))
    return result


REGISTERED = _registered()
PROJECT_METRICS = {n: m for n, m in REGISTERED.items() if n.startswith(PROJECT_PREFIXES)}
KNOWN_SERIES = frozenset().union(*(m.series for m in REGISTERED.values())) | PROMETHEUS_SERIES


# --- what the files say ------------------------------------------------------------------------


def _load_dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD_PATH.read_text())
    return data


def _load_rules() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(RULES_PATH.read_text())
    return data


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those folded into a collapsed row."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _dashboard_targets() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{panel['title']}/{target.get('refId', '?')}", target)
        for panel in _panels(_load_dashboard())
        for target in panel.get("targets", [])
    ]


def _dashboard_exprs() -> list[tuple[str, str]]:
    return [(where, target["expr"]) for where, target in _dashboard_targets() if "expr" in target]


def _rules() -> list[dict[str, Any]]:
    return [rule for group in _load_rules()["groups"] for rule in group["rules"]]


def _alerts() -> list[dict[str, Any]]:
    return [rule for rule in _rules() if "alert" in rule]


def _rule_exprs() -> list[tuple[str, str]]:
    return [(rule.get("alert") or rule["record"], rule["expr"]) for rule in _rules()]


def _parse(expr: str) -> promql_parser.Expr:
    """Parse a query as Prometheus would see it once Grafana has filled in its interval macros.

    Other dashboard variables ($namespace, $pool) appear only inside quoted label matchers, where
    they are plain strings to the parser; one used anywhere else fails the parse, as it should.
    """
    return promql_parser.parse(GRAFANA_INTERVALS.sub("5m", expr))


def _selected_names(expr: str) -> list[str]:
    names: list[str] = []

    def visit(node: promql_parser.Expr) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            names.append(node.name or "")
        return True

    promql_parser.walk(_parse(expr), visit)
    return names


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _doc_anchors() -> set[str]:
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", DOC_PATH.read_text(), flags=re.MULTILINE)
    return {_slug(heading) for heading in headings}


@dataclass(frozen=True)
class DocRow:
    name: str
    type: str
    labels: tuple[str, ...]


def _doc_metric_table() -> list[DocRow]:
    """Rows of the table under docs/observability.md's "## Metrics" heading."""
    text = DOC_PATH.read_text()
    match = re.search(r"^## Metrics\b.*?$(?P<body>.*?)(?=^## )", text, re.MULTILINE | re.DOTALL)
    assert match, "docs/observability.md has no '## Metrics' section"
    rows = []
    for line in match["body"].splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("| `") or len(cells) < 4:
            continue
        labels = tuple(label.strip(" `") for label in cells[2].split(",") if label.strip(" `—-"))
        rows.append(DocRow(cells[0].strip("`"), cells[1], labels))
    return rows


# --- (a) + (b): PromQL parses and names registered metrics -------------------------------------


@pytest.mark.parametrize(("where", "expr"), _dashboard_exprs() + _rule_exprs())
def test_every_promql_expression_parses(where: str, expr: str) -> None:
    _parse(expr)


def test_a_broken_expression_does_not_parse() -> None:
    with pytest.raises(ValueError, match="parenthesis"):
        _parse("sum(rate(flowable_pool_decisions_total[$__rate_interval])")


@pytest.mark.parametrize(("where", "expr"), _dashboard_exprs())
def test_dashboard_queries_name_only_registered_metrics(where: str, expr: str) -> None:
    names = _selected_names(expr)
    assert names, "a query that selects no metric"
    assert set(names) <= KNOWN_SERIES, f"unknown metrics: {set(names) - KNOWN_SERIES}"


@pytest.mark.parametrize(("where", "expr"), _rule_exprs())
def test_rules_name_only_registered_metrics_or_recorded_series(where: str, expr: str) -> None:
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    unknown = set(_selected_names(expr)) - KNOWN_SERIES - recorded
    assert not unknown, f"unknown metrics: {unknown}"


def test_a_misspelt_metric_would_be_caught() -> None:
    names = _selected_names("rate(flowable_pool_decisions[5m])")
    assert not set(names) <= KNOWN_SERIES  # a counter without _total is not a series


def test_dashboard_variables_query_registered_metrics() -> None:
    variables = {v["name"]: v for v in _load_dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("namespace", "pool"):
        query = variables[name]["query"]
        text = query["query"] if isinstance(query, dict) else query
        match = LABEL_VALUES.match(text)
        assert match, f"${name} is not a label_values(...) query: {text}"
        assert match["label"] == name
        assert _selected_names(match["selector"]) == ["flowable_pool_desired_replicas"]
        assert variables[name]["datasource"] == DATASOURCE


def test_the_dashboard_shows_every_project_metric() -> None:
    used = {name for _, expr in _dashboard_exprs() for name in _selected_names(expr)}
    missing = {n for n, m in PROJECT_METRICS.items() if not m.series & used}
    assert not missing


# --- (c): the rules file -----------------------------------------------------------------------


def test_rules_file_has_a_recording_group_and_the_alerting_group() -> None:
    groups = {group["name"]: group for group in _load_rules()["groups"]}
    assert "flowable-worker-operator" in groups
    assert all("alert" in rule for rule in groups["flowable-worker-operator"]["rules"])
    recording = [g for g in groups.values() if all("record" in r for r in g["rules"])]
    assert recording


def test_every_required_alert_is_defined_once() -> None:
    names = [alert["alert"] for alert in _alerts()]
    assert len(names) == len(set(names))
    assert set(names) >= REQUIRED_ALERTS


@pytest.mark.parametrize("alert", _alerts(), ids=lambda alert: alert["alert"])
def test_every_alert_has_for_severity_and_annotations(alert: dict[str, Any]) -> None:
    assert alert["expr"].strip()
    assert re.fullmatch(r"\d+[smh]", alert["for"])
    assert alert["labels"]["severity"] in {"warning", "critical"}
    annotations = alert["annotations"]
    assert annotations["summary"].strip()
    assert annotations["description"].strip()
    assert annotations["runbook_url"] == RUNBOOK_BASE + alert["alert"].lower()
    if alert["alert"] not in OPERATOR_WIDE_ALERTS:
        for label in ("namespace", "pool"):
            assert f"{{{{ $labels.{label} }}}}" in annotations["description"]


@pytest.mark.parametrize("alert", _alerts(), ids=lambda alert: alert["alert"])
def test_every_runbook_anchor_exists_in_the_docs(alert: dict[str, Any]) -> None:
    anchor = alert["annotations"]["runbook_url"].removeprefix(RUNBOOK_BASE)
    assert anchor in _doc_anchors()


def test_operator_down_uses_the_documented_job_convention() -> None:
    (down,) = [a for a in _alerts() if a["alert"] == "FlowableOperatorDown"]
    assert 'up{job=~".*flowable-worker-operator.*"}' in down["expr"]
    assert 'job=~".*flowable-worker-operator.*"' in DOC_PATH.read_text()


# --- (d): the dashboard ------------------------------------------------------------------------


def test_dashboard_identity() -> None:
    dashboard = _load_dashboard()
    assert dashboard["uid"] == "flowable-worker-operator"
    assert dashboard["schemaVersion"] >= 39


def test_panel_ids_are_unique() -> None:
    ids = [panel["id"] for panel in _panels(_load_dashboard())]
    assert len(ids) == len(set(ids))


def test_every_panel_and_target_uses_the_datasource_variable() -> None:
    for panel in _panels(_load_dashboard()):
        assert panel.get("datasource") == DATASOURCE, panel["title"]
        for target in panel.get("targets", []):
            assert target.get("datasource", DATASOURCE) == DATASOURCE, panel["title"]


def test_every_target_has_an_expression() -> None:
    targets = _dashboard_targets()
    assert targets
    for where, target in targets:
        assert target.get("expr", "").strip(), where


def test_panels_filter_by_the_namespace_and_pool_variables() -> None:
    per_pool: frozenset[str] = frozenset().union(
        *(m.series for m in PROJECT_METRICS.values() if "pool" in m.labels)
    )
    for where, expr in _dashboard_exprs():
        names = set(_selected_names(expr))
        if names & per_pool:
            assert 'namespace=~"$namespace", pool=~"$pool"' in expr, where
        if any(name.startswith("flowable_worker_") for name in names):
            assert 'namespace=~"$namespace", pod=~"($pool)-worker-.+"' in expr, where


# --- (e): the metric table of the docs ---------------------------------------------------------


def test_docs_metric_table_lists_exactly_the_registered_metrics() -> None:
    documented = [row.name for row in _doc_metric_table()]
    assert len(documented) == len(set(documented))
    assert set(documented) == set(PROJECT_METRICS)


def test_docs_metric_table_gives_each_metric_its_type_and_labels() -> None:
    for row in _doc_metric_table():
        metric = PROJECT_METRICS[row.name]
        assert row.type == metric.type, row.name
        assert set(row.labels) == set(metric.labels), row.name


def test_every_other_registered_metric_is_a_documented_standard_collector() -> None:
    others = set(REGISTERED) - set(PROJECT_METRICS)
    assert all(name.startswith(STANDARD_PREFIXES) for name in others)
    text = DOC_PATH.read_text()
    assert all(f"`{prefix}*`" in text for prefix in STANDARD_PREFIXES)


# --- (f): one source of truth ------------------------------------------------------------------


@pytest.mark.parametrize("link", sorted(DEPLOY_LINKS), ids=lambda p: str(p.relative_to(ROOT)))
def test_deploy_files_are_relative_symlinks_to_the_chart_files(link: Path) -> None:
    assert link.is_symlink()
    target = Path(link.readlink())
    assert not target.is_absolute()
    assert link.resolve() == DEPLOY_LINKS[link].resolve()
    assert link.read_bytes() == DEPLOY_LINKS[link].read_bytes()
