"""The chart values that fit it to real clusters, with the real helm on the real API server.

Every value of issue 13's "a chart that fits real clusters" is set at once: rendered (each object
as asked), installed (the API server accepts them and the operator becomes Ready), refused by the
strict schema when wrong (with a message naming the value); and the `crds.install` route: a CRD of
an older chart version upgraded by `helm upgrade`, its pools kept, the CRD kept on uninstall.
Monitoring objects are rendered only: the local cluster has no Prometheus Operator CRDs.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from flowable_worker_operator.main import parse_args
from localstack.cluster import LocalCluster
from tests.cluster.test_helm_chart import (
    CHART,
    CRD_FILE,
    CRD_NAME,
    DEPLOY,
    FULLNAME,
    RELEASE,
    Doc,
    container,
    only,
    render,
)

pytestmark = pytest.mark.cluster

SELECTOR = {
    "app.kubernetes.io/name": "flowable-worker-operator",
    "app.kubernetes.io/instance": RELEASE,
    "app.kubernetes.io/component": "operator",
}
RULES = yaml.safe_load((CHART / "files" / "prometheus-rules.yaml").read_text())

# Every new value, at once. `{{ ... }}` in extraObjects goes through tpl.
EVERYTHING: Doc = {
    "replicaCount": 2,
    "leaderElection": {"enabled": True},
    "commonLabels": {"team": "bpm", "cost-center": "42"},
    "commonAnnotations": {"owner": "bpm-platform"},
    "podLabels": {"app.kubernetes.io/instance": RELEASE, "tier": "control"},
    "extraArgs": ["--log-level=DEBUG"],
    "envFrom": [{"configMapRef": {"name": "operator-proxy"}}, {"secretRef": {"name": "x"}}],
    "extraVolumes": [{"name": "ca", "configMap": {"name": "operator-proxy"}}],
    "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ssl/private-ca", "readOnly": True}],
    "topologySpreadConstraints": [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
        }
    ],
    "livenessProbe": {
        "initialDelaySeconds": 3,
        "periodSeconds": 7,
        "timeoutSeconds": 2,
        "failureThreshold": 4,
    },
    "readinessProbe": {
        "enabled": True,
        "initialDelaySeconds": 1,
        "periodSeconds": 4,
        "timeoutSeconds": 2,
        "failureThreshold": 2,
    },
    "podDisruptionBudget": {"enabled": True, "minAvailable": 1},
    "extraObjects": [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "operator-proxy", "namespace": "{{ .Release.Namespace }}"},
            "data": {"HTTPS_PROXY": "http://proxy.{{ .Release.Namespace }}:3128"},
        },
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: x\n"
        "stringData:\n  release: '{{ .Release.Name }}'\n",
    ],
    "serviceMonitor": {
        "enabled": True,
        "namespace": "monitoring",
        "relabelings": [{"targetLabel": "cluster", "replacement": "prod"}],
        "metricRelabelings": [
            {"sourceLabels": ["__name__"], "regex": "python_gc_.*", "action": "drop"}
        ],
    },
    "podMonitor": {
        "enabled": True,
        "namespace": "monitoring",
        "relabelings": [{"targetLabel": "cluster", "replacement": "prod"}],
        "metricRelabelings": [
            {
                "sourceLabels": ["__name__"],
                "regex": "flowable_worker_empty_polls_total",
                "action": "drop",
            }
        ],
    },
    "prometheusRule": {
        "enabled": True,
        "alerts": {
            "FlowableWorkerJobsFailing": {"threshold": 0.25, "for": "30m"},
            "FlowablePoolEngineUnreachable": {"threshold": 5, "severity": "warning"},
            "FlowableOperatorDown": {"labels": {"team": "bpm"}},
            "FlowablePoolBacklogGrowing": {"enabled": False},
            "FlowableWorkerHandlersHung": {"threshold": 2},
        },
    },
}
MONITORING = ("serviceMonitor", "podMonitor", "prometheusRule")


def _values_file(tmp_path: Path, values: Doc) -> str:
    path = tmp_path / f"values-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


@pytest.fixture(scope="module")
def everything(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> list[Doc]:
    return render(cluster, "-f", _values_file(tmp_path_factory.mktemp("values"), EVERYTHING))


def _alert(rule: Doc, name: str) -> Doc | None:
    found = [r for g in rule["spec"]["groups"] for r in g["rules"] if r.get("alert") == name]
    return found[0] if found else None


# --- rendered -------------------------------------------------------------------------------------


def test_the_chart_lints_with_every_new_value(cluster: LocalCluster, tmp_path: Path) -> None:
    cluster.helm("lint", "--strict", str(CHART), "-f", _values_file(tmp_path, EVERYTHING))
    cluster.helm("lint", "--strict", str(CHART), "--set", "crds.install=true")


def test_the_operator_container_gets_args_env_volumes_and_probes(everything: list[Doc]) -> None:
    operator = container(everything)
    pod = only(everything, "Deployment")["spec"]["template"]["spec"]

    assert operator["args"][-1] == "--log-level=DEBUG"  # after the chart's own
    assert parse_args(operator["args"]).log_level == "DEBUG"
    assert operator["envFrom"] == EVERYTHING["envFrom"]
    assert EVERYTHING["extraVolumeMounts"][0] in operator["volumeMounts"]
    assert {"name": "tmp", "mountPath": "/tmp"} in operator["volumeMounts"]
    assert EVERYTHING["extraVolumes"][0] in pod["volumes"]
    liveness = operator["livenessProbe"]
    assert liveness == {
        "httpGet": {"path": "/healthz", "port": "http-metrics"},
        **EVERYTHING["livenessProbe"],
    }
    readiness = {k: v for k, v in EVERYTHING["readinessProbe"].items() if k != "enabled"}
    assert operator["readinessProbe"] == {
        "httpGet": {"path": "/healthz", "port": "http-metrics"},
        **readiness,
    }
    (spread,) = pod["topologySpreadConstraints"]
    assert spread == {
        **EVERYTHING["topologySpreadConstraints"][0],
        "labelSelector": {"matchLabels": SELECTOR},
    }


def test_probe_defaults_and_a_readiness_probe_that_can_be_turned_off(
    cluster: LocalCluster,
) -> None:
    operator = container(render(cluster))
    assert operator["livenessProbe"] == {
        "httpGet": {"path": "/healthz", "port": "http-metrics"},
        "initialDelaySeconds": 10,
        "periodSeconds": 20,
        "timeoutSeconds": 5,
        "failureThreshold": 3,
    }
    assert operator["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-metrics"}
    assert "readinessProbe" not in container(
        render(cluster, "--set", "readinessProbe.enabled=false")
    )
    tls = container(
        render(cluster, "--set", "metrics.tls.enabled=true,metrics.tls.secretName=op-tls")
    )
    assert tls["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"


def test_a_given_label_selector_of_a_spread_constraint_is_kept(cluster: LocalCluster) -> None:
    pod = only(
        render(
            cluster,
            "--set-json",
            'topologySpreadConstraints=[{"maxSkew": 2, "topologyKey": "zone", '
            '"whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"a": "b"}}}]',
        ),
        "Deployment",
    )["spec"]["template"]["spec"]
    assert pod["topologySpreadConstraints"][0]["labelSelector"] == {"matchLabels": {"a": "b"}}


def test_common_labels_and_annotations_are_on_every_object(everything: list[Doc]) -> None:
    for doc in everything:
        metadata = doc["metadata"]
        where = f"{doc['kind']} {metadata['name']}"
        if doc["kind"] in ("ConfigMap", "Secret") and metadata["name"] in ("operator-proxy", "x"):
            continue  # extraObjects are the user's own
        assert metadata["labels"]["team"] == "bpm", where
        assert metadata["labels"]["cost-center"] == "42", where
        assert metadata["annotations"]["owner"] == "bpm-platform", where
    pod = only(everything, "Deployment")["spec"]["template"]["metadata"]
    assert pod["labels"] == {
        **SELECTOR,
        "app.kubernetes.io/version": only(everything, "Deployment")["metadata"]["labels"][
            "app.kubernetes.io/version"
        ],
        "tier": "control",
        "team": "bpm",
        "cost-center": "42",
    }


@pytest.mark.parametrize(
    ("template", "own"),
    [
        ("servicemonitor.yaml", "serviceMonitor"),
        ("podmonitor.yaml", "podMonitor"),
        ("prometheusrule.yaml", "prometheusRule"),
        ("grafana-dashboard.yaml", "grafanaDashboard"),
    ],
)
def test_an_objects_own_labels_win_over_common_ones_without_a_repeated_key(
    cluster: LocalCluster, template: str, own: str
) -> None:
    """commonLabels.release and serviceMonitor.labels.release (the usual Prometheus selector)
    together: one `release` key, the object's own value."""
    text = cluster.helm(
        "template",
        RELEASE,
        str(CHART),
        "--set",
        f"{own}.enabled=true,{own}.labels.release=prom",
        "--set",
        "commonLabels.release=everything,commonLabels.team=bpm",
        "--show-only",
        f"templates/{template}",
    ).stdout
    assert text.count("release:") == 1, text
    (doc,) = [d for d in yaml.safe_load_all(text) if d]
    assert doc["metadata"]["labels"]["release"] == "prom"
    assert doc["metadata"]["labels"]["team"] == "bpm"


