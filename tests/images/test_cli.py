"""Both images run: their CLIs answer `--help` and `--version`, they run as uid 10001, carry the
OCI labels of this version, and the operator exits 2 with one line on a bad configuration."""

from __future__ import annotations

import pytest

from localstack import podman

from .conftest import project_version, run_image

pytestmark = pytest.mark.timeout(1800)  # the first build of a session may include the base


@pytest.mark.parametrize(
    ("target", "cli"), [("worker", "flowable-worker"), ("operator", "flowable-worker-operator")]
)
def test_each_image_answers_help_and_version(
    built_images: dict[str, str], target: str, cli: str
) -> None:
    image = built_images[target]

    helped = run_image(image, "--help")
    versioned = run_image(image, "--version")

    assert helped.returncode == 0, helped.stderr
    assert f"usage: {cli}" in helped.stdout
    assert versioned.returncode == 0, versioned.stderr
    assert versioned.stdout.strip() == f"{cli} {project_version()}"


@pytest.mark.parametrize("target", ["worker", "operator"])
def test_each_image_is_tagged_and_labelled_with_the_version_and_runs_as_10001(
    built_images: dict[str, str], target: str
) -> None:
    image = built_images[target]
    version = project_version()
    config = podman.image_config(image)

    assert image.endswith(f"/{target}:{version}")
    assert config["User"] == "10001"
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == version
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.title"].startswith("flowable-worker")
    assert "org.opencontainers.image.source" in labels
    ran = run_image(image, "-c", "import os; print(os.getuid())", entrypoint="python3")
    assert ran.stdout.strip() == "10001", ran.stderr


def test_the_worker_image_carries_no_operator_dependencies(worker_image: str) -> None:
    probe = "import importlib.util as u; print(u.find_spec('kopf'), u.find_spec('kubernetes'))"

    ran = run_image(worker_image, "-c", probe, entrypoint="python3")

    assert ran.stdout.split() == ["None", "None"], ran.stderr


def test_the_operator_image_exits_2_with_one_line_on_a_bad_setting(operator_image: str) -> None:
    ran = run_image(operator_image, "--metrics-port", "99999")

    assert ran.returncode == 2
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1, ran.stderr
    assert "--metrics-port" in lines[0]


def test_the_operator_image_without_a_cluster_exits_2_with_one_line(operator_image: str) -> None:
    """Started as in a pod without a service account: it reads its config, finds no
    credentials, and says so in one line instead of a traceback."""
    ran = run_image(operator_image, "--metrics-port", "0")

    assert ran.returncode == 2
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1, ran.stderr
    assert "no Kubernetes credentials" in lines[0]


def test_the_worker_image_exits_2_on_a_handler_it_cannot_import(worker_image: str) -> None:
    ran = podman.podman(
        "run", "--rm", "--pull", "never", "--network", "host",
        "--env", "FLOWABLE_URL=http://127.0.0.1:9", "--env", "FLOWABLE_TOPIC=t",
        "--env", "FLOWABLE_WORKER_HANDLER=no_such_module:check", worker_image,
        timeout=120, check=False,
    )  # fmt: skip

    assert ran.returncode == 2, ran.stderr
    assert "no_such_module" in ran.stderr


def test_the_handler_image_holds_the_handler_and_its_dependency(handler_image: str) -> None:
    probe = "import invoices.handlers, stdnum, os; print(invoices.handlers.check.__name__)"

    ran = run_image(handler_image, "-c", probe, entrypoint="python3")

    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "check"
    assert podman.image_config(handler_image)["User"] == "10001"
