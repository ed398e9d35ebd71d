"""The Pod Security Standards (baseline, restricted) applied to a worker pod template, purely.

A pool's `worker.template` is merged into the worker pods field by field, so whoever may create a
pool may create any pod in its namespace: another `serviceAccountName`, a `hostPath` volume, a
privileged sidecar. That is the default (`--pod-security privileged`), as a Deployment's author
has the same power. An operator that serves less trusted namespaces can refuse templates outside
a standard (`--pod-security baseline` or `restricted`): the pool becomes `Ready=False`
(`PodSecurityViolation`) and nothing is created or scaled.

Checked on the pod template the operator would create (the pool's template merged over the
operator's defaults), so a template that only adds, say, `fsGroup` is judged with the defaults
that come with it. The rules are Kubernetes' (https://kubernetes.io/docs/concepts/security/
pod-security-standards/, as `pod-security.kubernetes.io/enforce` applies them at the latest
version), for the fields a pod template can set; a namespace's own Pod Security admission still
applies on top.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

__all__ = ["LEVELS", "Level", "Violation", "check"]

Level = Literal["privileged", "baseline", "restricted"]
LEVELS: tuple[Level, ...] = get_args(Level)

_BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
_RESTRICTED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
_SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
_SELINUX_TYPES = frozenset(
    {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)
_RESTRICTED_VOLUMES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
_SECCOMP_ALLOWED = frozenset({"RuntimeDefault", "Localhost"})
_APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"


@dataclass(frozen=True)
class Violation:
    """One field of the pod template outside the standard, and the rule it breaks."""

    field: str
    rule: str

    def __str__(self) -> str:
        return f"{self.field}: {self.rule}"


def check(template: Mapping[str, Any], level: Level) -> tuple[Violation, ...]:
    """The template's violations of `level` (none for `privileged`), in a stable order.

    `template` is a PodTemplateSpec (`metadata`, `spec`); fields are named from there, e.g.
    `spec.containers[proxy].securityContext.privileged`.
    """
    if level == "privileged":
        return ()
    found = list(_baseline(template))
    if level == "restricted":
        found += _restricted(template)
    return tuple(dict.fromkeys(found))


# --- helpers ------------------------------------------------------------------------------------


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every container (init and ephemeral too) with its field path."""
    for kind in ("initContainers", "containers", "ephemeralContainers"):
        for index, container in enumerate(_list(spec.get(kind))):
            container = _map(container)
            yield f"spec.{kind}[{container.get('name') or index}]", container


def _security_contexts(spec: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """The pod's securityContext and every container's, with their paths."""
    yield "spec.securityContext", _map(spec.get("securityContext"))
    for path, container in _containers(spec):
        yield f"{path}.securityContext", _map(container.get("securityContext"))


# --- baseline -----------------------------------------------------------------------------------


def _baseline(template: Mapping[str, Any]) -> Iterator[Violation]:
    spec = _map(template.get("spec"))
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field) is True:
            yield Violation(f"spec.{field}", "host namespaces are not allowed")
    for index, volume in enumerate(_list(spec.get("volumes"))):
        volume = _map(volume)
        if "hostPath" in volume:
            name = volume.get("name") or index
            yield Violation(f"spec.volumes[{name}].hostPath", "hostPath volumes are not allowed")
    for sysctl in _list(_map(spec.get("securityContext")).get("sysctls")):
        name = _map(sysctl).get("name")
        if name not in _SAFE_SYSCTLS:
            yield Violation(
                f"spec.securityContext.sysctls[{name}]", "only the safe sysctls are allowed"
            )
    for key, value in _map(_map(template.get("metadata")).get("annotations")).items():
        if key.startswith(_APPARMOR_ANNOTATION) and not (
            value == "runtime/default" or str(value).startswith("localhost/")
        ):
            yield Violation(
                f"metadata.annotations[{key}]",
                "AppArmor must be runtime/default or localhost/*",
            )
    for path, context in _security_contexts(spec):
        yield from _baseline_context(path, context)
    for path, container in _containers(spec):
        for index, port in enumerate(_list(container.get("ports"))):
            if _map(port).get("hostPort"):
                yield Violation(f"{path}.ports[{index}].hostPort", "host ports are not allowed")


