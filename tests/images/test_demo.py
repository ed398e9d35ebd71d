"""`make demo DEMO_ARGS=--containers`: the README's main job with worker pods as containers of
the handler image, end to end, saying every invoice was checked once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(900)
def test_the_demo_with_containers_drains_its_backlog_and_cools_down_to_zero() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "localstack.demo",
            "--containers",
            "--jobs",
            "48",
            "--cooldown",
            "3",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    output = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 0, output[-4000:]
    assert (
        "worker pods will be containers of localhost/flowable-worker-operator/invoices-handler"
        in output
    )
    assert "all 48 invoices finished" in output
    assert "(one per invoice: True)" in output
    assert "event CooledDown" in output
