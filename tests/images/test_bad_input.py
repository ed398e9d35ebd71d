"""What goes wrong says what went wrong, in one line, at once: podman missing where it cannot be
installed, a base image whose debootstrap fails. (An image missing for a pod:
test_pods_as_containers.py.)"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from localstack import podman


def _script(name: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/bash", str(podman.IMAGES_DIR / name)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_podman_missing_and_not_installable_is_one_line_naming_the_packages(
    tmp_path: Path,
) -> None:
    # A PATH with the few tools the script needs besides podman, and no apt-get to install it.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "id"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)

    result = _script("podman.sh", {"PATH": str(bin_dir), "HOME": str(tmp_path)}, timeout=30)

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: podman runc debootstrap not found and cannot be installed here (needs root and "
        "apt-get): install the packages podman runc debootstrap"
    ]


def test_a_failing_base_build_stops_with_one_line_naming_the_step_and_its_log(
    tmp_path: Path,
) -> None:
    # A mirror nobody serves (a closed loopback port): debootstrap fails at its first download.
    mirror = "http://127.0.0.1:9/debian"
    env = {**os.environ, "FWO_CACHE": str(tmp_path), "FWO_DEBIAN_MIRROR": mirror}

    result = _script("base.sh", env, timeout=120)

    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: debootstrap of the base image (bookworm from {mirror}) failed")
    assert str(tmp_path / "images" / "debootstrap.log") in last
    assert not list((tmp_path / "images").glob("base-*.tar")), "a failed base left a tarball"
