"""charts/flowable-worker-operator with the real helm, and installed on the real API server.

Rendering proves what each value turns into (the operator's flags, RBAC scoped to the watched
namespaces, the monitoring objects built from the chart's files); the schema proves bad values fail
with a message; the install proves the packaged chart, CRD included, deploys and becomes Ready
(kwok runs the pod) and that uninstalling leaves the CRD, as Helm always does with crds/.
"""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from flowable_worker_operator.main import parse_args
from flowable_worker_operator.manifests import POOL_LABEL, build_deployment
from flowable_worker_operator.spec import parse_pool
from localstack.cluster import LocalCluster

pytestmark = pytest.mark.cluster

REPO = Path(__file__).parents[2]
CHART = REPO / "charts" / "flowable-worker-operator"
DEPLOY = REPO / "deploy"
CRD_NAME = "externalworkerpools.flowable-worker.io"
CRD_FILE = f"{CRD_NAME}.yaml"
RELEASE = "fwo"
FULLNAME = f"{RELEASE}-flowable-worker-operator"
POOLS = "externalworkerpools"
EXAMPLE_POOL = DEPLOY / "examples" / "python-handler.yaml"

Doc = dict[str, Any]


def _app_version() -> str:
    return str(yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"])


def render(cluster: LocalCluster, *args: str) -> list[Doc]:
    """`helm template` of the chart in the repo; every rendered object, parsed."""
    out = cluster.helm("template", RELEASE, str(CHART), "--namespace", "ops", *args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def only(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def kinds(docs: list[Doc]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def container(docs: list[Doc]) -> Doc:
    (operator,) = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(operator)


def rules_of(path: Path, name: str) -> list[Doc]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return list(next(d["rules"] for d in docs if d["metadata"]["name"] == name))


CLUSTER_SCOPED = {"customresourcedefinitions", "namespaces"}


def grants(rules: list[Doc], resource: str) -> bool:
    return any(resource in rule["resources"] for rule in rules)


# --- lint and the CRD ----------------------------------------------------------------------------


def test_the_chart_passes_strict_lint_with_defaults_and_with_everything_enabled(
    cluster: LocalCluster,
) -> None:
    cluster.helm("lint", "--strict", str(CHART))
    cluster.helm(
        "lint",
        "--strict",
        str(CHART),
        "--set",
        "serviceMonitor.enabled=true,prometheusRule.enabled=true,grafanaDashboard.enabled=true",
        "--set",
        "podMonitor.enabled=true",
        "--set",
        "watchNamespaces={a,b}",
        "--set",
        "replicaCount=2,leaderElection.enabled=true",
        "--set",
        METRICS_ACCESS,
    )


def test_the_charts_crd_is_the_deploy_crd_through_a_symlink() -> None:
    link = CHART / "crds" / CRD_FILE

    assert link.is_symlink()
    assert link.resolve() == (DEPLOY / "crds" / CRD_FILE).resolve()


def test_template_with_crds_carries_the_crd(cluster: LocalCluster) -> None:
    docs = render(cluster, "--include-crds")

    crd = only(docs, "CustomResourceDefinition")
    assert crd == yaml.safe_load((DEPLOY / "crds" / CRD_FILE).read_text())


def test_the_packaged_chart_carries_the_crd_file_itself(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    package = _package(cluster, tmp_path)

    with tarfile.open(package) as archive:
        member = archive.getmember(f"flowable-worker-operator/crds/{CRD_FILE}")
        assert member.isfile()  # the symlink's content, not a link
        extracted = archive.extractfile(member)
        assert extracted is not None
        assert extracted.read() == (DEPLOY / "crds" / CRD_FILE).read_bytes()


def _package(cluster: LocalCluster, into: Path) -> Path:
    cluster.helm("package", str(CHART), "--destination", str(into))
    (package,) = into.glob("flowable-worker-operator-*.tgz")
    return package


def test_the_chart_refuses_a_kubernetes_older_than_1_30(cluster: LocalCluster) -> None:
    result = cluster.helm("template", RELEASE, str(CHART), "--kube-version", "1.29.0", check=False)

    assert result.returncode != 0
    assert "kubeVersion" in result.stderr or "1.30" in result.stderr, result.stderr


# --- defaults ------------------------------------------------------------------------------------


def test_defaults_render_one_operator_watching_every_namespace(cluster: LocalCluster) -> None:
    docs = render(cluster)

    roles = ["ClusterRole"] * 3  # the operator's, pool-editor, pool-viewer
    assert kinds(docs) == sorted(
        ["ServiceAccount", *roles, "ClusterRoleBinding", "Service", "Deployment"]
    )
    deploy = only(docs, "Deployment", FULLNAME)
    assert deploy["metadata"]["namespace"] == "ops"
    assert deploy["spec"]["replicas"] == 1
    assert deploy["spec"]["strategy"] == {"type": "Recreate"}
    operator = container(docs)
    version = _app_version()
    assert operator["image"] == f"ghcr.io/flowable-worker-operator/operator:{version}"
    assert operator["command"] == ["flowable-worker-operator"]
    assert operator["args"] == [
        "--all-namespaces",
        f"--worker-image=ghcr.io/flowable-worker-operator/worker:{version}",
        "--metrics-port=8080",
        "--probe-share-seconds=1",
        "--discovery-interval=60",
        "--pod-security=privileged",
        "--max-replicas-limit=1000",
        "--log-format=json",
        "--log-level=INFO",
    ]
    assert operator["ports"] == [{"name": "http-metrics", "containerPort": 8080, "protocol": "TCP"}]
    assert operator["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-metrics"}


def test_default_args_are_accepted_by_the_operator_cli(cluster: LocalCluster) -> None:
    config = parse_args(container(render(cluster))["args"])

    assert config.namespaces == ()
    assert config.metrics_port == 8080
    assert config.worker_image.endswith(f"/worker:{_app_version()}")


def test_defaults_run_non_root_with_a_read_only_root_and_a_scratch_tmp(
    cluster: LocalCluster,
) -> None:
    docs = render(cluster)
    pod = only(docs, "Deployment")["spec"]["template"]["spec"]
    operator = container(docs)

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert operator["securityContext"]["readOnlyRootFilesystem"] is True
    assert operator["securityContext"]["allowPrivilegeEscalation"] is False
    assert {"name": "tmp", "mountPath": "/tmp"} in operator["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {}} in pod["volumes"]


def test_the_cluster_role_is_deploy_rbac_and_bound_to_the_service_account(
    cluster: LocalCluster,
) -> None:
    docs = render(cluster)

    role = only(docs, "ClusterRole", FULLNAME)
    assert role["rules"] == rules_of(
        DEPLOY / "rbac" / "cluster-role.yaml", "flowable-worker-operator"
    )
    binding = only(docs, "ClusterRoleBinding", FULLNAME)
    assert binding["roleRef"]["name"] == FULLNAME
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": "ops"}]
    account = only(docs, "ServiceAccount")
    assert account["metadata"]["name"] == FULLNAME
    pod = only(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == FULLNAME


def test_user_roles_are_deploy_rbacs_and_only_behind_their_value(cluster: LocalCluster) -> None:
    docs = render(cluster)
    for suffix in ("pool-editor", "pool-viewer"):
        role = only(docs, "ClusterRole", f"{FULLNAME}-{suffix}")
        expected = rules_of(
            DEPLOY / "rbac" / "user-roles.yaml", f"flowable-worker-operator-{suffix}"
        )
        assert role["rules"] == expected
    editor = only(docs, "ClusterRole", f"{FULLNAME}-pool-editor")["metadata"]["labels"]
    assert editor["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"

    without = render(cluster, "--set", "rbac.aggregateUserRoles=false")
    assert [d["metadata"]["name"] for d in without if d["kind"] == "ClusterRole"] == [FULLNAME]


def test_every_object_carries_the_standard_labels(cluster: LocalCluster) -> None:
    for doc in render(cluster):
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "flowable-worker-operator"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/version"] == _app_version()


def test_the_metrics_service_selects_the_operator_pod(cluster: LocalCluster) -> None:
    docs = render(cluster)
    service = only(docs, "Service", f"{FULLNAME}-metrics")
    pod_labels = only(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]

    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [
        {"name": "http-metrics", "port": 8080, "targetPort": "http-metrics", "protocol": "TCP"}
    ]


# --- values --------------------------------------------------------------------------------------


def test_watched_namespaces_get_a_role_each_and_no_cluster_wide_pool_rights(
    cluster: LocalCluster,
) -> None:
    docs = render(cluster, "--set", "watchNamespaces={a,b}")

    args = container(docs)["args"]
    assert args[:2] == ["--namespace=a", "--namespace=b"]
    assert "--all-namespaces" not in args
    assert parse_args(args).namespaces == ("a", "b")
    deploy_rules = rules_of(DEPLOY / "rbac" / "cluster-role.yaml", "flowable-worker-operator")
    namespaced = [r for r in deploy_rules if not CLUSTER_SCOPED & set(r["resources"])]
    for ns in ("a", "b"):
        role = only([d for d in docs if d["metadata"].get("namespace") == ns], "Role")
        assert role["rules"] == namespaced
        binding = only([d for d in docs if d["metadata"].get("namespace") == ns], "RoleBinding")
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": role["metadata"]["name"],
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": FULLNAME, "namespace": "ops"}
        ]
    # What kopf needs cluster-wide, and nothing on pools, Deployments, pods or Secrets.
    operator_role = only(docs, "ClusterRole", FULLNAME)
    assert {r for rule in operator_role["rules"] for r in rule["resources"]} == CLUSTER_SCOPED
    assert operator_role["rules"] == rules_of(
        DEPLOY / "rbac" / "namespaced" / "cluster-role.yaml", "flowable-worker-operator-cluster"
    )
    pool_roles = [d for d in docs if d["kind"] == "ClusterRole" and grants(d["rules"], POOLS)]
    assert all(r["metadata"]["name"].endswith(("-pool-editor", "-pool-viewer")) for r in pool_roles)


def test_values_become_the_operators_flags_and_pod_settings(cluster: LocalCluster) -> None:
    docs = render(
        cluster,
        "--set",
        "workerImage=registry.local/worker:7,probeShareSeconds=0.5,discoveryInterval=30",
        "--set",
        "podSecurity=restricted,maxReplicasLimit=250",
        "--set",
        "logFormat=text,logLevel=DEBUG,image.tag=dev,priorityClassName=ops-critical",
        "--set",
        "extraEnv[0].name=HTTPS_PROXY,extraEnv[0].value=http://proxy:3128",
        "--set",
        "nodeSelector.pool=ops,podAnnotations.team=bpm",
        "--set",
        "tolerations[0].key=ops,tolerations[0].operator=Exists",
    )

    operator = container(docs)
    config = parse_args(operator["args"])
    assert config.worker_image == "registry.local/worker:7"
    assert config.probe_share_seconds == 0.5
    assert config.discovery_interval_seconds == 30
    assert config.pod_security == "restricted"
    assert config.max_replicas_limit == 250
    assert (config.log_format, config.log_level) == ("text", "DEBUG")
    assert operator["image"] == "ghcr.io/flowable-worker-operator/operator:dev"
    assert operator["env"] == [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}]
    template = only(docs, "Deployment")["spec"]["template"]
    assert template["metadata"]["annotations"] == {"team": "bpm"}
    assert template["spec"]["nodeSelector"] == {"pool": "ops"}
    assert template["spec"]["tolerations"] == [{"key": "ops", "operator": "Exists"}]
    assert template["spec"]["priorityClassName"] == "ops-critical"


def test_leader_election_renders_replicas_a_lease_role_a_rolling_update_and_the_flags(
    cluster: LocalCluster,
) -> None:
    docs = render(cluster, "--set", "replicaCount=2,leaderElection.enabled=true")

    deploy = only(docs, "Deployment", FULLNAME)
    assert deploy["spec"]["replicas"] == 2
    assert deploy["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    args = container(docs)["args"]
    assert "--leader-election" in args
    assert "--leader-election-namespace=ops" in args
    election = parse_args(args).leader_election
    assert election is not None
    assert (election.namespace, election.name) == ("ops", FULLNAME)
    role = only(docs, "Role", f"{FULLNAME}-leader-election")
    assert role["metadata"]["namespace"] == "ops"
    assert role["rules"] == rules_of(
        DEPLOY / "rbac" / "leader-election-role.yaml", "flowable-worker-operator-leader-election"
    )
    assert role["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "list", "create", "update", "delete"],
        }
    ]
    binding = only(docs, "RoleBinding", f"{FULLNAME}-leader-election")
    assert binding["metadata"]["namespace"] == "ops"
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": f"{FULLNAME}-leader-election",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": "ops"}]
    # Nothing else changes: the ClusterRole grants no Leases.
    assert not grants(only(docs, "ClusterRole", FULLNAME)["rules"], "leases")


def test_sharding_renders_replicas_the_lease_role_a_rolling_update_and_the_flags(
    cluster: LocalCluster,
) -> None:
    docs = render(cluster, "--set", "replicaCount=3,sharding.shards=16")

    deploy = only(docs, "Deployment", FULLNAME)
    assert deploy["spec"]["replicas"] == 3
    assert deploy["spec"]["strategy"]["type"] == "RollingUpdate"
    args = container(docs)["args"]
    assert not [a for a in args if a.startswith("--leader-election")]
    sharding = parse_args(args).sharding
    assert sharding is not None
    assert (sharding.shards, sharding.namespace, sharding.prefix) == (16, "ops", FULLNAME)
    role = only(docs, "Role", f"{FULLNAME}-leader-election")
    assert role["rules"] == rules_of(
        DEPLOY / "rbac" / "leader-election-role.yaml", "flowable-worker-operator-leader-election"
    )
    binding = only(docs, "RoleBinding", f"{FULLNAME}-leader-election")
    assert binding["metadata"]["namespace"] == "ops"


def test_leader_election_with_one_replica_and_no_rbac(cluster: LocalCluster) -> None:
    docs = render(cluster, "--set", "leaderElection.enabled=true,rbac.create=false")

    assert only(docs, "Deployment")["spec"]["replicas"] == 1
    assert only(docs, "Deployment")["spec"]["strategy"]["type"] == "RollingUpdate"
    assert "--leader-election" in container(docs)["args"]
    assert not [d for d in docs if d["kind"] in ("Role", "RoleBinding")]


def test_without_leader_election_no_lease_role_and_no_flag(cluster: LocalCluster) -> None:
    docs = render(cluster, "--set", "leaderElection.enabled=false,replicaCount=1")

    assert not [d for d in docs if d["kind"] in ("Role", "RoleBinding")]
    assert not [a for a in container(docs)["args"] if a.startswith("--leader-election")]
    assert only(docs, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}


# --- monitoring (rendered only: the local cluster has no Prometheus Operator CRDs) ----------------


@pytest.fixture(scope="module")
def monitoring(cluster: LocalCluster) -> list[Doc]:
    return render(
        cluster,
        "--set",
        "serviceMonitor.enabled=true,prometheusRule.enabled=true,grafanaDashboard.enabled=true",
        "--set",
        "serviceMonitor.labels.release=prom,grafanaDashboard.annotations.grafana_folder=Flowable",
    )


def test_monitoring_objects_are_off_by_default(cluster: LocalCluster) -> None:
    docs = render(cluster)

    assert not [
        d
        for d in docs
        if d["kind"] in ("ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap")
    ]


def test_the_service_monitor_scrapes_the_metrics_service(monitoring: list[Doc]) -> None:
    monitor = only(monitoring, "ServiceMonitor")
    service = only(monitoring, "Service")

    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["ops"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http-metrics", "/metrics")
    # files/prometheus-rules.yaml finds the operator by its job name and needs the pools'
    # namespace label kept as scraped.
    assert endpoint["honorLabels"] is True
    job = service["metadata"]["labels"][monitor["spec"]["jobLabel"]]
    assert "flowable-worker-operator" in job


METRICS_ACCESS = (
    "metrics.tls.enabled=true,metrics.tls.secretName=op-metrics-tls,"
    "metrics.authToken.enabled=true,metrics.authToken.secretName=op-metrics-token,"
    "metrics.authToken.key=bearer,serviceMonitor.enabled=true"
)


def test_metrics_tls_and_token_become_flags_mounts_and_an_https_probe(
    cluster: LocalCluster,
) -> None:
    docs = render(cluster, "--set", METRICS_ACCESS)
    operator = container(docs)
    pod = only(docs, "Deployment")["spec"]["template"]["spec"]

    mounts = {m["name"]: m for m in operator["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    tls_dir = mounts["metrics-tls"]["mountPath"]
    token_dir = mounts["metrics-token"]["mountPath"]
    assert mounts["metrics-tls"]["readOnly"] is True
    assert mounts["metrics-token"]["readOnly"] is True
    assert volumes["metrics-tls"]["secret"]["secretName"] == "op-metrics-tls"
    assert volumes["metrics-token"]["secret"] == {
        "secretName": "op-metrics-token",
        "items": [{"key": "bearer", "path": "token"}],
    }
    assert f"--metrics-tls-cert={tls_dir}/tls.crt" in operator["args"]
    assert f"--metrics-tls-key={tls_dir}/tls.key" in operator["args"]
    assert f"--metrics-auth-token-file={token_dir}/token" in operator["args"]
    assert operator["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"  # /healthz: no token


def test_the_service_monitor_scrapes_over_https_with_the_token(cluster: LocalCluster) -> None:
    (endpoint,) = only(render(cluster, "--set", METRICS_ACCESS), "ServiceMonitor")["spec"][
        "endpoints"
    ]

    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == {
        "ca": {"secret": {"name": "op-metrics-tls", "key": "ca.crt"}},
        "serverName": f"{FULLNAME}-metrics.ops.svc",
    }
    assert endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": "op-metrics-token", "key": "bearer"},
    }
    custom = render(
        cluster, "--set", METRICS_ACCESS,
        "--set", "serviceMonitor.tlsConfig.insecureSkipVerify=true",
    )
    (endpoint,) = only(custom, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["tlsConfig"] == {"insecureSkipVerify": True}


def test_without_metrics_access_values_the_scrape_stays_plain(monitoring: list[Doc]) -> None:
    (endpoint,) = only(monitoring, "ServiceMonitor")["spec"]["endpoints"]
    assert not {"scheme", "tlsConfig", "authorization"} & set(endpoint)
    operator = only(monitoring, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert not [a for a in operator["args"] if a.startswith(("--metrics-tls", "--metrics-auth"))]


def test_the_pod_monitor_passes_scheme_tls_and_authorization_for_workers(
    cluster: LocalCluster,
) -> None:
    monitor = _pod_monitor(
        cluster,
        "--set", "podMonitor.scheme=https,podMonitor.tlsConfig.insecureSkipVerify=true",
        "--set", "podMonitor.authorization.type=Bearer",
        "--set", "podMonitor.authorization.credentials.name=worker-metrics-token",
        "--set", "podMonitor.authorization.credentials.key=token",
    )
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == {"insecureSkipVerify": True}
    assert endpoint["authorization"]["credentials"] == {
        "name": "worker-metrics-token", "key": "token"
    }


def _pod_monitor(cluster: LocalCluster, *args: str) -> Doc:
    return only(render(cluster, "--set", "podMonitor.enabled=true", *args), "PodMonitor")


def test_the_pod_monitor_renders_only_when_enabled(cluster: LocalCluster) -> None:
    assert not [d for d in render(cluster) if d["kind"] == "PodMonitor"]
    disabled = render(cluster, "--set", "podMonitor.enabled=false,serviceMonitor.enabled=true")
    assert not [d for d in disabled if d["kind"] == "PodMonitor"]

    monitor = _pod_monitor(cluster, "--set", "podMonitor.labels.release=prom")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["name"] == f"{FULLNAME}-workers"
    assert monitor["metadata"]["namespace"] == "ops"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE


def test_the_pod_monitor_scrapes_the_worker_pods_the_operator_builds(
    cluster: LocalCluster,
) -> None:
    monitor = _pod_monitor(cluster)
    spec = monitor["spec"]

    selector = spec["selector"]["matchLabels"]
    assert selector == {
        "app.kubernetes.io/name": "flowable-worker",
        "app.kubernetes.io/managed-by": "flowable-worker-operator",
    }
    # The operator's worker pods carry these labels and expose the port the monitor names.
    body = yaml.safe_load(EXAMPLE_POOL.read_text())
    pool = parse_pool({**body, "metadata": {**body["metadata"], "namespace": "billing"}})
    deployment = build_deployment(pool, default_image="worker:1", replicas=1)
    pod = deployment["spec"]["template"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    assert POOL_LABEL in pod["metadata"]["labels"]
    (endpoint,) = spec["podMetricsEndpoints"]
    (worker,) = pod["spec"]["containers"]
    assert endpoint["port"] in [p["name"] for p in worker["ports"]]
    assert (endpoint["port"], endpoint["path"], endpoint["interval"]) == (
        "metrics",
        "/metrics",
        "30s",
    )
    # The job is not one FlowableOperatorDown takes for the operator.
    assert spec["jobLabel"] == "app.kubernetes.io/name"
    assert "flowable-worker-operator" not in selector[spec["jobLabel"]]
    (every_minute,) = _pod_monitor(cluster, "--set", "podMonitor.interval=1m")["spec"][
        "podMetricsEndpoints"
    ]
    assert every_minute["interval"] == "1m"


def test_the_pod_monitor_copies_the_pool_label_and_sets_namespace_and_pod(
    cluster: LocalCluster,
) -> None:
    (endpoint,) = _pod_monitor(cluster)["spec"]["podMetricsEndpoints"]

    relabelings = {r["targetLabel"]: r for r in endpoint["relabelings"]}
    pool_source = "__meta_kubernetes_pod_label_flowable_worker_io_pool"
    assert relabelings["pool"]["sourceLabels"] == [pool_source]
    # Service discovery names a pod label by replacing what is not [a-zA-Z0-9_] with "_": this is
    # the label the operator puts on worker pods.
    assert pool_source == "__meta_kubernetes_pod_label_" + re.sub(r"\W", "_", POOL_LABEL)
    assert relabelings["namespace"]["sourceLabels"] == ["__meta_kubernetes_namespace"]
    assert relabelings["pod"]["sourceLabels"] == ["__meta_kubernetes_pod_name"]
    assert all(r.get("action", "replace") == "replace" for r in endpoint["relabelings"])


def test_the_pod_monitor_looks_in_the_watched_namespaces(cluster: LocalCluster) -> None:
    assert _pod_monitor(cluster)["spec"]["namespaceSelector"] == {"any": True}

    watched = _pod_monitor(cluster, "--set", "watchNamespaces={a,b}")
    assert watched["spec"]["namespaceSelector"] == {"matchNames": ["a", "b"]}


def test_the_prometheus_rule_spec_is_the_charts_rules_file(monitoring: list[Doc]) -> None:
    rule = only(monitoring, "PrometheusRule")

    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    expected = yaml.safe_load((CHART / "files" / "prometheus-rules.yaml").read_text())
    assert rule["spec"] == expected
    assert rule["spec"]["groups"]


def test_the_dashboard_config_map_holds_the_charts_dashboard(monitoring: list[Doc]) -> None:
    config_map = only(monitoring, "ConfigMap")

    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Flowable"}
    (content,) = config_map["data"].values()
    expected = json.loads((CHART / "files" / "grafana-dashboard.json").read_text())
    assert json.loads(content) == expected


# --- the values schema ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("logFormat=xml", "/logFormat"),
        ("logLevel=TRACE", "/logLevel"),
        ("image.tag=5", "/image/tag"),
        ("watchNamespaces[0]=Not_A_Namespace", "/watchNamespaces/0"),
        ("discoveryInterval=0", "/discoveryInterval"),
        ("replicas=2", "'replicas' not allowed"),
        ("replicaCount=2", "/leaderElection/enabled"),
        ("replicaCount=2,leaderElection.enabled=false", "/leaderElection/enabled"),
        ("replicaCount=0", "/replicaCount"),
        ("leaderElection.enable=true", "'enable' not allowed"),
        ("replicaCount=2,sharding.shards=0", "/leaderElection/enabled"),
        ("sharding.shards=-1", "/sharding/shards"),
        ("leaderElection.enabled=true,sharding.shards=4", "'not' failed"),
        ("serviceMonitor.enable=true", "'enable' not allowed"),
        ("podMonitor.interval=30", "/podMonitor/interval"),
        ("podMonitor.interval=thirty", "/podMonitor/interval"),
        ("podMonitor.enable=true", "'enable' not allowed"),
        ("podMonitor.scheme=ftp", "/podMonitor/scheme"),
        ("metrics.tls.enabled=true", "/metrics/tls/secretName"),
        ("metrics.authToken.enabled=true", "/metrics/authToken/secretName"),
        ("metrics.authToken.key=a/b", "/metrics/authToken/key"),
        ("metrics.tls.secret=x", "'secret' not allowed"),
    ],
)
def test_the_schema_rejects_a_bad_value_with_a_message(
    cluster: LocalCluster, setting: str, message: str
) -> None:
    result = cluster.helm("template", RELEASE, str(CHART), "--set", setting, check=False)

    assert result.returncode == 1
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr, result.stderr


# --- install on the real API server --------------------------------------------------------------


@pytest.fixture
def installed(
    cluster: LocalCluster, namespace: str, tmp_path: Path
) -> Iterator[tuple[str, str, subprocess.CompletedProcess[str]]]:
    """The packaged chart installed into a fresh namespace that enforces Pod Security
    "restricted" (so a pod the template makes must pass it); uninstalled afterwards if needed."""
    release = f"fwo-{namespace}"
    cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    package = _package(cluster, tmp_path)
    result = cluster.helm(
        "install",
        release,
        str(package),
        "--namespace",
        namespace,
        "--set",
        "logFormat=text,workerImage=registry.local/worker:1",
        "--wait",
        "--timeout",
        "120s",
    )
    yield release, namespace, result
    cluster.helm("uninstall", release, "--namespace", namespace, "--wait", check=False)


def _get(cluster: LocalCluster, *args: str) -> Doc:
    return dict(json.loads(cluster.kubectl("get", *args, "-o", "json").stdout))


def test_install_deploys_a_ready_operator_and_prints_the_notes(
    cluster: LocalCluster,
    installed: tuple[str, str, subprocess.CompletedProcess[str]],
    tmp_path: Path,
) -> None:
    release, namespace, result = installed
    fullname = f"{release}-flowable-worker-operator"

    assert "STATUS: deployed" in result.stdout
    assert "NOTES:" in result.stdout
    assert "kubectl get ewp -A" in result.stdout
    # The first pool the notes show is one the API server accepts.
    pool = result.stdout.split("<<'POOL'\n")[1].split("\nPOOL")[0]
    (tmp_path / "pool.yaml").write_text(pool)
    cluster.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(tmp_path / "pool.yaml"))
    deploy = _get(cluster, "deployment", fullname, "-n", namespace)
    assert deploy["status"].get("readyReplicas") == 1  # --wait returned: kwok ran the pod
    (operator,) = deploy["spec"]["template"]["spec"]["containers"]
    assert operator["args"] == [
        "--all-namespaces",
        "--worker-image=registry.local/worker:1",
        "--metrics-port=8080",
        "--probe-share-seconds=1",
        "--discovery-interval=60",
        "--pod-security=privileged",
        "--max-replicas-limit=1000",
        "--log-format=text",
        "--log-level=INFO",
    ]
    crd = _get(cluster, "crd", CRD_NAME)
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True"
    # The bound ClusterRole works: the operator's ServiceAccount may watch pools anywhere.
    account = f"system:serviceaccount:{namespace}:{fullname}"
    can = cluster.kubectl("auth", "can-i", f"--as={account}", "watch", POOLS, "-A", check=False)
    assert can.stdout.strip() == "yes"


def test_uninstall_removes_the_operator_and_keeps_the_crd(
    cluster: LocalCluster, installed: tuple[str, str, subprocess.CompletedProcess[str]]
) -> None:
    release, namespace, _ = installed
    fullname = f"{release}-flowable-worker-operator"

    cluster.helm("uninstall", release, "--namespace", namespace, "--wait")

    gone = cluster.kubectl("get", "deployment", fullname, "-n", namespace, check=False)
    assert gone.returncode != 0
    assert "NotFound" in gone.stderr
    role = cluster.kubectl("get", "clusterrole", fullname, check=False)
    assert "NotFound" in role.stderr
    assert _get(cluster, "crd", CRD_NAME)["metadata"]["name"] == CRD_NAME
