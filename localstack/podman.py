"""podman as the project runs it, from Python: configuration, image builds, containers.

Every podman call here uses the project's configuration in ``localstack/images`` (runc instead of
crun, no ulimit changes, no registry to search) through ``CONTAINERS_CONF`` and
``CONTAINERS_REGISTRIES_CONF``, never ``/etc``, and never pulls: no registry is reachable where the
tests run, so an image that is not in the local store is an error that names it, at once.

The shell scripts in ``localstack/images`` install podman, make the base image and build the
project's images (``make podman``, ``make images``); ``ensure_podman`` and ``build_images`` run
them and turn their one-line errors into exceptions.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
IMAGES_DIR = REPO / "localstack" / "images"
# examples/handler-image: the worker image plus `invoices.handlers:check`; the image tests and
# `make demo DEMO_ARGS=--containers` build it on the worker image `make images` built.
HANDLER_IMAGE_DIR = REPO / "examples" / "handler-image"
HANDLER_IMAGE = "localhost/flowable-worker-operator/invoices-handler:dev"
# The label every container started from here carries, so that a cleanup finds them all.
MANAGED_LABEL = "localstack.flowable-worker.io/managed"


class PodmanError(RuntimeError):
    """A podman command failed; the message is podman's own last line."""


class ImageNotFoundError(PodmanError):
    """The image is not in podman's local store (and nothing here pulls)."""


class PodmanUnavailableError(PodmanError):
    """podman is missing or cannot run here; the message says what to install or what failed."""


def podman_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a podman command: ``base`` (default: ours) plus the project's config."""
    env = dict(os.environ if base is None else base)
    env["CONTAINERS_CONF"] = str(IMAGES_DIR / "containers.conf")
    env["CONTAINERS_REGISTRIES_CONF"] = str(IMAGES_DIR / "registries.conf")
    return env


