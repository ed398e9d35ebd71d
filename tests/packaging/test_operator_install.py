"""The operator image's install, proven without Docker.

The Dockerfile's `operator` target runs `pip install "/src[operator]"`: the distribution WITH the
operator extra. These tests run that same install into a fresh virtual environment and check that
the installed `flowable-worker-operator` answers its help and rejects a bad setting the way a pod's
log should show it: exit code 2 and one line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# The minimal-environment runner of the worker's install tests: same rules for both images.
from tests.packaging.images import REPO_ROOT, fresh_venv, run

OPERATOR_CLI = "flowable-worker-operator"


@pytest.fixture(scope="module")
def operator_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding `pip install "<repo>[operator]"`, as the operator image does."""
    return fresh_venv(tmp_path_factory, "operator-image", f"{REPO_ROOT}[operator]")


def test_the_image_install_carries_the_operator_dependencies(operator_env: Path) -> None:
    probe = (
        "import importlib.util as u; "
        "print(*(u.find_spec(m) is not None for m in ('kopf', 'kubernetes', 'aiohttp')))"
    )

    result = run([str(operator_env / "bin" / "python"), "-c", probe])

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True", "True"]


def test_the_installed_cli_teaches_its_options(operator_env: Path) -> None:
    result = run([str(operator_env / "bin" / OPERATOR_CLI), "--help"])

    assert result.returncode == 0, result.stderr
    for name in ("--namespace", "--all-namespaces", "--worker-image", "FLOWABLE_OPERATOR_"):
        assert name in result.stdout


def test_the_installed_cli_rejects_a_bad_flag_value_with_exit_2_and_one_line(
    operator_env: Path,
) -> None:
    result = run([str(operator_env / "bin" / OPERATOR_CLI), "--metrics-port", "99999"])

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "--metrics-port" in lines[0]
    assert "99999" in lines[0]


def test_the_installed_cli_rejects_a_bad_environment_value_with_exit_2_and_one_line(
    operator_env: Path,
) -> None:
    result = run(
        [str(operator_env / "bin" / OPERATOR_CLI)], FLOWABLE_OPERATOR_METRICS_PORT="eighty"
    )

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "FLOWABLE_OPERATOR_METRICS_PORT" in lines[0]


def test_the_installed_cli_without_any_cluster_exits_2_with_one_line(
    operator_env: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-kubeconfig"
    result = run(
        [str(operator_env / "bin" / OPERATOR_CLI), "--metrics-port", "0"],
        KUBECONFIG=str(missing),
    )

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "no Kubernetes credentials" in lines[0]
    assert str(missing) in lines[0]