def _baseline_context(path: str, context: Mapping[str, Any]) -> Iterator[Violation]:
    if context.get("privileged") is True:
        yield Violation(f"{path}.privileged", "privileged containers are not allowed")
    if _map(context.get("windowsOptions")).get("hostProcess") is True:
        yield Violation(f"{path}.windowsOptions.hostProcess", "Windows HostProcess is not allowed")
    for cap in _list(_map(context.get("capabilities")).get("add")):
        if cap not in _BASELINE_CAPABILITIES:
            yield Violation(f"{path}.capabilities.add[{cap}]", "this capability is not allowed")
    if context.get("procMount") not in (None, "Default"):
        yield Violation(f"{path}.procMount", "must be Default")
    if _map(context.get("seccompProfile")).get("type") == "Unconfined":
        yield Violation(f"{path}.seccompProfile.type", "Unconfined is not allowed")
    apparmor = _map(context.get("appArmorProfile")).get("type")
    if apparmor is not None and apparmor not in ("RuntimeDefault", "Localhost"):
        yield Violation(f"{path}.appArmorProfile.type", "must be RuntimeDefault or Localhost")
    selinux = _map(context.get("seLinuxOptions"))
    if selinux.get("type", "") not in _SELINUX_TYPES:
        yield Violation(f"{path}.seLinuxOptions.type", "this SELinux type is not allowed")
    for field in ("user", "role"):
        if selinux.get(field):
            yield Violation(f"{path}.seLinuxOptions.{field}", "must not be set")


# --- restricted ---------------------------------------------------------------------------------


def _restricted(template: Mapping[str, Any]) -> Iterator[Violation]:
    spec = _map(template.get("spec"))
    pod = _map(spec.get("securityContext"))
    for index, volume in enumerate(_list(spec.get("volumes"))):
        volume = _map(volume)
        kinds = [key for key in volume if key != "name"]
        for kind in kinds:
            if kind not in _RESTRICTED_VOLUMES and kind != "hostPath":  # hostPath: baseline's
                name = volume.get("name") or index
                yield Violation(f"spec.volumes[{name}].{kind}", "this volume type is not allowed")
    if pod.get("runAsUser") == 0:
        yield Violation("spec.securityContext.runAsUser", "must not be 0 (root)")
    pod_non_root = pod.get("runAsNonRoot") is True
    pod_seccomp = _map(pod.get("seccompProfile")).get("type") in _SECCOMP_ALLOWED
    for path, container in _containers(spec):
        context = _map(container.get("securityContext"))
        where = f"{path}.securityContext"
        if context.get("allowPrivilegeEscalation") is not False:
            yield Violation(f"{where}.allowPrivilegeEscalation", "must be false")
        drop = _list(_map(context.get("capabilities")).get("drop"))
        if "ALL" not in drop:
            yield Violation(f"{where}.capabilities.drop", "must include ALL")
        for cap in _list(_map(context.get("capabilities")).get("add")):
            if cap in _BASELINE_CAPABILITIES and cap not in _RESTRICTED_CAPABILITIES:
                yield Violation(
                    f"{where}.capabilities.add[{cap}]", "only NET_BIND_SERVICE may be added"
                )
        if context.get("runAsNonRoot") is False:
            yield Violation(f"{where}.runAsNonRoot", "must not be false")
        elif context.get("runAsNonRoot") is not True and not pod_non_root:
            yield Violation(
                f"{where}.runAsNonRoot", "must be true (here or in spec.securityContext)"
            )
        if context.get("runAsUser") == 0:
            yield Violation(f"{where}.runAsUser", "must not be 0 (root)")
        seccomp = _map(context.get("seccompProfile")).get("type")
        if seccomp is None and not pod_seccomp:
            yield Violation(
                f"{where}.seccompProfile.type",
                "must be RuntimeDefault or Localhost (here or in spec.securityContext)",
            )
        elif seccomp is not None and seccomp not in _SECCOMP_ALLOWED and seccomp != "Unconfined":
            yield Violation(f"{where}.seccompProfile.type", "must be RuntimeDefault or Localhost")
    if pod.get("runAsNonRoot") is False:
        yield Violation("spec.securityContext.runAsNonRoot", "must not be false")
    seccomp_pod = _map(pod.get("seccompProfile")).get("type")
    if seccomp_pod is not None and seccomp_pod not in _SECCOMP_ALLOWED | {"Unconfined"}:
        yield Violation(
            "spec.securityContext.seccompProfile.type", "must be RuntimeDefault or Localhost"
        )
