"""The worker image's install, proven without Docker.

The Dockerfile's `worker` target installs the distribution without the `operator` extra; these
tests run that same `pip install` into a fresh virtual environment and check that the worker works
there and that nothing it imports needs kopf or kubernetes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.packaging.images import REPO_ROOT, fresh_venv, run


@pytest.fixture(scope="module")
def worker_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding `pip install <repo>` (no extras), as the image does."""
    return fresh_venv(tmp_path_factory, "worker-image", str(REPO_ROOT))


def test_the_image_install_has_no_operator_dependencies(worker_env: Path) -> None:
    probe = "import importlib.util as u; print(u.find_spec('kopf'), u.find_spec('kubernetes'))"

    result = run([str(worker_env / "bin" / "python"), "-c", probe])

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["None", "None"]


def test_the_installed_cli_teaches_its_options(worker_env: Path) -> None:
    result = run([str(worker_env / "bin" / "flowable-worker"), "--help"])

    assert result.returncode == 0, result.stderr
    for name in ("--flowable-url", "FLOWABLE_URL", "--topic", "FLOWABLE_TOPIC", "--grace-period"):
        assert name in result.stdout


def test_the_installed_cli_rejects_a_missing_url_with_exit_2_and_one_line(
    worker_env: Path,
) -> None:
    result = run([str(worker_env / "bin" / "flowable-worker")], FLOWABLE_TOPIC="t")

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "FLOWABLE_URL" in lines[0]


def test_importing_the_worker_loads_neither_kopf_nor_kubernetes() -> None:
    """Even where the operator extra is installed (this dev venv), the worker never imports it."""
    probe = (
        "import sys, flowable_worker, flowable_worker.cli, flowable_worker.runtime; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('kopf', 'kubernetes')))"
    )

    result = run([sys.executable, "-c", probe])

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
