"""What both image tests share: a fresh venv holding one pip install of the repo, and a way to
run its commands with a container's bare environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def fresh_venv(tmp_path_factory: pytest.TempPathFactory, name: str, requirement: str) -> Path:
    """A new venv with `pip install <requirement>`, as the Dockerfile's target does."""
    venv = tmp_path_factory.mktemp(name) / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            requirement,
        ],
        check=True,
        timeout=600,
    )
    return venv


def run(command: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """Run with a minimal environment, as a container would (no FLOWABLE_* from the caller)."""
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp", **env}
    return subprocess.run(
        command, capture_output=True, text=True, env=clean, timeout=60, check=False
    )
