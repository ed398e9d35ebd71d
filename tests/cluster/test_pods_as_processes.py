"""A Deployment's pods run as local processes and get SIGTERM when scaled away."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client

from localstack.cluster import LocalCluster, pid_alive
from localstack.podrunner import RUN_AS_PROCESS_LABEL, PodProcess, PodRunner
from tests.support.waiting import poll_until

pytestmark = pytest.mark.cluster

# The "container": writes a start marker with the env it got, and a sigterm marker on SIGTERM.
WORKER = r"""
import json, os, pathlib, signal, sys, time
markers = pathlib.Path(os.environ["MARKER_DIR"])
name = os.environ["POD_NAME"]
def on_term(signum, frame):
    (markers / (name + ".sigterm")).write_text(str(os.getpid()))
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
keys = ["POD_NAME", "POD_NAMESPACE", "FROM_SECRET", "FROM_CONFIGMAP", "PLAIN", "EXPANDED",
        "HOSTNAME"]
(markers / (name + ".started")).write_text(json.dumps({k: os.environ.get(k) for k in keys}))
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


def _deployment(name: str, markers: Path) -> dict[str, Any]:
    labels = {"app": name, RUN_AS_PROCESS_LABEL: "true"}
    env = [
        {"name": "MARKER_DIR", "value": str(markers)},
        {"name": "PLAIN", "value": "plain-value"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {
            "name": "FROM_SECRET",
            "valueFrom": {"secretKeyRef": {"name": "worker-secret", "key": "token"}},
        },
        {
            "name": "FROM_CONFIGMAP",
            "valueFrom": {"configMapKeyRef": {"name": "worker-config", "key": "topic"}},
        },
        {"name": "EXPANDED", "value": "$(PLAIN)-and-$(POD_NAME)"},
    ]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 10,
                    "containers": [
                        {
                            "name": "worker",
                            "image": "example.invalid/not-pulled:1",
                            "command": [sys.executable, "-c", WORKER],
                            "env": env,
                        }
                    ],
                },
            },
        },
    }


def _running_pods(core: Any, namespace: str, app: str) -> list[str]:
    pods = core.list_namespaced_pod(namespace, label_selector=f"app={app}").items
    return sorted(
        p.metadata.name
        for p in pods
        if p.status.phase == "Running" and p.metadata.deletion_timestamp is None
    )


def test_deployment_pods_become_processes_and_get_sigterm_on_scale_down(
    api_client: Any, podrunner: PodRunner, namespace: str, tmp_path: Path
) -> None:
    core = k8s_client.CoreV1Api(api_client)
    apps = k8s_client.AppsV1Api(api_client)
    markers = tmp_path / "markers"
    markers.mkdir()
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "worker-secret"}, "stringData": {"token": "s3cret"}}
    )
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "worker-config"}, "data": {"topic": "orders"}}
    )
    apps.create_namespaced_deployment(namespace, _deployment("worker", markers))

    apps.patch_namespaced_deployment_scale("worker", namespace, {"spec": {"replicas": 3}})
    pods = poll_until(
        lambda: (p := _running_pods(core, namespace, "worker")) and len(p) == 3 and p, timeout=60
    )
    procs = podrunner.wait_for(lambda _: len(podrunner.running(namespace)) == 3, timeout=30)
    assert sorted(p.name for p in podrunner.running(namespace)) == pods
    assert len(procs) >= 3
    poll_until(lambda: len(list(markers.glob("*.started"))) == 3, timeout=30)
    for pod in pods:
        seen = json.loads((markers / f"{pod}.started").read_text())
        assert seen == {
            "POD_NAME": pod,
            "POD_NAMESPACE": namespace,
            "FROM_SECRET": "s3cret",
            "FROM_CONFIGMAP": "orders",
            "PLAIN": "plain-value",
            "EXPANDED": f"plain-value-and-{pod}",
            "HOSTNAME": pod,
        }
        assert (podrunner.log_dir / f"{namespace}_{pod}.log").exists()

    apps.patch_namespaced_deployment_scale("worker", namespace, {"spec": {"replicas": 1}})
    podrunner.wait_for(lambda _: len(podrunner.running(namespace)) == 1, timeout=60)
    poll_until(lambda: len(_running_pods(core, namespace, "worker")) == 1, timeout=60)
    stopped = [p for p in podrunner.processes(namespace) if not p.running]
    assert len(stopped) == 2
    for proc in stopped:
        # Exited through its own SIGTERM handler, well inside the grace period.
        assert proc.returncode == 0, proc
        assert not proc.killed
        assert (markers / f"{proc.name}.sigterm").read_text() == str(proc.pid)
    (survivor,) = podrunner.running(namespace)
    assert not (markers / f"{survivor.name}.sigterm").exists()


