"""The real KEDA on the local cluster: its CRDs, keda-operator and keda-adapter as local processes.

Why: the side-by-side benchmark (issue 12) must scale one pool with what a KEDA user runs today,
not with a model of it. The binaries come from KEDA's Go module (``make keda-bin``,
``localstack/keda/build.sh``); this module never builds them, as ``localstack.cluster`` never
builds the control plane.

How it runs without pods or a service network (each choice below is what KEDA's own manifests do,
moved to loopback):

- One certificate directory (``ca.crt``, ``tls.crt``, ``tls.key``, the layout of KEDA's
  ``kedaorg-certs`` Secret) serves the operator's gRPC metrics service and the adapter's HTTPS,
  and is the adapter's client certificate for that gRPC (mutual TLS, as in a cluster). Cert
  rotation is off: nothing rotates in a test run.
- The operator's gRPC, metrics and health endpoints bind 127.0.0.1 ports; the adapter dials the
  gRPC at ``127.0.0.1:<port>``; the adapter serves HTTPS on ``127.0.0.1:<port>``.
- The APIService ``v1beta1.external.metrics.k8s.io`` reaches the adapter through the cluster's
  aggregation layer (``LocalCluster.register_api_service``), and the API server verifies the
  adapter's certificate against KEDA's CA: no ``insecureSkipTLSVerify``.
- Both processes use the cluster's admin kubeconfig (``system:masters``), instead of KEDA's
  ServiceAccount and RBAC: acceptable for a throwaway local cluster, and one thing less to differ
  from a cluster install in ways that matter to scaling (none of RBAC does).
- Leader election is off; ``WATCH_NAMESPACE`` is the caller's (empty: all namespaces).

One gap we cannot close from outside: the adapter's Prometheus ``/metrics`` listens on
``:<--port>``, every interface, with no flag for the address. It gets a free port and serves only
metrics.

Failures raise ``KedaSetupError`` with one line naming what failed: the binaries are missing, a
process exited, the APIService never became Available (with the API server's reason).
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from localstack.certs import generate_serving_tls
from localstack.cluster import (
    ClusterStartError,
    Component,
    LocalCluster,
    MissingPrerequisiteError,
    die_with_parent,
    free_port,
    kill_group,
)

log = logging.getLogger("localstack.keda")

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "keda" / "build.sh"
BINARIES = ("keda-operator", "keda-adapter")

NAMESPACE = "keda"
ADAPTER_SERVICE = "keda-metrics-apiserver"
OPERATOR_SERVICE = "keda-operator"
METRICS_GROUP, METRICS_VERSION = "external.metrics.k8s.io", "v1beta1"
API_SERVICE = f"{METRICS_VERSION}.{METRICS_GROUP}"
CRD_NAMES = (
    "scaledobjects.keda.sh",
    "scaledjobs.keda.sh",
    "triggerauthentications.keda.sh",
    "clustertriggerauthentications.keda.sh",
)


class KedaSetupError(RuntimeError):
    """KEDA did not come up; the message is one line naming what failed."""


def _build_script(flag: str) -> Path:
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT), flag], capture_output=True, text=True, check=False
    )
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        detail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise MissingPrerequisiteError(f"{BUILD_SCRIPT} {flag} failed: {detail}")
    return Path(lines[-1])


def find_keda_bin_dir() -> Path:
    """The directory holding keda-operator and keda-adapter, or fail saying how to get them.

    ``FWO_KEDA_BIN_DIR`` wins; otherwise the cache that ``make keda-bin`` fills. Never builds: a
    cold build takes over 20 minutes on 2 cores.
    """
    override = os.environ.get("FWO_KEDA_BIN_DIR")
    bin_dir = Path(override) if override else _build_script("--bin-dir")
    missing = [n for n in BINARIES if not os.access(bin_dir / n, os.X_OK)]
    if missing:
        raise MissingPrerequisiteError(
            f"KEDA binaries missing in {bin_dir}: {', '.join(missing)}: run `make keda-bin` "
            "(needs Go 1.26+; a cold build takes over 20 minutes)"
        )
    return bin_dir


def find_keda_crd_dir() -> Path:
    """KEDA's CRDs as its module ships them (``config/crd/bases``)."""
    crd_dir = _build_script("--crd-dir")
    if not (crd_dir / "keda.sh_scaledobjects.yaml").is_file():
        raise MissingPrerequisiteError(f"KEDA CRDs not found in {crd_dir}: run `make keda-bin`")
    return crd_dir