def podman(
    *args: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``podman args...``; raise PodmanError with podman's last line when it fails."""
    try:
        result = subprocess.run(
            ["podman", *args],
            env=podman_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise PodmanUnavailableError(
            "podman not found: run `make podman` (installs podman, runc and debootstrap)"
        ) from exc
    if check and result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise PodmanError(f"podman {args[0]} failed ({result.returncode}): {last}")
    return result


def _script(name: str, *args: str, timeout: float) -> str:
    """Run a script of localstack/images; return its stdout, or raise with its error line."""
    result = subprocess.run(
        ["bash", str(IMAGES_DIR / name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or ["(no output)"]
        errors = [line for line in lines if line.startswith("error:")]
        raise PodmanUnavailableError((errors or lines)[-1])
    return result.stdout


def ensure_podman() -> None:
    """Install podman, runc and debootstrap when missing (``make podman``), and check podman."""
    _script("podman.sh", timeout=900)


def build_images(*targets: str) -> dict[str, str]:
    """``make images`` for ``targets`` (default: both): the built references, by target."""
    out = _script("build.sh", *targets, timeout=1800)
    built: dict[str, str] = {}
    for line in out.splitlines():
        words = line.split()
        if len(words) > 1 and words[0] == "built":
            reference = words[1]
            built[reference.rsplit("/", 1)[-1].split(":", 1)[0]] = reference
    return built


HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def build_image(
    context: Path, tag: str, build_args: Mapping[str, str] | None = None, *, timeout: float = 900
) -> str:
    """``podman build`` of ``context``'s Dockerfile as ``tag``, the way build.sh builds: host
    network, no pulls, and the host's CA bundle with a pip.conf naming it (for the build only)."""
    argv = ["build", "--pull=never", "--network", "host", "--layers", "--tag", tag]
    for key, value in (build_args or {}).items():
        argv += ["--build-arg", f"{key}={value}"]
    if HOST_CA_BUNDLE.is_file():
        argv += ["--volume", f"{HOST_CA_BUNDLE}:/etc/ssl/certs/ca-certificates.crt:ro",
                 "--volume", f"{IMAGES_DIR / 'pip.conf'}:/etc/pip.conf:ro"]  # fmt: skip
    result = podman(*argv, str(context), timeout=timeout, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise PodmanError(f"podman build of {context} as {tag} failed:\n{tail}")
    return tag


def build_handler_image(worker_image: str, tag: str = HANDLER_IMAGE) -> str:
    """examples/handler-image built FROM ``worker_image``, as a user builds theirs."""
    return build_image(HANDLER_IMAGE_DIR, tag, {"WORKER_IMAGE": worker_image})


def base_image() -> str:
    """The Debian-made base image's reference (made, or re-imported, when missing)."""
    return _script("base.sh", timeout=1800).strip().splitlines()[-1]


def image_config(reference: str) -> dict[str, Any]:
    """The image's config (User, Entrypoint, Cmd, Env, Labels...); ImageNotFoundError if absent."""
    result = podman("image", "inspect", "--format", "{{json .Config}}", reference, check=False)
    if result.returncode != 0:
        raise ImageNotFoundError(
            f"image {reference!r} is not in podman's local store: build it (`make images`, or "
            "`podman build` of its Dockerfile); nothing is pulled here"
        )
    config: dict[str, Any] = json.loads(result.stdout or "{}") or {}
    return config


@dataclass
class ContainerSpec:
    """What ``podman create`` needs for one container: the kubelet's view, flattened."""

    name: str
    image: str
    entrypoint: list[str] | None = None  # None: the image's ENTRYPOINT
    args: list[str] | None = None  # None: the image's CMD (unless entrypoint is set)
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None  # "uid" or "uid:gid"; None: the image's USER
    read_only: bool = False
    workdir: str | None = None
    hostname: str | None = None
    no_new_privileges: bool = False
    cap_drop: list[str] = field(default_factory=list)
    cap_add: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)

    def create_args(self) -> list[str]:
        """The ``podman create`` arguments (after ``create``)."""
        argv = ["--name", self.name, "--pull", "never", "--network", "host"]
        if self.hostname:
            argv += ["--hostname", self.hostname]
        if self.user is not None:
            argv += ["--user", self.user]
        if self.read_only:
            # As the kubelet: a read-only root and no writable /tmp or /run slipped in beside it.
            argv += ["--read-only", "--read-only-tmpfs=false"]
        if self.workdir:
            argv += ["--workdir", self.workdir]
        if self.no_new_privileges:
            argv += ["--security-opt", "no-new-privileges"]
        argv += [f"--cap-drop={cap}" for cap in self.cap_drop]
        argv += [f"--cap-add={cap}" for cap in self.cap_add]
        for key, value in {MANAGED_LABEL: "true", **self.labels}.items():
            argv += ["--label", f"{key}={value}"]
        for key, value in self.env.items():
            argv += ["--env", f"{key}={value}"]
        if self.entrypoint is not None:
            argv += ["--entrypoint", json.dumps(self.entrypoint)]
        argv.append(self.image)
        # podman, like Kubernetes, drops the image's CMD when the entrypoint is replaced.
        argv += self.args or []
        return argv


def create_container(spec: ContainerSpec) -> None:
    """``podman create``; an existing container of the same name (a leftover) is replaced."""
    podman("rm", "--force", "--ignore", spec.name)
    podman("create", *spec.create_args())


def start_attached_argv(name: str) -> list[str]:
    """The command that starts a created container and stays attached to its output: its
    exit status is the container's, so a Popen of it stands for the container's main process."""
    return ["podman", "start", "--attach", name]


def stop_container(name: str, grace_seconds: float) -> None:
    """SIGTERM (the image's stop signal), then SIGKILL after ``grace_seconds``: `podman stop -t`."""
    podman("stop", "--ignore", "-t", str(max(0, round(grace_seconds))), name,
           timeout=grace_seconds + 60, check=False)  # fmt: skip


def remove_container(name: str) -> None:
    podman("rm", "--force", "--ignore", name, check=False)


def inspect_container(name: str) -> dict[str, Any]:
    """``podman container inspect`` of one container (its HostConfig, Config, State...)."""
    result = podman("container", "inspect", name)
    items: list[dict[str, Any]] = json.loads(result.stdout)
    return items[0]


def containers(label: str = MANAGED_LABEL, *, all_states: bool = True) -> list[dict[str, Any]]:
    """``podman ps`` of the containers carrying ``label`` (``key`` or ``key=value``)."""
    args = ["ps", "--format", "json", "--filter", f"label={label}"]
    if all_states:
        args.insert(1, "--all")
    listed: list[dict[str, Any]] = json.loads(podman(*args).stdout or "[]") or []
    return listed


def remove_containers(label: str = MANAGED_LABEL) -> list[str]:
    """Force-remove every container carrying ``label``; returns their names."""
    names = [str(c["Names"][0]) for c in containers(label)]
    for name in names:
        remove_container(name)
    return names


def redact_env(argv: Sequence[str]) -> list[str]:
    """``argv`` with the values of ``--env K=V`` hidden: for logs, which must not show secrets."""
    shown: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            shown.append(arg.split("=", 1)[0] + "=…")
            hide_next = False
            continue
        hide_next = arg == "--env"
        shown.append(arg)
    return shown
