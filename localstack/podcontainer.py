"""A pod's container as a podman container: the part of the kubelet the pod runner's container
mode needs (see localstack/podrunner.py and docs/local-cluster.md).

Pure: it takes the pod (a kubernetes client model), the container's environment as the runner
already resolved it (``env``, ``envFrom``, ``valueFrom`` Secrets...) and the image's config from
``podman image inspect``, and returns a ``ContainerSpec``. Honoured as the kubelet does:

* ``command`` replaces the image's ENTRYPOINT (and drops its CMD), ``args`` replace its CMD; both
  with ``$(VAR)`` expansion;
* ``runAsUser``/``runAsGroup`` (container over pod), and ``runAsNonRoot``: refused when the user
  would be root, or when the image's USER is a name whose uid cannot be checked;
* ``readOnlyRootFilesystem`` (``--read-only``), ``allowPrivilegeEscalation: false``
  (no-new-privileges), ``capabilities`` drop/add; ``workingDir``; the pod name as host name.

What is not honoured (resources, probes, volumes, ports) is left out on purpose: host networking
and the host's resources serve the tests and the demo.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from localstack.podman import ContainerSpec

POD_UID_LABEL = "localstack.flowable-worker.io/pod-uid"
POD_LABEL = "localstack.flowable-worker.io/pod"
WORKER_CONTAINER = "worker"

_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")


class ContainerConfigError(Exception):
    """The container cannot be created as specified (the kubelet's CreateContainerConfigError)."""


def expand_vars(text: str, env: Mapping[str, str]) -> str:
    """The kubelet's ``$(VAR)`` expansion (unknown names stay as written; ``$$`` is a dollar)."""

    def repl(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR_REF.sub(repl, text)


def pick_container(pod: Any) -> Any:
    """The container to run: the one named ``worker`` (the operator's), else the first."""
    containers = list(pod.spec.containers)
    return next((c for c in containers if c.name == WORKER_CONTAINER), containers[0])


def container_name(namespace: str, pod: str) -> str:
    """A podman name per pod: unique across namespaces, readable in ``podman ps``."""
    return f"pod-{namespace}-{pod}"


def container_spec(
    pod: Any, container: Any, env: Mapping[str, str], image_config: Mapping[str, Any]
) -> ContainerSpec:
    """The ``ContainerSpec`` for ``container`` of ``pod``; ContainerConfigError when the
    security context cannot be met with this image."""
    namespace, name = str(pod.metadata.namespace), str(pod.metadata.name)
    command = [expand_vars(a, env) for a in container.command] if container.command else None
    args = [expand_vars(a, env) for a in container.args] if container.args else None
    pod_sc = pod.spec.security_context
    sc = container.security_context
    read_only = bool(_first(sc, pod_sc, "read_only_root_filesystem", pod_level=False))
    no_escalation = _first(sc, pod_sc, "allow_privilege_escalation", pod_level=False) is False
    caps = getattr(sc, "capabilities", None)
    return ContainerSpec(
        name=container_name(namespace, name),
        image=str(container.image),
        entrypoint=command,
        args=args,
        env={"HOSTNAME": name, **env},
        user=_user(container, sc, pod_sc, image_config),
        read_only=read_only,
        workdir=container.working_dir,
        hostname=name,
        no_new_privileges=no_escalation,
        cap_drop=list(getattr(caps, "drop", None) or []),
        cap_add=list(getattr(caps, "add", None) or []),
        labels={POD_UID_LABEL: str(pod.metadata.uid), POD_LABEL: f"{namespace}/{name}"},
    )


def _first(sc: Any, pod_sc: Any, field: str, *, pod_level: bool = True) -> Any:
    """A security setting: the container's, else (for fields the pod level has) the pod's."""
    value = getattr(sc, field, None) if sc is not None else None
    if value is None and pod_level and pod_sc is not None:
        value = getattr(pod_sc, field, None)
    return value


def _user(container: Any, sc: Any, pod_sc: Any, image_config: Mapping[str, Any]) -> str | None:
    """``--user`` from runAsUser/runAsGroup, after the kubelet's runAsNonRoot checks."""
    run_as_user = _first(sc, pod_sc, "run_as_user")
    run_as_group = _first(sc, pod_sc, "run_as_group")
    image_user = str(image_config.get("User") or "")
    if _first(sc, pod_sc, "run_as_non_root"):
        if run_as_user is not None:
            if int(run_as_user) == 0:
                raise ContainerConfigError(
                    f"container {container.name!r}: runAsUser 0 breaks the runAsNonRoot policy"
                )
        else:
            uid = image_user.split(":", 1)[0]
            if uid in ("", "0", "root"):
                raise ContainerConfigError(
                    f"container {container.name!r} has runAsNonRoot and image "
                    f"{container.image!r} will run as root"
                )
            if not uid.isdigit():
                raise ContainerConfigError(
                    f"container {container.name!r} has runAsNonRoot and image "
                    f"{container.image!r} has non-numeric user ({uid}), cannot verify user is "
                    "non-root"
                )
    if run_as_user is None and run_as_group is None:
        return None  # the image's USER
    uid_part = str(run_as_user) if run_as_user is not None else (image_user.split(":")[0] or "0")
    return uid_part if run_as_group is None else f"{uid_part}:{run_as_group}"
