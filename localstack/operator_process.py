"""`flowable-worker-operator` as a local process against the local cluster (demo and e2e tests).

It runs as a user would run it on a laptop: the installed console script, a kubeconfig, one
watched namespace, text logs to a file, `/metrics` and `/healthz` on a free loopback port. On the
way out the namespace's pools are deleted while the operator still runs (they carry its finalizer,
which only it clears), then it gets SIGTERM, and SIGKILL only if it ignores that for 30 s.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from localstack.cluster import free_port

GROUP, VERSION, PLURAL = "flowable-worker.io", "v1alpha1", "externalworkerpools"
CONSOLE_SCRIPT = Path(sys.executable).parent / "flowable-worker-operator"


class OperatorProcessError(RuntimeError):
    """The operator did not start, or did not stop cleanly; the message carries its log's tail."""


@dataclass
class OperatorProcess:
    process: subprocess.Popen[bytes]
    log_path: Path
    port: int
    crashed: bool = False

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metrics(self) -> str:
        return httpx.get(self.metrics_url, timeout=5).text

    def crash(self) -> None:
        """SIGKILL, as an OOM kill or a node failure would: nothing gets to clean up."""
        self.crashed = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def healthy(self) -> bool:
        if self.process.poll() is not None:
            raise OperatorProcessError(f"the operator exited early:\n{self.log()[-4000:]}")
        with contextlib.suppress(httpx.HTTPError):
            url = f"http://127.0.0.1:{self.port}/healthz"
            return httpx.get(url, timeout=2).status_code == 200
        return False


@contextlib.contextmanager
def run_operator(
    kubeconfig: Path,
    namespace: str,
    log_path: Path,
    *,
    ready_timeout: float = 60.0,
    extra_args: Sequence[str] = (),
) -> Iterator[OperatorProcess]:
    """Start the operator, wait for `/healthz`, yield; raise if it does not stop with exit 0.

    `extra_args` go after the usual flags (e.g. `--leader-election`). After `crash()` the pools
    are left for the next operator, as after a real crash."""
    if not CONSOLE_SCRIPT.exists():
        raise OperatorProcessError(
            f"{CONSOLE_SCRIPT} is missing: run `make setup` (pip install -e '.[operator,dev]')"
        )
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(CONSOLE_SCRIPT), "--namespace", namespace, "--metrics-host", "127.0.0.1",
             "--metrics-port", str(port), "--log-format", "text", *extra_args],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        )  # fmt: skip
    running = OperatorProcess(process, log_path, port)
    try:
        deadline = time.monotonic() + ready_timeout
        while not running.healthy():
            if time.monotonic() > deadline:
                raise OperatorProcessError(f"not ready in {ready_timeout:.0f}s:\n{running.log()}")
            time.sleep(0.2)
        yield running
        if not running.crashed:
            _delete_pools(kubeconfig, namespace)
    finally:
        code = _stop(process)
    if code != 0 and not running.crashed:
        raise OperatorProcessError(f"the operator exited {code} on SIGTERM:\n{running.log()}")


def _delete_pools(kubeconfig: Path, namespace: str, timeout: float = 30.0) -> None:
    api = k8s_config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    custom = k8s_client.CustomObjectsApi(api)

    def pools() -> list[dict[str, Any]]:
        listed = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        return cast("list[dict[str, Any]]", cast("dict[str, Any]", listed)["items"])

    try:
        for pool in pools():
            with contextlib.suppress(ApiException):
                custom.delete_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, pool["metadata"]["name"]
                )
        deadline = time.monotonic() + timeout
        while pools():
            if time.monotonic() > deadline:
                raise OperatorProcessError(f"pools in {namespace} were not finalized in time")
            time.sleep(0.2)
    finally:
        api.close()


def _stop(process: subprocess.Popen[bytes]) -> int:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        return process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return -signal.SIGKILL
