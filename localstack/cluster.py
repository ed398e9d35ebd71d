"""A real Kubernetes control plane on one machine, for tests and the demo.

Why real parts: the operator's behaviour depends on things a fake API cannot show faithfully (CRD
schema and CEL validation, RBAC, the Deployment -> ReplicaSet -> Pod controllers, scheduling onto a
node). So this launcher runs the genuine binaries, built by ``localstack/k8s/build.sh``:

    etcd -> kube-apiserver -> kube-controller-manager, kube-scheduler, kwok

kwok stands in for the kubelet: it keeps one fake Node Ready and marks scheduled pods Running.
``localstack.podrunner`` then runs selected pods as local processes. The API server's aggregation
layer is configured (front-proxy CA and proxy client certificate), so an extension API server such
as KEDA's metrics adapter (``localstack.keda_stack``) can serve a group through it.

Every session gets its own temporary directory (certificates, etcd data, logs, kubeconfigs) and
free ports, so two runs never collide. Each component runs in its own process group; ``stop()``
sends SIGTERM, then SIGKILL, to every group, and is wired to ``with``, ``atexit`` and a finalizer so
no process outlives a failed test. On Linux the components also get a parent-death signal, which
covers the case where the Python process itself is killed.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import http.client
import json
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localstack.certs import (
    ClusterPKI,
    FrontProxyPKI,
    generate_front_proxy,
    generate_pki,
    write_kubeconfig,
)

log = logging.getLogger("localstack.cluster")

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "k8s" / "build.sh"
KWOK_STAGES = HERE / "k8s" / "kwok-stages.yaml"

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
TOOLS = ("kubectl", "helm")

# kwok manages only nodes carrying this annotation, so a cluster could also hold nodes it ignores.
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
DEFAULT_NODE_NAME = "kwok-node-0"
SERVICE_CIDR = "10.0.0.0/24"
POD_CIDR = "10.244.0.0/16"


class MissingPrerequisiteError(RuntimeError):
    """A binary or tool the cluster needs is not there; the message says how to get it."""


class ClusterStartError(RuntimeError):
    """The control plane did not come up; the message carries the failing component's log tail."""


def find_bin_dir() -> Path:
    """Return the directory holding every control-plane binary, or fail saying what to do.

    ``FWO_K8S_BIN_DIR`` wins (binaries you already have, KUBEBUILDER_ASSETS-style); otherwise the
    versioned cache directory that ``make cluster-bin`` fills. Never builds: a cold build takes tens
    of minutes and belongs in ``make``, not in a test fixture.
    """
    override = os.environ.get("FWO_K8S_BIN_DIR")
    if override:
        bin_dir = Path(override)
        hint = "FWO_K8S_BIN_DIR points at a directory without them; unset it or fix it"
    else:
        out = subprocess.run(
            ["bash", str(BUILD_SCRIPT), "--bin-dir"],
            capture_output=True,
            text=True,
            check=True,
        )
        bin_dir = Path(out.stdout.strip().splitlines()[-1])
        hint = (
            "run `make cluster-bin` (needs Go 1.26+ and npm; a cold build takes tens of minutes), "
            "or set FWO_K8S_BIN_DIR to a directory that has them"
        )
    missing = [n for n in (*COMPONENTS, *TOOLS) if not os.access(bin_dir / n, os.X_OK)]
    if missing:
        raise MissingPrerequisiteError(
            f"local cluster binaries missing in {bin_dir}: {', '.join(missing)}: {hint}"
        )
    return bin_dir


def free_port() -> int:
    """A port nobody listens on right now (the OS picks it; the small race is acceptable here)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> None:
    """Runs in the child before exec: ask Linux to SIGKILL it if its parent thread dies."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