@dataclass
class _Processes:
    """What the finalizer stops, apart from the stack object (see ``localstack.cluster``)."""

    components: list[Component] = field(default_factory=list)

    def stop(self) -> None:
        # The adapter first: it only reads from the operator.
        for comp in reversed(self.components):
            kill_group(comp.proc, 10.0)
        self.components.clear()


class KedaStack:
    """KEDA's CRDs, operator and metrics adapter on a running ``LocalCluster``.

    ``start()`` returns once the APIService for external metrics is Available; ``stop()`` removes
    the APIService (an unavailable aggregated API breaks discovery and namespace deletion for
    everyone else on the cluster) and stops both process groups. Also a context manager.
    """

    def __init__(
        self,
        cluster: LocalCluster,
        *,
        watch_namespace: str = "",
        bin_dir: Path | None = None,
        crd_dir: Path | None = None,
        log_level: str = "info",
    ) -> None:
        self.cluster = cluster
        self.bin_dir = bin_dir if bin_dir is not None else find_keda_bin_dir()
        self.crd_dir = crd_dir if crd_dir is not None else find_keda_crd_dir()
        self.watch_namespace = watch_namespace
        self.log_level = log_level
        self.workdir = cluster.workdir / "keda"
        self.ready_seconds: float | None = None
        self._procs = _Processes()
        self._api_service: str | None = None
        self._finalizer = weakref.finalize(self, self._procs.stop)

    def __enter__(self) -> KedaStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def components(self) -> dict[str, Component]:
        return {c.name: c for c in self._procs.components}

    def pids(self) -> dict[str, int]:
        """The pid (= process group id) of each KEDA process, to check teardown from outside."""
        return {c.name: c.proc.pid for c in self._procs.components}

    def start(self, timeout: float = 120.0) -> None:
        """Install the CRDs, start the operator and the adapter, wait for the APIService."""
        if self._procs.components:
            raise RuntimeError("KEDA already started")
        t0 = time.monotonic()
        try:
            self._install_crds()
            certs = generate_serving_tls(
                self.workdir / "certs",
                (
                    "127.0.0.1",
                    "localhost",
                    f"{ADAPTER_SERVICE}.{NAMESPACE}.svc",
                    f"{OPERATOR_SERVICE}.{NAMESPACE}.svc",
                    f"{OPERATOR_SERVICE}.{NAMESPACE}.svc.cluster.local",
                ),
                "keda",
            )
            grpc = f"127.0.0.1:{free_port()}"
            self._spawn("keda-operator", self._operator_args(certs.directory, grpc))
            adapter_port = free_port()
            self._spawn("keda-adapter", self._adapter_args(certs.directory, grpc, adapter_port))
            self._api_service = self.cluster.register_api_service(
                group=METRICS_GROUP,
                version=METRICS_VERSION,
                namespace=NAMESPACE,
                service=ADAPTER_SERVICE,
                port=adapter_port,
                ca_bundle=certs.ca_cert.read_bytes(),
            )
            self._wait_available(t0 + timeout)
        except BaseException:
            self.stop()
            raise
        self.ready_seconds = time.monotonic() - t0
        log.info("KEDA ready in %.1fs (logs in %s)", self.ready_seconds, self.workdir)

    def stop(self) -> None:
        """Remove the APIService, then stop the adapter and the operator (SIGTERM, SIGKILL)."""
        if self._api_service is not None:
            with contextlib.suppress(OSError):
                self.cluster.api(
                    "DELETE", f"/apis/apiregistration.k8s.io/v1/apiservices/{self._api_service}"
                )
            self._api_service = None
        self._procs.stop()

    # -- steps -----------------------------------------------------------------------------

    def _install_crds(self) -> None:
        """Server-side apply: the ScaledObject CRD is too big for kubectl's last-applied
        annotation."""
        result = self.cluster.kubectl(
            "apply", "--server-side", "--force-conflicts", "-f", str(self.crd_dir), check=False
        )
        if result.returncode != 0:
            raise KedaSetupError(f"installing KEDA CRDs from {self.crd_dir}: {_last(result)}")
        try:
            self.cluster.wait_crds_established(CRD_NAMES)
        except ClusterStartError as exc:
            raise KedaSetupError(f"KEDA {exc}") from None

    def _operator_args(self, cert_dir: Path, grpc: str) -> list[str]:
        return [
            f"--kubeconfig={self.cluster.kubeconfig}",
            "--leader-elect=false",
            f"--metrics-bind-address=127.0.0.1:{free_port()}",
            f"--health-probe-bind-address=127.0.0.1:{free_port()}",
            f"--metrics-service-bind-address={grpc}",
            "--enable-cert-rotation=false",
            f"--cert-dir={cert_dir}",
            f"--ca-dir={cert_dir}",
            f"--zap-log-level={self.log_level}",
            "--zap-encoder=console",
            "--zap-time-encoding=rfc3339nano",
        ]

    def _adapter_args(self, cert_dir: Path, grpc: str, port: int) -> list[str]:
        kubeconfig = str(self.cluster.kubeconfig)
        return [
            f"--kubeconfig={kubeconfig}",
            f"--lister-kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={cert_dir}",
            f"--tls-cert-file={cert_dir / 'tls.crt'}",
            f"--tls-private-key-file={cert_dir / 'tls.key'}",
            f"--client-ca-file={cert_dir / 'ca.crt'}",
            f"--metrics-service-address={grpc}",
            # Prometheus /metrics: binds every interface (":<port>"); see the module docstring.
            f"--port={free_port()}",
            f"--zap-log-level={self.log_level}",
            "--zap-encoder=console",
            "--zap-time-encoding=rfc3339nano",
        ]

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.cluster.kubeconfig)
        env["WATCH_NAMESPACE"] = self.watch_namespace
        env["POD_NAMESPACE"] = NAMESPACE
        env["KEDA_CLUSTER_OBJECT_NAMESPACE"] = NAMESPACE
        return env

    def _spawn(self, name: str, args: list[str]) -> Component:
        log_dir = self.workdir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{name}.log"
        in_main_thread = threading.current_thread() is threading.main_thread()
        with log_path.open("ab") as out:
            proc = subprocess.Popen(
                [str(self.bin_dir / name), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=self._env(),
                start_new_session=True,
                preexec_fn=die_with_parent if in_main_thread else None,
            )
        comp = Component(name=name, proc=proc, log_path=log_path)
        self._procs.components.append(comp)
        return comp

    def _wait_available(self, deadline: float) -> None:
        assert self._api_service is not None
        condition: dict[str, object] = {}
        while True:
            for comp in self._procs.components:
                if comp.proc.poll() is not None:
                    raise KedaSetupError(
                        f"{comp.name} exited with {comp.proc.returncode} before the APIService "
                        f"{self._api_service} became Available: "
                        f"{_one_line(comp.log_tail(1))} (log {comp.log_path})"
                    )
            condition = self.cluster.api_service_condition(self._api_service)
            if condition.get("status") == "True":
                return
            if time.monotonic() > deadline:
                adapter = self.components["keda-adapter"]
                what = (
                    f"APIService {self._api_service} unreachable"
                    if condition.get("reason") == "FailedDiscoveryCheck"
                    else f"KEDA metrics adapter never became Available ({self._api_service})"
                )
                raise KedaSetupError(
                    f"{what}: {condition.get('reason', 'no condition')}: "
                    f"{_one_line(str(condition.get('message', '')))} (log {adapter.log_path})"
                )
            time.sleep(0.5)


def _last(result: subprocess.CompletedProcess[str]) -> str:
    lines = (result.stderr or result.stdout or "").strip().splitlines()
    return lines[-1] if lines else f"exit {result.returncode}"


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500]
