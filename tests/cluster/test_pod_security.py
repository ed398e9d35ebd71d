"""Worker pod templates against the API server's own Pod Security admission.

The operator's defaults must pass `restricted` as Kubernetes enforces it, and `podsecurity.check`
must agree with the API server: for each template below, the admission of a namespace enforcing a
level refuses the pod (server dry run) exactly when `check` finds a violation of that level.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from flowable_worker_operator.manifests import build_deployment
from flowable_worker_operator.podsecurity import Level, check
from flowable_worker_operator.spec import parse_pool

pytestmark = pytest.mark.cluster

Template = dict[str, Any]


def generated(template: Template | None = None) -> Template:
    pool = parse_pool(
        {
            "metadata": {"name": "inv", "namespace": "x", "uid": "u", "generation": 1},
            "spec": {
                "engine": {"url": "http://flowable:8080"},
                "topic": "t",
                "worker": {"handler": {"python": "m:f"}, "template": template or {}},
            },
        }
    )
    built: Template = build_deployment(pool, default_image="worker:test", replicas=1)["spec"][
        "template"
    ]
    return built


def spec(**fields: Any) -> Callable[[], Template]:
    return lambda: generated({"spec": fields})


def worker(**security: Any) -> Callable[[], Template]:
    return spec(containers=[{"name": "worker", "securityContext": security}])


TEMPLATES: dict[str, Callable[[], Template]] = {
    "defaults": generated,
    "fsGroup only": spec(securityContext={"fsGroup": 2000}),
    "privileged": worker(privileged=True),
    "hostNetwork": spec(hostNetwork=True),
    "hostPath": spec(volumes=[{"name": "root", "hostPath": {"path": "/"}}]),
    "hostPort": spec(
        containers=[{"name": "worker", "ports": [{"containerPort": 80, "hostPort": 8080}]}]
    ),
    "SYS_ADMIN": worker(capabilities={"add": ["SYS_ADMIN"]}),
    "CHOWN": worker(capabilities={"add": ["CHOWN"]}),
    "privilege escalation": worker(allowPrivilegeEscalation=True),
    "root user": worker(runAsUser=0),
    "runAsNonRoot false": spec(securityContext={"runAsNonRoot": False}),
    "seccomp Unconfined": worker(seccompProfile={"type": "Unconfined"}),
    "nfs volume": spec(volumes=[{"name": "n", "nfs": {"server": "s", "path": "/"}}]),
    "unsafe sysctl": spec(securityContext={"sysctls": [{"name": "kernel.msgmax", "value": "1"}]}),
    "SELinux spc_t": worker(seLinuxOptions={"type": "spc_t"}),
    "bare sidecar": spec(containers=[{"name": "proxy", "image": "envoy"}]),
}


@pytest.fixture(scope="module")
def enforcing(api_client: Any) -> Iterator[dict[Level, str]]:
    """A namespace per level, enforcing it (Pod Security admission, latest version)."""
    core: Any = k8s_client.CoreV1Api(api_client)
    names: dict[Level, str] = {}
    for level in ("baseline", "restricted"):
        name = f"pss-{level}-{uuid.uuid4().hex[:6]}"
        labels = {"pod-security.kubernetes.io/enforce": level}
        core.create_namespace({"metadata": {"name": name, "labels": labels}})
        names[level] = name
    yield names
    for name in names.values():
        core.delete_namespace(name)


def admitted(api_client: Any, namespace: str, template: Template) -> bool:
    core: Any = k8s_client.CoreV1Api(api_client)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "dry-", **template["metadata"]},
        "spec": template["spec"],
    }
    try:
        core.create_namespaced_pod(namespace, pod, dry_run="All")
    except ApiException as error:
        if error.status == 403 and "violates PodSecurity" in (error.body or ""):
            return False
        raise
    return True


@pytest.mark.parametrize("level", ["baseline", "restricted"])
@pytest.mark.parametrize("name", list(TEMPLATES))
def test_check_agrees_with_the_api_servers_admission(
    api_client: Any, enforcing: dict[Level, str], level: Level, name: str
) -> None:
    template = TEMPLATES[name]()
    violations = check(template, level)
    assert admitted(api_client, enforcing[level], template) is (not violations), violations


def test_the_operators_defaults_pass_restricted(
    api_client: Any, enforcing: dict[Level, str]
) -> None:
    assert admitted(api_client, enforcing["restricted"], generated())