def kill_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM a process group, wait ``grace`` seconds for its leader, then SIGKILL the group.

    The final SIGKILL goes to the group even when the leader exited on SIGTERM, so helpers the
    leader forked cannot linger.
    """
    pgid = proc.pid  # start_new_session=True: the leader's pid is the group id
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            log.warning("pid %d did not stop within %.0fs of SIGTERM: SIGKILL", proc.pid, grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (a zombie is dead, only not reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    # The state is the first field after the parenthesised command name.
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@dataclass
class Component:
    """One running control-plane process."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of this component's log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class _State:
    """What the finalizer needs to clean up, kept apart from the cluster object itself so the
    finalizer holds no reference to it (which would keep it alive forever)."""

    components: list[Component] = field(default_factory=list)
    workdir: Path | None = None
    remove_workdir: bool = False

    def stop(self) -> None:
        # Everything that talks to the API server first, all at once; etcd last so the API
        # server can shut down without a storm of storage errors.
        front = [c for c in self.components if c.name != "etcd"]
        threads = [
            threading.Thread(target=kill_group, args=(c.proc, 15.0), daemon=True) for c in front
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for comp in self.components:
            if comp.name == "etcd":
                kill_group(comp.proc, 10.0)
        self.components.clear()
        if self.remove_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


class LocalCluster:
    """etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok with one fake node.

    Use as a context manager (or ``start()``/``stop()``). ``kubeconfig`` is an admin kubeconfig
    (client certificate in ``system:masters``); ``tool_env()`` gives an environment in which
    ``kubectl`` and ``helm`` reach this cluster.
    """

    def __init__(
        self,
        *,
        bin_dir: Path | None = None,
        workdir: Path | None = None,
        node_name: str = DEFAULT_NODE_NAME,
        node_allocatable: dict[str, str] | None = None,
    ) -> None:
        self.bin_dir = bin_dir if bin_dir is not None else find_bin_dir()
        self.node_name = node_name
        self.node_allocatable = node_allocatable or {"cpu": "32", "memory": "128Gi", "pods": "110"}
        self._state = _State()
        if workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="fwo-cluster-"))
            self._state.remove_workdir = os.environ.get("FWO_KEEP_CLUSTER_DIR") != "1"
        else:
            self.workdir = workdir
            self.workdir.mkdir(parents=True, exist_ok=True)
        self._state.workdir = self.workdir
        self.log_dir = self.workdir / "logs"
        self.kubeconfig = self.workdir / "admin.kubeconfig"
        self.server = ""
        self.ready_seconds: float | None = None
        self._pki: ClusterPKI | None = None
        self._front_proxy: FrontProxyPKI | None = None
        self._ports: dict[str, int] = {}
        # Runs when the object is collected or, at the latest, at interpreter exit (atexit).
        self._finalizer = weakref.finalize(self, self._state.stop)

    # -- public API ------------------------------------------------------------------------

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def components(self) -> dict[str, Component]:
        return {c.name: c for c in self._state.components}

    def pids(self) -> dict[str, int]:
        """The pid (= process group id) of every component, to check teardown from outside."""
        return {c.name: c.proc.pid for c in self._state.components}

    def start(self, timeout: float = 90.0) -> None:
        """Start every component and return once the cluster can run pods.

        Ready means: /readyz is ok, the fake node is Ready (kwok works) and the ``default``
        ServiceAccount exists (the controller manager works; pods are rejected without it).
        """
        if self._state.components:
            raise RuntimeError("cluster already started")
        t0 = time.monotonic()
        deadline = t0 + timeout
        try:
            self._prepare()
            self._start_etcd(deadline)
            self._start_apiserver()
            self._start_kwok()
            self._wait_ready(deadline)
            self._start_controllers()
            self._create_node()
            self._wait_node_ready(deadline)
            self._wait_default_service_account(deadline)
        except BaseException:
            self.stop()
            raise
        self.ready_seconds = time.monotonic() - t0
        log.info(
            "cluster ready in %.1fs (%s, workdir %s)", self.ready_seconds, self.server, self.workdir
        )

    def stop(self) -> None:
        """Stop every component (SIGTERM, then SIGKILL) and remove the temp dir if we made it."""
        self._state.stop()

    def restart_apiserver(self, *, down_seconds: float = 1.0, timeout: float = 60.0) -> float:
        """Kill kube-apiserver (SIGKILL, as a crash or a node loss would), keep it down for
        ``down_seconds``, start it again on the same port over the same etcd, and return once
        /readyz is ok; returns the seconds it was unreachable.

        For fault tests: every client's connections and watches break at once and must resume
        (the operator's, the controllers', kwok's and the pod runner's alike).
        """
        apiserver = self.components["kube-apiserver"]
        started = time.monotonic()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(apiserver.proc.pid, signal.SIGKILL)
        apiserver.proc.wait(timeout=10)
        self._state.components.remove(apiserver)
        time.sleep(down_seconds)
        self._start_apiserver()
        self._wait_ready(time.monotonic() + timeout)
        return time.monotonic() - started

    def tool_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for kubectl/helm: this cluster's kubeconfig, the cached binaries first on
        PATH, and helm's state kept in the session directory instead of $HOME."""
        env = dict(os.environ if base is None else base)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        helm_home = self.workdir / "helm"
        env["HELM_CACHE_HOME"] = str(helm_home / "cache")
        env["HELM_CONFIG_HOME"] = str(helm_home / "config")
        env["HELM_DATA_HOME"] = str(helm_home / "data")
        return env

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the cached kubectl against this cluster."""
        return self._tool("kubectl", args, check)

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the cached helm against this cluster."""
        return self._tool("helm", args, check)

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One request to the API server as admin: (status, decoded JSON or text).

        A tiny client on the standard library, so the launcher needs no Kubernetes client.
        """
        assert self._pki is not None, "cluster not prepared"
        ctx = ssl.create_default_context(cafile=str(self._pki.ca_cert))
        admin = self._pki.clients["admin"]
        ctx.load_cert_chain(str(admin.cert), str(admin.key))
        conn = http.client.HTTPSConnection(
            "127.0.0.1", self._ports["apiserver"], context=ctx, timeout=10
        )
        try:
            payload = None if body is None else json.dumps(body).encode()
            headers = {"Content-Type": "application/json"} if payload else {}
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            raw = resp.read().decode(errors="replace")
        finally:
            conn.close()
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, raw

    @property
    def front_proxy(self) -> FrontProxyPKI:
        """The aggregation layer's CA and proxy client certificate (an extension API server
        verifies the API server's proxied requests against this CA)."""
        assert self._front_proxy is not None, "cluster not prepared"
        return self._front_proxy

    def register_api_service(
        self,
        *,
        group: str,
        version: str,
        namespace: str,
        service: str,
        port: int,
        ca_bundle: bytes,
    ) -> str:
        """Route ``/apis/<group>/<version>`` to an extension API server listening on
        ``https://127.0.0.1:<port>``; returns the APIService's name.

        The Service is of type ExternalName naming 127.0.0.1: the API server's default resolver
        turns it into that host and the APIService's port. (The other route, an EndpointSlice
        with ``--enable-aggregator-routing``, cannot hold a loopback address.) The server's
        certificate must name ``<service>.<namespace>.svc``, which the API server checks
        against ``ca_bundle``, so no TLS verification is skipped.
        """
        status, body = self.api(
            "POST",
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        )
        if status not in (201, 409):
            raise ClusterStartError(f"creating namespace {namespace}: HTTP {status}: {body}")
        svc = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": service, "namespace": namespace},
            "spec": {"type": "ExternalName", "externalName": "127.0.0.1"},
        }
        self._apply(f"/api/v1/namespaces/{namespace}/services", service, svc)
        name = f"{version}.{group}"
        api_service = {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": name},
            "spec": {
                "group": group,
                "version": version,
                "service": {"name": service, "namespace": namespace, "port": port},
                "caBundle": base64.b64encode(ca_bundle).decode(),
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
            },
        }
        self._apply("/apis/apiregistration.k8s.io/v1/apiservices", name, api_service)
        return name

    def api_service_condition(self, name: str) -> dict[str, Any]:
        """The APIService's Available condition ({} while it has none)."""
        status, body = self.api("GET", f"/apis/apiregistration.k8s.io/v1/apiservices/{name}")
        if status != 200:
            return {}
        for cond in body.get("status", {}).get("conditions", []):
            if cond.get("type") == "Available":
                return dict(cond)
        return {}

    def wait_crds_established(self, names: Sequence[str], timeout: float = 60.0) -> None:
        """Return once every named CRD is Established; raise ``ClusterStartError`` naming those
        that are not. (``kubectl wait`` right after an apply can fail on a CRD that has no
        conditions yet, so this polls.)"""
        deadline = time.monotonic() + timeout
        pending = list(names)
        while True:
            pending = [name for name in pending if not self._crd_established(name)]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise ClusterStartError(f"CRDs not Established within {timeout:.0f} s: {pending}")
            time.sleep(0.2)

    def _crd_established(self, name: str) -> bool:
        status, body = self.api(
            "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
        )
        if status != 200:
            return False
        conditions = body.get("status", {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    def _apply(self, collection: str, name: str, manifest: dict[str, Any]) -> None:
        """Create, or replace what is there (keeping its resourceVersion)."""
        status, body = self.api("POST", collection, manifest)
        if status == 409:
            status, current = self.api("GET", f"{collection}/{name}")
            if status == 200:
                manifest = {**manifest, "metadata": {**manifest["metadata"]}}
                manifest["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                status, body = self.api("PUT", f"{collection}/{name}", manifest)
        if status not in (200, 201):
            raise ClusterStartError(f"applying {collection}/{name}: HTTP {status}: {body}")

    # -- start-up steps --------------------------------------------------------------------

    def _prepare(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in ("etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler", "kwok"):
            self._ports[name] = free_port()
        self.server = f"https://127.0.0.1:{self._ports['apiserver']}"
        self._pki = generate_pki(
            self.workdir / "pki",
            {
                "admin": ("admin", "system:masters"),
                "controller-manager": ("system:kube-controller-manager", None),
                "scheduler": ("system:kube-scheduler", None),
            },
        )
        self._front_proxy = generate_front_proxy(self.workdir / "pki")
        for name, client in self._pki.clients.items():
            write_kubeconfig(
                self.workdir / f"{name}.kubeconfig", self.server, self._pki.ca_cert, client
            )

    def _spawn(self, name: str, args: Sequence[str]) -> Component:
        log_path = self.log_dir / f"{name}.log"
        in_main_thread = threading.current_thread() is threading.main_thread()
        with log_path.open("ab") as out:
            proc = subprocess.Popen(
                [str(self.bin_dir / name), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
                # PDEATHSIG fires when the *thread* that forked dies, so only from the main thread.
                preexec_fn=die_with_parent if in_main_thread else None,
            )
        comp = Component(name=name, proc=proc, log_path=log_path)
        self._state.components.append(comp)
        log.debug("started %s pid %d", name, proc.pid)
        return comp

    def _start_etcd(self, deadline: float) -> None:
        client = f"http://127.0.0.1:{self._ports['etcd']}"
        peer = f"http://127.0.0.1:{self._ports['etcd-peer']}"
        comp = self._spawn(
            "etcd",
            [
                "--name=local",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=local={peer}",
                # Throwaway data: skipping fsync makes start-up and writes much faster.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        self._poll(deadline, comp, lambda: self._etcd_healthy(client), "etcd /health")

    @staticmethod
    def _etcd_healthy(url: str) -> bool:
        conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=2)
        try:
            conn.request("GET", "/health")
            return b'"true"' in conn.getresponse().read()
        except OSError:
            return False
        finally:
            conn.close()

    def _start_apiserver(self) -> None:
        pki = self._pki
        assert pki is not None
        proxy = self._front_proxy
        assert proxy is not None
        self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers=http://127.0.0.1:{self._ports['etcd']}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self._ports['apiserver']}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                f"--tls-cert-file={pki.server_cert}",
                f"--tls-private-key-file={pki.server_key}",
                f"--client-ca-file={pki.ca_cert}",
                "--authorization-mode=Node,RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                "--profiling=false",
                # The "kubernetes" Service cannot point at loopback; nothing in-cluster uses it.
                "--endpoint-reconciler-type=none",
                # The aggregation layer, so an extension API server (KEDA's metrics adapter)
                # can serve a group through this API server: it trusts the user headers of
                # requests signed by the front-proxy CA, and only from this client name.
                f"--requestheader-client-ca-file={proxy.ca_cert}",
                f"--requestheader-allowed-names={proxy.client_name}",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-username-headers=X-Remote-User",
                f"--proxy-client-cert-file={proxy.client_cert}",
                f"--proxy-client-key-file={proxy.client_key}",
                # No --enable-aggregator-routing: it resolves an APIService to an EndpointSlice
                # address, and the API server rejects loopback addresses there, while an
                # extension server here is a local process on 127.0.0.1. Without it the API
                # server resolves the Service, and an ExternalName Service can name 127.0.0.1.
            ],
        )

    def _component_kubeconfig_flags(self, name: str) -> list[str]:
        kubeconfig = self.workdir / f"{name}.kubeconfig"
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
        ]

    def _start_controllers(self) -> None:
        """Start the controller manager and the scheduler once /readyz is ok.

        Not earlier: they read the extension-apiserver-authentication ConfigMap at start-up and
        exit if RBAC's bootstrap roles are not in place yet, which /readyz waits for."""
        pki = self._pki
        assert pki is not None
        self._spawn(
            "kube-controller-manager",
            [
                *self._component_kubeconfig_flags("controller-manager"),
                "--bind-address=127.0.0.1",
                f"--secure-port={self._ports['controller-manager']}",
                f"--cert-dir={self.workdir / 'controller-manager-certs'}",
                "--leader-elect=false",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--root-ca-file={pki.ca_cert}",
                "--use-service-account-credentials=true",
                f"--cluster-signing-cert-file={pki.ca_cert}",
                f"--cluster-signing-key-file={pki.ca_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                *self._component_kubeconfig_flags("scheduler"),
                "--bind-address=127.0.0.1",
                f"--secure-port={self._ports['scheduler']}",
                f"--cert-dir={self.workdir / 'scheduler-certs'}",
                "--leader-elect=false",
            ],
        )

    def _start_kwok(self) -> None:
        """kwok runs as admin and retries until the API server answers, so it starts in parallel
        with the API server's boot."""
        annotation = "=".join(KWOK_NODE_ANNOTATION)
        self._spawn(
            "kwok",
            [
                f"--config={KWOK_STAGES}",
                f"--kubeconfig={self.workdir / 'admin.kubeconfig'}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={annotation}",
                f"--server-address=127.0.0.1:{self._ports['kwok']}",
                f"--cidr={POD_CIDR}",
                "--node-lease-duration-seconds=40",
            ],
        )

    def _wait_ready(self, deadline: float) -> None:
        apiserver = self.components["kube-apiserver"]

        def ready() -> bool:
            try:
                status, _ = self.api("GET", "/readyz")
            except OSError:
                return False
            return status == 200

        self._poll(deadline, apiserver, ready, "kube-apiserver /readyz")

    def _create_node(self) -> None:
        """Register the fake node kwok will keep Ready. No taint: pods land on it as they are."""
        key, value = KWOK_NODE_ANNOTATION
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node_name,
                "annotations": {key: value, "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "kubernetes.io/hostname": self.node_name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                },
            },
            "status": {
                "allocatable": self.node_allocatable,
                "capacity": self.node_allocatable,
                "nodeInfo": {
                    "architecture": "amd64",
                    "operatingSystem": "linux",
                    "kubeletVersion": "fake",
                    "kubeProxyVersion": "fake",
                },
            },
        }
        status, body = self.api("POST", "/api/v1/nodes", node)
        if status not in (201, 409):
            raise ClusterStartError(f"creating node {self.node_name}: HTTP {status}: {body}")

    def _wait_node_ready(self, deadline: float) -> None:
        def ready() -> bool:
            status, body = self.api("GET", f"/api/v1/nodes/{self.node_name}")
            if status != 200:
                return False
            conditions = body.get("status", {}).get("conditions", [])
            return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

        self._poll(deadline, self.components["kwok"], ready, f"node {self.node_name} Ready")

    def _wait_default_service_account(self, deadline: float) -> None:
        def exists() -> bool:
            status, _ = self.api("GET", "/api/v1/namespaces/default/serviceaccounts/default")
            return status == 200

        self._poll(
            deadline,
            self.components["kube-controller-manager"],
            exists,
            "ServiceAccount default/default",
        )

    def _poll(self, deadline: float, comp: Component, check: Callable[[], bool], what: str) -> None:
        """Call ``check`` until it is true; fail fast if any component died meanwhile."""
        while True:
            for c in self._state.components:
                if c.proc.poll() is not None:
                    raise ClusterStartError(
                        f"{c.name} exited with {c.proc.returncode} while waiting for {what}; "
                        f"log {c.log_path}:\n{c.log_tail()}"
                    )
            if check():
                return
            if time.monotonic() > deadline:
                raise ClusterStartError(
                    f"timed out waiting for {what}; {comp.name} log {comp.log_path}:\n"
                    f"{comp.log_tail()}"
                )
            time.sleep(0.1)

    def _tool(
        self, name: str, args: Sequence[str], check: bool
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.bin_dir / name), *args],
            env=self.tool_env(),
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(
                result.returncode, result.args, result.stdout, result.stderr
            )
        return result


def main(argv: Sequence[str] | None = None) -> int:
    """Run a cluster until Ctrl-C / SIGTERM (for the demo and for poking around by hand)."""
    parser = argparse.ArgumentParser(
        prog="python -m localstack.cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--workdir", type=Path, help="keep certs, logs and data here")
    parser.add_argument(
        "--pods",
        action="store_true",
        help="also run labelled pods as local processes (localstack.podrunner)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        cluster = LocalCluster(workdir=args.workdir)
    except MissingPrerequisiteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with cluster:
        print(f"export KUBECONFIG={cluster.kubeconfig}", flush=True)
        print(f"export PATH={cluster.bin_dir}:$PATH", flush=True)
        runner_ctx: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
        if args.pods:
            from localstack.podrunner import PodRunner

            runner_ctx = PodRunner(cluster.kubeconfig, cluster.workdir / "pods")
        with runner_ctx:
            try:
                while not stop.wait(1.0):
                    pass
            except KeyboardInterrupt:
                pass
            log.info("stopping")
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
