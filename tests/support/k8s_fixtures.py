"""Fixtures for the local Kubernetes control plane (see docs/local-cluster.md).

Registered for every suite by tests/conftest.py (`pytest_plugins`), so tests/cluster and tests/e2e
share one cluster per session; a suite that never asks for them never boots one.

One cluster per test session: booting costs seconds, and the tests isolate themselves by
namespace. A missing binary fails the session loudly with what to run; these tests never skip,
because a skipped suite would let a broken cluster go unnoticed in CI.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from localstack.cluster import LocalCluster, MissingPrerequisiteError, find_bin_dir, pid_alive
from localstack.podrunner import PodRunner
from tests.support.waiting import poll_until


@pytest.fixture(scope="session")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[LocalCluster]:
    try:
        bin_dir = find_bin_dir()
    except MissingPrerequisiteError as exc:
        pytest.fail(str(exc), pytrace=False)
    local = LocalCluster(bin_dir=bin_dir, workdir=tmp_path_factory.mktemp("cluster"))
    local.start()
    _report(pytestconfig, f"local cluster ready in {local.ready_seconds:.1f}s ({local.workdir})")
    yield local
    pids = local.pids()
    local.stop()
    left = {name: pid for name, pid in pids.items() if pid_alive(pid)}
    assert not left, f"control-plane processes survived teardown: {left}"


def _report(config: pytest.Config, line: str) -> None:
    """Show a line in the terminal even though output is captured during fixture setup."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(f"\n{line}")


@pytest.fixture(scope="session")
def podrunner(cluster: LocalCluster) -> Iterator[PodRunner]:
    runner = PodRunner(cluster.kubeconfig, cluster.workdir / "pods")
    runner.start()
    yield runner
    runner.stop(grace_cap=5)
    left = [p.key for p in runner.processes() if pid_alive(p.pid)]
    assert not left, f"pod processes survived teardown: {left}"


@pytest.fixture(scope="session")
def api_client(cluster: LocalCluster) -> Iterator[Any]:
    api = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(cluster.kubeconfig)
    )
    yield api
    api.close()


@pytest.fixture
def namespace(api_client: Any) -> Iterator[str]:
    """A fresh namespace per test; deleted afterwards (pods in it get SIGTERM via the runner)."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    core = k8s_client.CoreV1Api(api_client)
    core.create_namespace(k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name=name)))
    # ServiceAccount admission rejects pods until the controller manager made "default".
    poll_until(lambda: _has_default_sa(core, name), timeout=30)
    yield name
    core.delete_namespace(name)


def _has_default_sa(core: Any, namespace: str) -> bool:
    names = {sa.metadata.name for sa in core.list_namespaced_service_account(namespace).items}
    return "default" in names