def test_grace_period_is_enforced_with_sigkill(
    api_client: Any, podrunner: PodRunner, namespace: str
) -> None:
    """kwok drops a deleted pod at once; the process still gets its full grace period, then
    SIGKILL."""
    core = k8s_client.CoreV1Api(api_client)
    grace = 2
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "stubborn", "labels": {RUN_AS_PROCESS_LABEL: "true"}},
            "spec": {
                "terminationGracePeriodSeconds": grace,
                "containers": [
                    {
                        "name": "main",
                        "image": "example.invalid/x:1",
                        "command": [sys.executable, "-c", STUBBORN],
                    }
                ],
            },
        },
    )

    def started() -> list[PodProcess]:
        return [p for p in podrunner.running(namespace) if p.name == "stubborn"]

    (proc,) = poll_until(started, timeout=60)
    poll_until(lambda: "ignoring SIGTERM" in proc.log_path.read_text(), timeout=15)
    deleted_at = time.monotonic()
    core.delete_namespaced_pod("stubborn", namespace)
    podrunner.wait_for(lambda _: not proc.running, timeout=grace + 15)
    assert proc.killed
    assert proc.returncode == -9
    assert proc.exited_at is not None
    assert proc.exited_at - deleted_at >= grace - 0.2


def test_cli_runner_with_default_command_stops_its_processes(
    api_client: Any, cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    """``python -m localstack.podrunner`` as the demo runs it: one namespace, a container without
    ``command`` runs the default command with the container's args, and SIGTERM to the runner
    stops the pod's process too."""
    core = k8s_client.CoreV1Api(api_client)
    marker = tmp_path / "cli-marker"
    script = "import os, pathlib, sys, time; pathlib.Path(sys.argv[1]).write_text(str(os.getpid()))"
    script += "\nwhile True: time.sleep(0.1)"
    selector = f"{RUN_AS_PROCESS_LABEL}=cli"  # the session runner (=true) leaves this pod alone
    runner = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "localstack.podrunner",
            "--kubeconfig",
            str(cluster.kubeconfig),
            "--log-dir",
            str(tmp_path / "logs"),
            "--namespace",
            namespace,
            "--selector",
            selector,
            "--default-command",
            shlex.join([sys.executable, "-c", script]),
        ],
        cwd=Path(__file__).parents[2],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "runner.err").open("wb"),
    )
    try:
        core.create_namespaced_pod(
            namespace,
            {
                "metadata": {"name": "cli-pod", "labels": {RUN_AS_PROCESS_LABEL: "cli"}},
                "spec": {
                    "containers": [
                        {"name": "main", "image": "example.invalid/x:1", "args": [str(marker)]}
                    ]
                },
            },
        )
        poll_until(lambda: marker.exists() or runner.poll() is not None, timeout=60)
        assert runner.poll() is None, (tmp_path / "runner.err").read_text()
        pid = int(marker.read_text())
        assert pid_alive(pid)
        assert (tmp_path / "logs" / f"{namespace}_cli-pod.log").exists()
    finally:
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=30) == 0, (tmp_path / "runner.err").read_text()
    assert not pid_alive(pid)
