"""The images for real: built with podman (`make images`), run as containers, and run as the
worker pods of a pool that the operator scales on the local cluster against the real Flowable.

Nothing here skips: podman missing and not installable, a base build that fails, or an image
build that fails each fail the session with the one line that says what went wrong (the scripts
in localstack/images write it). Builds are cached: `make images` reuses the base tarball in
$FWO_CACHE/images and podman's layer cache, so a rerun costs seconds.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from localstack import podman
from localstack.cluster import LocalCluster
from localstack.podrunner import PodRunner

# The pool CRD and the operator as a local process, as the e2e suite provides them.
from tests.e2e.conftest import crd, operator

__all__ = ["crd", "operator"]

HANDLER_IMAGE = "localhost/flowable-worker-operator/invoices-handler:test"


def project_version() -> str:
    """The version `make images` tags with (the same shell function reads it)."""
    script = f"source {podman.IMAGES_DIR / 'env.sh'} && fwo_version"
    return subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture(scope="session")
def built_images() -> dict[str, str]:
    """`make images`: both targets, by target name."""
    try:
        podman.ensure_podman()
        built = podman.build_images()
    except podman.PodmanError as error:
        pytest.fail(f"make images: {error}", pytrace=False)
    assert set(built) == {"worker", "operator"}, built
    return built


@pytest.fixture(scope="session")
def worker_image(built_images: dict[str, str]) -> str:
    return built_images["worker"]


@pytest.fixture(scope="session")
def operator_image(built_images: dict[str, str]) -> str:
    return built_images["operator"]


@pytest.fixture(scope="session")
def handler_image(worker_image: str) -> str:
    """examples/handler-image built on the worker image just built, as a user would build it."""
    try:
        return podman.build_handler_image(worker_image, HANDLER_IMAGE)
    except podman.PodmanError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="session")
def container_runner(cluster: LocalCluster, built_images: dict[str, str]) -> Iterator[PodRunner]:
    """Pods labelled run-as-container become podman containers; none may outlive the session."""
    runner = PodRunner(cluster.kubeconfig, cluster.workdir / "containers", containers=True)
    runner.start()
    yield runner
    runner.stop(grace_cap=5)
    left = [c["Names"] for c in podman.containers()]
    podman.remove_containers()
    assert not left, f"containers survived the pod runner: {left}"


def run_image(
    image: str, *args: str, entrypoint: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`podman run --rm` of ``image`` with ``args``: never pulls, bare environment."""
    argv = ["run", "--rm", "--pull", "never", "--network", "host"]
    if entrypoint is not None:
        argv += ["--entrypoint", entrypoint]
    return podman.podman(*argv, image, *args, timeout=120, check=False)
