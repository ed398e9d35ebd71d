"""The pod runner's container mode: pods of the local cluster run as podman containers of the
image they name, with the pod spec honoured as a kubelet would where the tests rely on it."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from kubernetes import client as k8s_client

from localstack import podman
from localstack.podcontainer import POD_UID_LABEL
from localstack.podrunner import RUN_AS_CONTAINER_LABEL, PodProcess, PodRunner
from tests.support.waiting import poll_until

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]

# The "worker": reports who and where it runs, then waits for SIGTERM and says so.
PROBE = r"""
import json, os, signal, sys, time
def on_term(signum, frame):
    print("got SIGTERM", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
try:
    open("/written", "w")
    root = "writable"
except OSError as error:
    root = error.strerror
keys = ["PLAIN", "FROM_SECRET", "EXPANDED", "HOSTNAME", "POD_NAME"]
print("probe " + json.dumps({"uid": os.getuid(), "root": root, "argv": sys.argv[1:],
                             **{k: os.environ.get(k) for k in keys}}), flush=True)
while True:
    time.sleep(0.1)
"""

STUBBORN = r"""
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ignoring SIGTERM", flush=True)
while True:
    time.sleep(0.1)
"""


def _deployment(name: str, image: str, container: dict[str, Any], **pod: Any) -> dict[str, Any]:
    labels = {"app": name, RUN_AS_CONTAINER_LABEL: "true"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "worker", "image": image, **container}], **pod},
            },
        },
    }


def _apply(api_client: Any, namespace: str, body: Any) -> None:
    k8s_client.AppsV1Api(api_client).create_namespaced_deployment(namespace, body)


def _scale(api_client: Any, namespace: str, name: str, replicas: int) -> None:
    k8s_client.AppsV1Api(api_client).patch_namespaced_deployment_scale(
        name, namespace, {"spec": {"replicas": replicas}}
    )


def _one_running(runner: PodRunner, namespace: str) -> PodProcess:
    procs: list[PodProcess] = poll_until(lambda: runner.running(namespace), timeout=90)
    assert len(procs) == 1, procs
    return procs[0]


def _log_line(proc: PodProcess, prefix: str, timeout: float = 30) -> str:
    def line() -> str | None:
        text = proc.log_path.read_text(errors="replace") if proc.log_path.exists() else ""
        return next((x for x in text.splitlines() if x.startswith(prefix)), None)

    found: str = poll_until(line, timeout=timeout)
    return found


def test_a_pod_runs_as_a_container_with_its_command_env_secret_user_and_read_only_root(
    container_runner: PodRunner, api_client: Any, namespace: str, worker_image: str
) -> None:
    k8s_client.CoreV1Api(api_client).create_namespaced_secret(
        namespace,
        k8s_client.V1Secret(metadata={"name": "creds"}, string_data={"token": "s3cret"}),
    )
    container = {
        "command": ["python3", "-c", PROBE],
        "args": ["--from", "$(PLAIN)"],
        "env": [
            {"name": "PLAIN", "value": "plain-value"},
            {"name": "EXPANDED", "value": "x-$(PLAIN)"},
            {
                "name": "FROM_SECRET",
                "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}},
            },
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        "securityContext": {
            "runAsUser": 10002,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    _apply(
        api_client,
        namespace,
        _deployment("probe", worker_image, container, securityContext={"runAsNonRoot": True}),
    )

    proc = _one_running(container_runner, namespace)
    seen = json.loads(_log_line(proc, "probe ").removeprefix("probe "))
    inspected = podman.inspect_container(str(proc.container))

    assert seen == {
        "uid": 10002,
        "root": "Read-only file system",
        "argv": ["--from", "plain-value"],
        "PLAIN": "plain-value",
        "FROM_SECRET": "s3cret",
        "EXPANDED": "x-plain-value",
        "HOSTNAME": proc.name,
        "POD_NAME": proc.name,
    }
    assert inspected["HostConfig"]["ReadonlyRootfs"] is True
    assert inspected["Config"]["User"] == "10002"
    assert inspected["ImageName"] == worker_image
    logged = _log_line(proc, "# podrunner:")  # the command line, as logged: env values hidden
    assert "FROM_SECRET=…" in logged
    assert "s3cret" not in logged

    _scale(api_client, namespace, "probe", 0)
    poll_until(lambda: proc.returncode is not None, timeout=30)
    assert proc.returncode == 0
    assert not proc.killed
    assert "got SIGTERM" in proc.log_path.read_text()
    # Removed once it ended, as the kubelet removes a deleted pod's containers.
    poll_until(lambda: not podman.containers(f"{POD_UID_LABEL}={proc.uid}"), timeout=30)


def test_a_container_that_exits_is_restarted(
    container_runner: PodRunner, api_client: Any, namespace: str, worker_image: str
) -> None:
    container = {"command": ["python3", "-c", "print('run', flush=True); raise SystemExit(3)"]}
    _apply(api_client, namespace, _deployment("crashy", worker_image, container))

    def ran_three_times() -> list[PodProcess]:
        procs = container_runner.processes(namespace)
        return [p for p in procs if p.log_path.read_text().count("run\n") >= 3]

    (proc,) = poll_until(ran_three_times, timeout=60)

    assert proc.restarts >= 2
    assert proc.returncode in (None, 3)  # running again, or waiting out its back-off


def test_a_container_that_ignores_sigterm_is_killed_after_its_grace_period(
    container_runner: PodRunner, api_client: Any, namespace: str, worker_image: str
) -> None:
    container = {"command": ["python3", "-c", STUBBORN]}
    _apply(
        api_client,
        namespace,
        _deployment("stubborn", worker_image, container, terminationGracePeriodSeconds=2),
    )
    proc = _one_running(container_runner, namespace)
    _log_line(proc, "ignoring SIGTERM")

    started = time.monotonic()
    _scale(api_client, namespace, "stubborn", 0)
    poll_until(lambda: proc.returncode is not None, timeout=30)

    assert proc.killed
    assert proc.returncode == 137
    assert 1.5 < time.monotonic() - started < 15


def test_an_image_that_is_not_there_fails_at_once_naming_it(
    container_runner: PodRunner, api_client: Any, namespace: str
) -> None:
    image = "localhost/flowable-worker-operator/no-such-image:0"
    _apply(api_client, namespace, _deployment("ghost", image, {}))

    reasons: list[str] = poll_until(
        lambda: [r for r in container_runner.failures().values() if image in r], timeout=30
    )

    assert "not in podman's local store" in reasons[0]
    assert not container_runner.processes(namespace)


def test_run_as_non_root_refuses_an_image_that_runs_as_root(
    container_runner: PodRunner, api_client: Any, namespace: str
) -> None:
    root_image = podman.base_image()  # Debian's base: no USER, so root
    pod = {"securityContext": {"runAsNonRoot": True}}
    _apply(api_client, namespace, _deployment("rooty", root_image, {"command": ["true"]}, **pod))

    reasons: list[str] = poll_until(
        lambda: [r for r in container_runner.failures().values() if root_image in r], timeout=30
    )

    assert "runAsNonRoot" in reasons[0]
    assert "will run as root" in reasons[0]
