"""`make demo`, the README's main job, runs end to end and says every invoice was checked once."""

from __future__ import annotations

import subprocess
import sys

from .conftest import REPO


def test_the_demo_drains_its_backlog_and_cools_down_to_zero() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "localstack.demo", "--jobs", "48", "--cooldown", "3"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "all 48 invoices finished" in output
    assert "(one per invoice: True)" in " ".join(output.split())
    assert "event Activated" in output
    assert "event CooledDown" in output
