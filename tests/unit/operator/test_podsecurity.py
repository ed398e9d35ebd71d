"""The Pod Security Standards on worker pod templates, table-driven.

Each row changes the operator's own worker pod template (restricted as built) in one way and
names the lowest level that refuses it and the field the violation names. Below that level the
change passes; `privileged` passes everything.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from flowable_worker_operator.manifests import build_deployment
from flowable_worker_operator.podsecurity import LEVELS, Level, check
from flowable_worker_operator.spec import parse_pool

Template = dict[str, Any]


def generated(template: Template | None = None) -> Template:
    """The pod template the operator builds for a pool with `template` (PodTemplateSpec)."""
    pool = parse_pool(
        {
            "metadata": {"name": "inv", "namespace": "billing", "uid": "u", "generation": 1},
            "spec": {
                "engine": {"url": "http://flowable:8080"},
                "topic": "invoices",
                "worker": {"handler": {"python": "h:check"}, "template": template or {}},
            },
        }
    )
    built: Template = build_deployment(pool, default_image="img", replicas=1)["spec"]["template"]
    return built


def pod(**fields: Any) -> Template:
    return generated({"spec": fields})


def worker(**security: Any) -> Template:
    return pod(containers=[{"name": "worker", "securityContext": security}])


def sidecar(**fields: Any) -> Template:
    return pod(containers=[{"name": "proxy", "image": "envoy", **fields}])


RESTRICTED_SIDECAR = {
    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
}


APPARMOR = "container.apparmor.security.beta.kubernetes.io/worker"


def with_annotation(key: str, value: str) -> Template:
    return generated({"metadata": {"annotations": {key: value}}})


CASES: list[tuple[str, Callable[[], Template], Level | None, str]] = [
    # (what, template, lowest level refusing it or None, field named)
    ("the operator's defaults", generated, None, ""),
    ("privileged worker", lambda: worker(privileged=True), "baseline",
     "spec.containers[worker].securityContext.privileged"),
    ("privileged init container",
     lambda: pod(initContainers=[{"name": "init", "securityContext": {"privileged": True}}]),
     "baseline", "spec.initContainers[init].securityContext.privileged"),
    ("hostNetwork", lambda: pod(hostNetwork=True), "baseline", "spec.hostNetwork"),
    ("hostPID", lambda: pod(hostPID=True), "baseline", "spec.hostPID"),
    ("hostIPC", lambda: pod(hostIPC=True), "baseline", "spec.hostIPC"),
    ("hostPath volume", lambda: pod(volumes=[{"name": "root", "hostPath": {"path": "/"}}]),
     "baseline", "spec.volumes[root].hostPath"),
    ("hostPort",
     lambda: pod(containers=[{"name": "worker", "ports": [{"containerPort": 80, "hostPort": 80}]}]),
     "baseline", "spec.containers[worker].ports[0].hostPort"),
    ("SYS_ADMIN", lambda: worker(capabilities={"add": ["SYS_ADMIN"]}), "baseline",
     "spec.containers[worker].securityContext.capabilities.add[SYS_ADMIN]"),
    ("CHOWN (baseline's list, not restricted's)", lambda: worker(capabilities={"add": ["CHOWN"]}),
     "restricted", "spec.containers[worker].securityContext.capabilities.add[CHOWN]"),
    ("NET_BIND_SERVICE", lambda: worker(capabilities={"add": ["NET_BIND_SERVICE"]}), None, ""),
    ("capabilities not dropped", lambda: worker(capabilities={"drop": ["NET_RAW"]}), "restricted",
     "spec.containers[worker].securityContext.capabilities.drop"),
    ("privilege escalation", lambda: worker(allowPrivilegeEscalation=True), "restricted",
     "spec.containers[worker].securityContext.allowPrivilegeEscalation"),
    ("runAsNonRoot false on the pod", lambda: pod(securityContext={"runAsNonRoot": False}),
     "restricted", "spec.securityContext.runAsNonRoot"),
    ("runAsNonRoot false on the worker", lambda: worker(runAsNonRoot=False), "restricted",
     "spec.containers[worker].securityContext.runAsNonRoot"),
    ("root user on the pod", lambda: pod(securityContext={"runAsUser": 0}), "restricted",
     "spec.securityContext.runAsUser"),
    ("root user on the worker", lambda: worker(runAsUser=0), "restricted",
     "spec.containers[worker].securityContext.runAsUser"),
    ("a non-root uid", lambda: worker(runAsUser=10001), None, ""),
    ("seccomp Unconfined", lambda: worker(seccompProfile={"type": "Unconfined"}), "baseline",
     "spec.containers[worker].securityContext.seccompProfile.type"),
    ("seccomp Unconfined on the pod",
     lambda: pod(securityContext={"seccompProfile": {"type": "Unconfined"}}), "baseline",
     "spec.securityContext.seccompProfile.type"),
    ("seccomp Localhost",
     lambda: worker(seccompProfile={"type": "Localhost", "localhostProfile": "p"}), None, ""),
    ("nfs volume", lambda: pod(volumes=[{"name": "share", "nfs": {"server": "s", "path": "/"}}]),
     "restricted", "spec.volumes[share].nfs"),
    ("allowed volume types", lambda: pod(volumes=[
        {"name": "c", "configMap": {"name": "c"}}, {"name": "s", "secret": {"secretName": "s"}},
        {"name": "p", "persistentVolumeClaim": {"claimName": "p"}},
        {"name": "d", "downwardAPI": {}},
        {"name": "pr", "projected": {"sources": []}}, {"name": "e", "emptyDir": {}},
    ]), None, ""),
    ("procMount Unmasked", lambda: worker(procMount="Unmasked"), "baseline",
     "spec.containers[worker].securityContext.procMount"),
    ("an unsafe sysctl",
     lambda: pod(securityContext={"sysctls": [{"name": "kernel.msgmax", "value": "1"}]}),
     "baseline", "spec.securityContext.sysctls[kernel.msgmax]"),
    ("a safe sysctl",
     lambda: pod(securityContext={"sysctls": [{"name": "net.ipv4.tcp_syncookies", "value": "1"}]}),
     None, ""),
    ("AppArmor unconfined (annotation)",
     lambda: with_annotation(APPARMOR, "unconfined"), "baseline",
     f"metadata.annotations[{APPARMOR}]"),
    ("AppArmor runtime/default (annotation)",
     lambda: with_annotation(APPARMOR, "runtime/default"), None, ""),
    ("AppArmor Unconfined (field)", lambda: worker(appArmorProfile={"type": "Unconfined"}),
     "baseline", "spec.containers[worker].securityContext.appArmorProfile.type"),
    ("SELinux type spc_t", lambda: worker(seLinuxOptions={"type": "spc_t"}), "baseline",
     "spec.containers[worker].securityContext.seLinuxOptions.type"),
    ("SELinux user", lambda: pod(securityContext={"seLinuxOptions": {"user": "system_u"}}),
     "baseline", "spec.securityContext.seLinuxOptions.user"),
    ("SELinux level only", lambda: worker(seLinuxOptions={"level": "s0:c1,c2"}), None, ""),
    ("Windows HostProcess", lambda: worker(windowsOptions={"hostProcess": True}), "baseline",
     "spec.containers[worker].securityContext.windowsOptions.hostProcess"),
    ("a sidecar without a security context", lambda: sidecar(), "restricted",
     "spec.containers[proxy].securityContext.allowPrivilegeEscalation"),
    ("a restricted sidecar (the pod's runAsNonRoot and seccomp apply)",
     lambda: sidecar(**RESTRICTED_SIDECAR), None, ""),
    ("a privileged sidecar", lambda: sidecar(securityContext={"privileged": True}), "baseline",
     "spec.containers[proxy].securityContext.privileged"),
    ("no seccomp anywhere",
     lambda: _without_pod_seccomp(generated()), "restricted",
     "spec.containers[worker].securityContext.seccompProfile.type"),
    ("another service account and its token (not a Pod Security rule)",
     lambda: pod(serviceAccountName="admin", automountServiceAccountToken=True), None, ""),
]  # fmt: skip


def _without_pod_seccomp(template: Template) -> Template:
    changed = copy.deepcopy(template)
    del changed["spec"]["securityContext"]["seccompProfile"]
    return changed


def _refuses(level: Level, lowest: Level | None) -> bool:
    order = LEVELS.index
    return lowest is not None and order(level) >= order(lowest)


@pytest.mark.parametrize(("what", "template", "lowest", "field"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("level", LEVELS)
def test_pod_security_rules(
    what: str, template: Callable[[], Template], lowest: Level | None, field: str, level: Level
) -> None:
    fields = [v.field for v in check(template(), level)]
    if _refuses(level, lowest):
        assert field in fields, what
    else:
        assert fields == [], what


def test_each_violation_says_which_field_and_why() -> None:
    (violation,) = check(pod(hostNetwork=True), "baseline")
    assert str(violation) == "spec.hostNetwork: host namespaces are not allowed"


def test_violations_are_listed_once_each_in_a_stable_order() -> None:
    template = pod(
        hostPID=True, hostNetwork=True, volumes=[{"name": "h", "hostPath": {"path": "/"}}]
    )
    first = check(template, "restricted")
    assert first == check(template, "restricted")
    assert [v.field for v in first] == [
        "spec.hostNetwork",
        "spec.hostPID",
        "spec.volumes[h].hostPath",
    ]