def test_an_objects_own_annotations_win_over_common_ones(cluster: LocalCluster) -> None:
    docs = render(
        cluster,
        "--set",
        "commonAnnotations.owner=platform,commonAnnotations.tier=ops",
        "--set",
        "service.annotations.owner=metrics-team",
    )
    assert only(docs, "Service")["metadata"]["annotations"] == {
        "owner": "metrics-team",
        "tier": "ops",
    }


def test_the_pod_disruption_budget_keeps_a_standby_through_a_drain(
    everything: list[Doc], cluster: LocalCluster
) -> None:
    pdb = only(everything, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["metadata"]["name"] == FULLNAME
    assert pdb["spec"] == {"minAvailable": 1, "selector": {"matchLabels": SELECTOR}}
    pod_labels = only(everything, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert SELECTOR.items() <= pod_labels.items()

    default = only(
        render(cluster, "--set", "podDisruptionBudget.enabled=true"), "PodDisruptionBudget"
    )
    assert default["spec"]["maxUnavailable"] == 1
    percent = render(
        cluster, "--set", "podDisruptionBudget.enabled=true,podDisruptionBudget.maxUnavailable=50%"
    )
    assert only(percent, "PodDisruptionBudget")["spec"]["maxUnavailable"] == "50%"
    assert not [d for d in render(cluster) if d["kind"] == "PodDisruptionBudget"]


def test_extra_objects_are_rendered_through_tpl(everything: list[Doc]) -> None:
    config = only(everything, "ConfigMap", "operator-proxy")
    assert config["metadata"]["namespace"] == "ops"
    assert config["data"] == {"HTTPS_PROXY": "http://proxy.ops:3128"}
    assert only(everything, "Secret", "x")["stringData"] == {"release": RELEASE}


def test_monitors_take_a_namespace_relabelings_and_metric_relabelings(
    everything: list[Doc],
) -> None:
    service_monitor = only(everything, "ServiceMonitor")
    assert service_monitor["metadata"]["namespace"] == "monitoring"
    # It still scrapes the Service in the release's namespace.
    assert service_monitor["spec"]["namespaceSelector"] == {"matchNames": ["ops"]}
    (endpoint,) = service_monitor["spec"]["endpoints"]
    assert endpoint["relabelings"] == EVERYTHING["serviceMonitor"]["relabelings"]
    assert endpoint["metricRelabelings"] == EVERYTHING["serviceMonitor"]["metricRelabelings"]

    pod_monitor = only(everything, "PodMonitor")
    assert pod_monitor["metadata"]["namespace"] == "monitoring"
    (endpoint,) = pod_monitor["spec"]["podMetricsEndpoints"]
    # The chart's pool/namespace/pod relabelings first, then the user's.
    assert [r["targetLabel"] for r in endpoint["relabelings"]] == [
        "pool",
        "namespace",
        "pod",
        "cluster",
    ]
    assert endpoint["metricRelabelings"] == EVERYTHING["podMonitor"]["metricRelabelings"]


def test_alert_knobs_change_only_the_alerts_they_name(everything: list[Doc]) -> None:
    rule = only(everything, "PrometheusRule")

    failing = _alert(rule, "FlowableWorkerJobsFailing")
    assert failing is not None
    assert failing["expr"].split() == [
        "flowable_worker:jobs_failed:rate5m",
        "/",
        "flowable_worker:jobs_ended:rate5m",
        ">",
        "0.25",
    ]
    assert failing["for"] == "30m"
    unreachable = _alert(rule, "FlowablePoolEngineUnreachable")
    assert unreachable is not None
    assert unreachable["expr"].strip() == "flowable_pool_probe_consecutive_failures >= 5"
    assert unreachable["labels"] == {"severity": "warning"}
    down = _alert(rule, "FlowableOperatorDown")
    assert down is not None
    assert down["labels"] == {"severity": "critical", "team": "bpm"}
    assert _alert(rule, "FlowablePoolBacklogGrowing") is None
    hung = _alert(rule, "FlowableWorkerHandlersHung")
    assert hung is not None
    assert hung["expr"].rstrip().endswith(") > 2")
    # Everything not named is the rules file as it is (promtool tests that file).
    untouched = {"FlowablePoolAtMaxReplicasWithBacklog", "FlowablePoolReplicasNotReached"}
    for name in untouched:
        assert _alert(rule, name) == _alert({"spec": RULES}, name)
    recording = rule["spec"]["groups"][0]
    assert recording == RULES["groups"][0]


def test_every_threshold_knob_of_the_schema_finds_its_threshold(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """A rules-file edit that moves an alert's threshold away from the end of its expression
    must fail here, not render an unchanged alert."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    alerts = schema["properties"]["prometheusRule"]["properties"]["alerts"]["properties"]
    assert set(alerts) == {r["alert"] for g in RULES["groups"] for r in g["rules"] if "alert" in r}
    knobs = {name: {"threshold": 1} for name, a in alerts.items() if "threshold" in a["properties"]}
    assert len(knobs) == 5
    values = {"prometheusRule": {"enabled": True, "alerts": knobs}}
    rule = only(render(cluster, "-f", _values_file(tmp_path, values)), "PrometheusRule")
    for name in knobs:
        alert = _alert(rule, name)
        assert alert is not None, name
        assert alert["expr"].rstrip().endswith(" 1"), name


# --- podLabels and the selector -------------------------------------------------------------------


def test_a_pod_label_that_would_change_a_selector_label_fails_with_its_name(
    cluster: LocalCluster,
) -> None:
    result = cluster.helm(
        "template",
        RELEASE,
        str(CHART),
        "--set",
        "podLabels.app\\.kubernetes\\.io/name=other",
        check=False,
    )
    assert result.returncode == 1
    assert "podLabels.app.kubernetes.io/name" in result.stderr
    assert "selector label" in result.stderr


def test_pod_labels_repeating_chart_labels_are_merged_into_one_key(
    cluster: LocalCluster,
) -> None:
    docs = render(
        cluster,
        "--set",
        "podLabels.app\\.kubernetes\\.io/component=operator",
        "--set",
        "podLabels.app\\.kubernetes\\.io/version=custom-build",
    )
    rendered = cluster.helm(
        "template",
        RELEASE,
        str(CHART),
        "--set",
        "podLabels.app\\.kubernetes\\.io/component=operator",
        "--show-only",
        "templates/deployment.yaml",
    ).stdout
    # Once each in the Deployment's labels, its selector and the pod's labels.
    assert rendered.count("app.kubernetes.io/component: operator") == 3
    labels = only(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/version"] == "custom-build"
    assert labels["app.kubernetes.io/component"] == "operator"


# --- the schema -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("extraArgs[0]=log-level", "/extraArgs/0"),
        ("envFrom[0].configMap.name=x", "'configMap' not allowed"),
        ("extraVolumeMounts[0].name=ca", "/extraVolumeMounts/0"),
        (
            "extraVolumeMounts[0].name=ca,extraVolumeMounts[0].mountPath=etc",
            "/extraVolumeMounts/0/mountPath",
        ),
        ("topologySpreadConstraints[0].maxSkew=1", "/topologySpreadConstraints/0"),
        ("livenessProbe.periodSeconds=0", "/livenessProbe/periodSeconds"),
        ("livenessProbe.path=/x", "'path' not allowed"),
        ("readinessProbe.enabled=maybe", "/readinessProbe/enabled"),
        ("podDisruptionBudget.maxUnavailable=half", "/podDisruptionBudget/maxUnavailable"),
        ("podDisruptionBudget.minAvailable=-1", "/podDisruptionBudget/minAvailable"),
        ("serviceMonitor.namespace=Not_A_Namespace", "/serviceMonitor/namespace"),
        ("serviceMonitor.relabelings[0].action=explode", "/serviceMonitor/relabelings/0/action"),
        (
            "podMonitor.metricRelabelings[0].sourceLabels[0]=not-a-label",
            "/podMonitor/metricRelabelings/0/sourceLabels/0",
        ),
        ("podMonitor.relabelings[0].target=x", "'target' not allowed"),
        (
            "prometheusRule.alerts.FlowableNoSuchAlert.enabled=false",
            "'FlowableNoSuchAlert' not allowed",
        ),
        ("prometheusRule.alerts.FlowableOperatorDown.threshold=1", "'threshold' not allowed"),
        (
            "prometheusRule.alerts.FlowableWorkerJobsFailing.threshold=2",
            "/prometheusRule/alerts/FlowableWorkerJobsFailing/threshold",
        ),
        (
            "prometheusRule.alerts.FlowableWorkerJobsFailing.for=ten",
            "/prometheusRule/alerts/FlowableWorkerJobsFailing/for",
        ),
        ("crds.install=yes", "/crds/install"),
        ("crds.keep=true", "'keep' not allowed"),
        ("extraObjects[0]=1", "/extraObjects/0"),
    ],
)
def test_the_schema_rejects_a_bad_new_value_with_a_message(
    cluster: LocalCluster, setting: str, message: str
) -> None:
    result = cluster.helm("template", RELEASE, str(CHART), "--set", setting, check=False)

    assert result.returncode == 1
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr, result.stderr


@pytest.mark.parametrize(
    "key", ["app.kubernetes.io/name", "app.kubernetes.io/part-of", "helm.sh/chart"]
)
def test_a_common_label_the_chart_sets_itself_fails_with_its_name(
    cluster: LocalCluster, key: str
) -> None:
    escaped = key.replace(".", "\\.")
    result = cluster.helm(
        "template", RELEASE, str(CHART), "--set", f"commonLabels.{escaped}=x", check=False
    )
    assert result.returncode == 1
    assert f"commonLabels.{key}: the chart sets" in result.stderr, result.stderr


def test_a_budget_with_both_fields_fails_with_a_message(cluster: LocalCluster) -> None:
    result = cluster.helm(
        "template",
        RELEASE,
        str(CHART),
        "--set",
        "podDisruptionBudget.enabled=true,podDisruptionBudget.minAvailable=1,"
        "podDisruptionBudget.maxUnavailable=1",
        check=False,
    )
    assert result.returncode == 1
    assert "set minAvailable or maxUnavailable, not both" in result.stderr


# --- installed ------------------------------------------------------------------------------------


def _helm(cluster: LocalCluster, *args: str) -> None:
    """helm that fails with its own message."""
    result = cluster.helm(*args, check=False)
    assert result.returncode == 0, result.stderr


def _get(cluster: LocalCluster, *args: str) -> Doc:
    return dict(json.loads(cluster.kubectl("get", *args, "-o", "json").stdout))


def test_every_new_value_installs_and_the_objects_are_as_asked(
    cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    release = f"fit-{namespace}"
    fullname = f"{release}-flowable-worker-operator"
    values = {k: v for k, v in EVERYTHING.items() if k not in MONITORING}
    values["podLabels"] = {"app.kubernetes.io/instance": release, "tier": "control"}
    cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    try:
        _helm(
            cluster,
            "install",
            release,
            str(CHART),
            "--namespace",
            namespace,
            "-f",
            _values_file(tmp_path, values),
            "--set",
            "workerImage=registry.local/worker:1",
            "--wait",
            "--timeout",
            "120s",
        )
        deploy = _get(cluster, "deployment", fullname, "-n", namespace)
        assert deploy["status"].get("readyReplicas") == 2
        assert deploy["metadata"]["labels"]["team"] == "bpm"
        assert deploy["metadata"]["annotations"]["owner"] == "bpm-platform"
        pod = deploy["spec"]["template"]
        assert pod["metadata"]["labels"]["tier"] == "control"
        (operator,) = pod["spec"]["containers"]
        assert operator["envFrom"] == values["envFrom"]
        assert operator["readinessProbe"]["periodSeconds"] == 4
        assert operator["livenessProbe"]["failureThreshold"] == 4
        assert operator["args"][-1] == "--log-level=DEBUG"
        assert (
            pod["spec"]["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"][
                "app.kubernetes.io/instance"
            ]
            == release
        )
        pdb = _get(cluster, "pdb", fullname, "-n", namespace)
        assert pdb["spec"]["minAvailable"] == 1
        assert pdb["status"]["expectedPods"] == 2  # it selects the operator's pods
        config = _get(cluster, "configmap", "operator-proxy", "-n", namespace)
        assert config["data"] == {"HTTPS_PROXY": f"http://proxy.{namespace}:3128"}
        secret = _get(cluster, "secret", "x", "-n", namespace)
        assert secret["metadata"]["annotations"]["meta.helm.sh/release-name"] == release
    finally:
        cluster.helm("uninstall", release, "--namespace", namespace, "--wait", check=False)


# --- crds.install ---------------------------------------------------------------------------------


def _older_chart(into: Path) -> Path:
    """This chart as an older version would have been: version 0.0.1 and a CRD without
    worker.podDisruptionBudget and without the Active/Paused/Fallback columns."""
    chart = into / "flowable-worker-operator"
    shutil.copytree(CHART, chart, symlinks=False)
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    (chart / "Chart.yaml").write_text(yaml.safe_dump({**meta, "version": "0.0.1"}))
    crd = yaml.safe_load((DEPLOY / "crds" / CRD_FILE).read_text())
    (version,) = crd["spec"]["versions"]
    worker = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["worker"]
    del worker["properties"]["podDisruptionBudget"]
    version["additionalPrinterColumns"] = [
        c
        for c in version["additionalPrinterColumns"]
        if c["name"] not in ("Active", "Paused", "Fallback")
    ]
    (chart / "crds" / CRD_FILE).unlink()
    (chart / "crds" / CRD_FILE).write_text(yaml.safe_dump(crd, sort_keys=False))
    return chart


def _crd(cluster: LocalCluster) -> Doc:
    return _get(cluster, "crd", CRD_NAME)


def _has_budget_field(crd: Doc) -> bool:
    (version,) = crd["spec"]["versions"]
    worker = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["worker"]
    return "podDisruptionBudget" in worker["properties"]


def _release_nobody(cluster: LocalCluster) -> None:
    """Take Helm's ownership metadata off the session's CRD again."""
    cluster.kubectl(
        "annotate",
        "crd",
        CRD_NAME,
        "meta.helm.sh/release-name-",
        "meta.helm.sh/release-namespace-",
        "helm.sh/resource-policy-",
    )
    cluster.kubectl("label", "crd", CRD_NAME, "app.kubernetes.io/managed-by-")


@pytest.fixture
def session_crd(cluster: LocalCluster) -> Iterator[None]:
    """The session's CRD (other modules' pools use it): present before, the current file after,
    and owned by no release, whatever the test did to it."""
    cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", str(DEPLOY / "crds" / CRD_FILE)
    )
    cluster.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    yield
    _release_nobody(cluster)
    cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", str(DEPLOY / "crds" / CRD_FILE)
    )


def test_crds_install_upgrades_an_older_charts_crd_and_keeps_the_pools(
    cluster: LocalCluster, namespace: str, tmp_path: Path, session_crd: None
) -> None:
    release = f"crd-{namespace}"
    install = [
        "--namespace",
        namespace,
        "--set",
        "crds.install=true",
        "--wait",
        "--timeout",
        "120s",
    ]
    # The CRD exists (kubectl applied it server-side): the first release with crds.install
    # adopts it, as the README says.
    adopt = ["--skip-crds", "--take-ownership", "--force-conflicts"]
    _helm(cluster, "install", release, str(_older_chart(tmp_path)), *adopt, *install)
    old = _crd(cluster)
    assert not _has_budget_field(old)
    assert old["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    pool = tmp_path / "pool.yaml"
    pool.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "flowable-worker.io/v1alpha1",
                "kind": "ExternalWorkerPool",
                "metadata": {"name": "kept", "namespace": namespace},
                "spec": {
                    "engine": {"url": "http://flowable:8080/flowable-rest"},
                    "topic": "invoices",
                    "worker": {"handler": {"python": "m:f"}},
                },
            }
        )
    )
    cluster.kubectl("apply", "-f", str(pool))
    uid = _get(cluster, "ewp", "kept", "-n", namespace)["metadata"]["uid"]

    _helm(cluster, "upgrade", release, str(CHART), *install)

    new = _crd(cluster)
    assert _has_budget_field(new)
    columns = [c["name"] for c in new["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert {"Active", "Paused", "Fallback"} <= set(columns)
    assert new["metadata"]["annotations"]["meta.helm.sh/release-name"] == release
    assert _get(cluster, "ewp", "kept", "-n", namespace)["metadata"]["uid"] == uid
    # The new field is served (not pruned) now.
    cluster.kubectl(
        "patch",
        "ewp",
        "kept",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec": {"worker": {"podDisruptionBudget": {"maxUnavailable": 1}}}}',
    )
    kept = _get(cluster, "ewp", "kept", "-n", namespace)
    assert kept["spec"]["worker"]["podDisruptionBudget"] == {"maxUnavailable": 1}
    header = cluster.kubectl("get", "ewp", "-n", namespace).stdout.splitlines()[0]
    assert "ACTIVE" in header.split()

    cluster.helm("uninstall", release, "--namespace", namespace, "--wait")

    assert _crd(cluster)["metadata"]["uid"] == new["metadata"]["uid"]  # kept
    assert _get(cluster, "ewp", "kept", "-n", namespace)["metadata"]["uid"] == uid


def test_crds_install_without_skip_crds_stops_at_the_crd_helm_made_from_crds_dir(
    cluster: LocalCluster, namespace: str, session_crd: None
) -> None:
    """The collision the README warns of: Helm creates (here: finds) the crds/ CRD, then will
    not hand it to the template. Nothing half-installed is left to clean up but the release."""
    release = f"own-{namespace}"
    try:
        result = cluster.helm(
            "install",
            release,
            str(CHART),
            "--namespace",
            namespace,
            "--set",
            "crds.install=true",
            check=False,
        )
        assert result.returncode == 1
        assert "invalid ownership metadata" in result.stderr, result.stderr
        assert CRD_NAME in result.stderr
    finally:
        cluster.helm("uninstall", release, "--namespace", namespace, check=False)
    assert "meta.helm.sh/release-name" not in _crd(cluster)["metadata"].get("annotations", {})


def test_the_crd_template_is_the_deploy_crd_with_the_releases_metadata(
    cluster: LocalCluster,
) -> None:
    crds = [
        d
        for d in render(cluster, "--set", "crds.install=true")
        if d["kind"] == "CustomResourceDefinition"
    ]
    (crd,) = crds
    plain = yaml.safe_load((DEPLOY / "crds" / CRD_FILE).read_text())
    assert crd["spec"] == plain["spec"]
    assert crd["metadata"]["name"] == CRD_NAME
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    # The plain route is unchanged: without crds.install the template renders no CRD.
    assert not [d for d in render(cluster) if d["kind"] == "CustomResourceDefinition"]
