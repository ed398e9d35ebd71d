"""The base image is made once per machine: a podman store without it (a new store, or after
`podman rmi`) gets it back from the tarball cached in $FWO_CACHE, in seconds, not by another
debootstrap."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from localstack import podman


@pytest.fixture
def empty_store(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a podman with a store of its own, empty; emptied again afterwards."""
    conf = tmp_path / "storage.conf"
    conf.write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{tmp_path / "store"}"\n'
        f'runroot = "{tmp_path / "run"}"\n'
    )
    env = podman.podman_env({**os.environ, "CONTAINERS_STORAGE_CONF": str(conf)})
    yield env
    subprocess.run(["podman", "rmi", "--all", "--force"], env=env, capture_output=True, check=False)


def test_a_store_without_the_base_gets_it_from_the_cached_tarball(
    built_images: dict[str, str], empty_store: dict[str, str]
) -> None:
    started = time.monotonic()
    made = subprocess.run(
        ["bash", str(podman.IMAGES_DIR / "base.sh")],
        env=empty_store,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    took = time.monotonic() - started

    assert made.returncode == 0, made.stderr
    assert "debootstrap" not in made.stderr
    assert "imported in" in made.stderr
    assert made.stdout.strip() == podman.base_image()  # the same reference as the real store's
    assert took < 60
    listed = subprocess.run(
        ["podman", "images", "--format", "{{.Repository}}:{{.Tag}}"],
        env=empty_store,
        capture_output=True,
        text=True,
        check=True,
    )
    assert listed.stdout.split() == [made.stdout.strip()]
