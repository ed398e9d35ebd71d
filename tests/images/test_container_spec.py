"""How a pod's container becomes `podman create` arguments (localstack/podcontainer.py): the
kubelet's rules for command/args, users and the security context, without running anything."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client as k8s_client

from localstack.podcontainer import ContainerConfigError, container_spec, pick_container

IMAGE_AS_10001 = {"User": "10001", "Entrypoint": ["flowable-worker"]}


def _pod(container: dict[str, Any], **spec: Any) -> Any:
    """A V1Pod as the watch hands it to the runner (the client's own models)."""
    api = k8s_client.ApiClient()
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p-1", "namespace": "ns", "uid": "u-1"},
        "spec": {"containers": [{"name": "worker", "image": "img:1", **container}], **spec},
    }
    return api.deserialize(json.dumps(body), "V1Pod", "application/json")


def _spec(pod: Any, env: dict[str, str] | None = None, image: dict[str, Any] | None = None) -> Any:
    return container_spec(pod, pick_container(pod), env or {}, image or IMAGE_AS_10001)


def test_command_replaces_the_entrypoint_and_args_follow_the_image_with_expansion() -> None:
    spec = _spec(_pod({"command": ["run", "$(A)"], "args": ["--x=$(A)", "$$(A)"]}), {"A": "1"})

    args = spec.create_args()

    assert args[args.index("--entrypoint") + 1] == '["run", "1"]'
    assert args[-3:] == ["img:1", "--x=1", "$(A)"]


def test_without_command_or_args_the_image_decides() -> None:
    args = _spec(_pod({})).create_args()

    assert "--entrypoint" not in args
    assert args[-1] == "img:1"


def test_the_security_context_becomes_podman_flags() -> None:
    pod = _pod(
        {
            "securityContext": {
                "readOnlyRootFilesystem": True,
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                "runAsGroup": 3000,
            }
        },
        securityContext={"runAsUser": 2000, "runAsNonRoot": True},
    )

    args = _spec(pod).create_args()

    assert args[args.index("--user") + 1] == "2000:3000"
    assert {"--read-only", "--read-only-tmpfs=false", "--cap-drop=ALL"} <= set(args)
    assert "--cap-add=NET_BIND_SERVICE" in args
    assert args[args.index("--security-opt") + 1] == "no-new-privileges"
    assert args[args.index("--pull") + 1] == "never"
    assert args[args.index("--hostname") + 1] == "p-1"


def test_the_image_user_serves_run_as_non_root_when_it_is_a_numeric_non_root_uid() -> None:
    spec = _spec(_pod({}, securityContext={"runAsNonRoot": True}))

    assert spec.user is None  # podman keeps the image's USER 10001


@pytest.mark.parametrize(
    ("image_user", "pod_user", "message"),
    [
        ("", None, "will run as root"),
        ("root", None, "will run as root"),
        ("worker", None, "non-numeric user (worker)"),
        ("10001", 0, "runAsUser 0 breaks the runAsNonRoot policy"),
    ],
)
def test_run_as_non_root_refuses_what_the_kubelet_refuses(
    image_user: str, pod_user: int | None, message: str
) -> None:
    context: dict[str, Any] = {"runAsNonRoot": True}
    if pod_user is not None:
        context["runAsUser"] = pod_user
    pod = _pod({}, securityContext=context)

    with pytest.raises(ContainerConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _spec(pod, image={"User": image_user})


def test_the_worker_container_is_chosen_among_several_and_env_and_labels_carry_over() -> None:
    pod = _pod({})
    pod.spec.containers.insert(0, k8s_client.V1Container(name="sidecar", image="side:1"))

    spec = _spec(pod, {"K": "v"})

    assert spec.image == "img:1"
    assert spec.env == {"HOSTNAME": "p-1", "K": "v"}
    assert spec.labels["localstack.flowable-worker.io/pod-uid"] == "u-1"
    assert spec.name == "pod-ns-p-1"
