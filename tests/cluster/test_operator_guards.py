"""The running operator refuses what it must: a workload an HPA scales, a template outside the
Pod Security Standard it enforces, and an engine that answers with an internal page.

The operator runs as a process (the installed console script, `--pod-security restricted`,
`--namespace` of the test) against the local API server, as in tests/e2e, but needs no Flowable:
every pool here stops before or at the probe. It runs with a ServiceAccount token bound to
deploy/rbac/namespaced/ only, so the trimmed RBAC is proven by the operator's and kopf's real
calls, not only by `kubectl auth can-i`. This also proves the wiring the unit tests cannot: kopf's
indexes of pools and HPAs reach the tick, the flag reaches the reconciler, and what `view` can
read holds no body.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s_client

from flowable_worker_operator.spec import GROUP, PLURAL, VERSION
from localstack.cluster import LocalCluster
from localstack.operator_process import OperatorProcess, OperatorProcessError, run_operator
from tests.cluster.test_rbac import NAMESPACED, OPERATOR_NS, SCOPED_SA, _for_scoped
from tests.cluster.test_targets import create_pool, pool_crd  # noqa: F401  # a fixture
from tests.support.waiting import poll_until

pytestmark = pytest.mark.cluster

MARKER = "INTERNAL-PAGE-c0ffee"


def scoped_kubeconfig(cluster: LocalCluster, namespace: str, tmp_path: Path) -> Path:
    """A kubeconfig for a ServiceAccount with deploy/rbac/namespaced/ for `namespace` only."""
    cluster.kubectl("create", "namespace", OPERATOR_NS, check=False)
    cluster.kubectl("create", "serviceaccount", SCOPED_SA, "-n", OPERATOR_NS, check=False)
    cluster_file, role_file = tmp_path / "cluster-role.yaml", tmp_path / "role.yaml"
    cluster_file.write_text(yaml.safe_dump_all(_for_scoped(NAMESPACED / "cluster-role.yaml")))
    role_file.write_text(yaml.safe_dump_all(_for_scoped(NAMESPACED / "role.yaml")))
    cluster.kubectl("apply", "-f", str(cluster_file))
    cluster.kubectl("apply", "-n", namespace, "-f", str(role_file))
    token = cluster.kubectl("create", "token", SCOPED_SA, "-n", OPERATOR_NS).stdout.strip()
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    for user in config["users"]:
        user["user"] = {"token": token}
    path = tmp_path / "scoped.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def operator(
    cluster: LocalCluster,
    api_client: Any,
    pool_crd: None,  # noqa: F811
    namespace: str,
    tmp_path: Path,
) -> Iterator[OperatorProcess]:
    kubeconfig = scoped_kubeconfig(cluster, namespace, tmp_path)
    log = tmp_path / "operator.log"
    try:
        with run_operator(
            kubeconfig, namespace, log, extra_args=["--pod-security", "restricted"]
        ) as running:
            yield running
            # The operator may not delete pools: delete them as an admin, and let the running
            # operator remove its finalizer (which needs only its own rights).
            delete_pools(api_client, namespace)
            assert "Forbidden" not in running.log(), running.log()[-4000:]
    except OperatorProcessError as error:
        pytest.fail(str(error)[-4000:])


def delete_pools(api_client: Any, namespace: str) -> None:
    custom = k8s_client.CustomObjectsApi(api_client)

    def names() -> list[str]:
        listed = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        return [pool["metadata"]["name"] for pool in listed["items"]]

    for name in names():
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    poll_until(lambda: not names(), timeout=30)


class _InternalPage(BaseHTTPRequestHandler):
    """What a pool author might point engine.url at: a service answering with its secrets."""

    def do_GET(self) -> None:
        body = f"<html>{MARKER} admin console</html>".encode()
        self.send_response(500)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def internal_page() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _InternalPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def ready(api_client: Any, namespace: str, name: str) -> dict[str, Any]:
    pool = k8s_client.CustomObjectsApi(api_client).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    conditions = (pool.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Ready"), {})


def refused(api_client: Any, namespace: str, name: str, reason: str) -> dict[str, Any]:
    def seen() -> dict[str, Any] | None:
        condition = ready(api_client, namespace, name)
        return condition if condition.get("reason") == reason else None

    found: dict[str, Any] = poll_until(seen, timeout=60)
    return found


def warnings(api_client: Any, namespace: str, name: str) -> list[tuple[str, str]]:
    events = k8s_client.CoreV1Api(api_client).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name}"
    )
    return [(e.reason, e.message) for e in events.items if e.type == "Warning"]


def test_a_pool_on_a_workload_an_hpa_scales_steps_back(
    operator: OperatorProcess, api_client: Any, namespace: str
) -> None:
    k8s_client.AutoscalingV2Api(api_client).create_namespaced_horizontal_pod_autoscaler(
        namespace,
        {
            "metadata": {"name": "legacy-hpa"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "legacy"},
                "maxReplicas": 3,
            },
        },
    )
    spec = {"scaleTargetRef": {"name": "legacy"}, "scaling": {"jobsPerReplica": 2}}
    create_pool(api_client, namespace, "legacy", spec)

    condition = refused(api_client, namespace, "legacy", "ScaleTargetConflict")
    assert "HorizontalPodAutoscaler legacy-hpa" in condition["message"]
    poll_until(
        lambda: any(
            r == "ScaleTargetConflict" for r, _ in warnings(api_client, namespace, "legacy")
        )
    )


def test_a_privileged_template_is_refused_under_restricted(
    operator: OperatorProcess, api_client: Any, namespace: str
) -> None:
    template = {"spec": {"hostNetwork": True}}
    create_pool(
        api_client,
        namespace,
        "hostnet",
        {"worker": {"handler": {"python": "m:f"}, "template": template}},
    )

    condition = refused(api_client, namespace, "hostnet", "PodSecurityViolation")
    assert "worker.template.spec.hostNetwork" in condition["message"]
    apps = k8s_client.AppsV1Api(api_client)
    names = [d.metadata.name for d in apps.list_namespaced_deployment(namespace).items]
    assert "hostnet-worker" not in names


def test_an_engines_error_page_never_reaches_what_view_can_read(
    operator: OperatorProcess, api_client: Any, namespace: str, internal_page: str
) -> None:
    spec = {
        "engine": {"url": internal_page},
        "worker": {"handler": {"python": "m:f"}},
        "backlog": {"selectors": [{"elementId": "x", "processDefinitionId": "p:1:1"}]},
    }
    create_pool(api_client, namespace, "nosy", spec)

    def probed() -> dict[str, Any] | None:
        pool = k8s_client.CustomObjectsApi(api_client).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "nosy"
        )
        error = ((pool.get("status") or {}).get("probe") or {}).get("lastError")
        return pool if error else None

    pool = poll_until(probed, timeout=60)
    assert "HTTP 500 Internal Server Error" in pool["status"]["probe"]["lastError"]
    assert MARKER not in json.dumps(pool)
    assert not [m for _, m in warnings(api_client, namespace, "nosy") if MARKER in m]
