"""Run pods as local processes: the missing kubelet half of the local cluster.

kwok makes pods *look* Running but runs nothing. For end-to-end tests and the demo we want the
worker pods the operator creates to really work (poll Flowable, drain the backlog) and to really
stop when the operator scales down. This runtime watches pods that kwok has marked Running and that
opt in with the label ``localstack.flowable-worker.io/run-as-process: "true"``, and runs each one's
first container as a local process:

* argv = ``command`` + ``args`` (with kubelet's ``$(VAR)`` expansion); the image is ignored, so a
  container without ``command`` runs the runner's ``default_command`` (e.g. ``flowable-worker``);
* environment = this process's environment, overlaid with the container's ``envFrom`` and ``env``
  (``value``, ``fieldRef``, ``secretKeyRef``, ``configMapKeyRef``) as the kubelet resolves them;
* output goes to ``<log_dir>/<namespace>_<pod>.log``;
* when the pod is deleted (deletionTimestamp set, or the object is gone) the process group gets
  SIGTERM, then SIGKILL after the grace period. kwok finalises deleted pods at once, so the grace
  period is enforced here, from the process side, whatever happens to the pod object.

Container mode (``PodRunner(..., containers=True)``, ``--containers``) runs pods labelled
``localstack.flowable-worker.io/run-as-container: "true"`` instead, each one's ``worker`` container
(else its first) as a real podman container of the image the pod names (``--pull never``: an
image missing from podman's store is a failure that names it): same env resolution, plus the
security context (``runAsUser``, ``runAsNonRoot``, ``readOnlyRootFilesystem``...; see
localstack/podcontainer.py), host networking, deletion as ``podman stop -t <grace>`` (SIGTERM,
then SIGKILL), and a container that exits on its own is restarted with a growing back-off, as
with ``restartPolicy: Always``.

Use ``PodRunner`` (start/stop or ``with``) from fixtures, or ``python -m localstack.podrunner
--kubeconfig ...`` from a shell.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException

from localstack import podman
from localstack.podcontainer import (
    ContainerConfigError,
    container_spec,
    expand_vars,
    pick_container,
)

__all__ = ["PodConfigError", "PodProcess", "PodRunner", "expand_vars"]

log = logging.getLogger("localstack.podrunner")

RUN_AS_PROCESS_LABEL = "localstack.flowable-worker.io/run-as-process"
DEFAULT_SELECTOR = f"{RUN_AS_PROCESS_LABEL}=true"
RUN_AS_CONTAINER_LABEL = "localstack.flowable-worker.io/run-as-container"
CONTAINER_SELECTOR = f"{RUN_AS_CONTAINER_LABEL}=true"
DEFAULT_GRACE_SECONDS = 30
# restartPolicy Always, with the kubelet's doubling back-off (capped lower: tests wait on it).
RESTART_BACKOFF_SECONDS = 1.0
RESTART_BACKOFF_CAP_SECONDS = 10.0


class PodConfigError(Exception):
    """The pod's container cannot be turned into a process (what the kubelet would report as
    CreateContainerConfigError)."""


@dataclass
class PodProcess:
    """One pod running as a local process (or a podman container), and what became of it.

    In container mode ``popen`` is ``podman start --attach`` of ``container``: it lives exactly as
    long as the container's main process and exits with its status. After a restart ``popen`` is
    the new run's, and ``restarts`` counts them."""

    uid: str
    namespace: str
    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes]
    grace_seconds: float
    started_at: float = field(default_factory=time.monotonic)
    terminating_since: float | None = None
    exited_at: float | None = None
    returncode: int | None = None
    killed: bool = False  # True when SIGKILL was needed after the grace period
    container: str | None = None  # the podman container's name, in container mode
    image: str | None = None
    restarts: int = 0

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.returncode is None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def _field_path_value(pod: Any, path: str) -> str:
    """The subset of downward-API field paths a worker can use."""
    meta = pod.metadata
    simple: dict[str, Callable[[], Any]] = {
        "metadata.name": lambda: meta.name,
        "metadata.namespace": lambda: meta.namespace,
        "metadata.uid": lambda: meta.uid,
        "spec.nodeName": lambda: pod.spec.node_name,
        "spec.serviceAccountName": lambda: pod.spec.service_account_name,
        "status.podIP": lambda: pod.status.pod_ip if pod.status else None,
        "status.hostIP": lambda: pod.status.host_ip if pod.status else None,
    }
    if path in simple:
        return str(simple[path]() or "")
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if match:
        mapping = (meta.labels if match.group(1) == "labels" else meta.annotations) or {}
        return str(mapping.get(match.group(2), ""))
    raise PodConfigError(f"unsupported fieldRef.fieldPath {path!r}")


class PodRunner:
    """Watch labelled, Running pods and mirror each as a local process.

    Thread-safe: one watch thread handles events; each process has a reaper thread and, once told
    to terminate, a timer that SIGKILLs it after its grace period.
    """

    def __init__(
        self,
        kubeconfig: Path | str,
        log_dir: Path | str,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        base_env: Mapping[str, str] | None = None,
        default_command: Sequence[str] | None = None,
        watch_timeout_seconds: int = 2,
        containers: bool = False,
    ) -> None:
        self.kubeconfig = Path(kubeconfig)
        self.log_dir = Path(log_dir)
        self.namespace = namespace
        self.containers = containers
        default_selector = CONTAINER_SELECTOR if containers else DEFAULT_SELECTOR
        self.label_selector = label_selector or default_selector
        self.base_env = dict(os.environ if base_env is None else base_env)
        # Stands in for the image's entrypoint when a container has no command (an image-based
        # worker Deployment would run e.g. ["flowable-worker"]).
        self.default_command = list(default_command or [])
        # Each watch request ends after this long and is renewed from the last resourceVersion;
        # it bounds how long stop() waits for the watch thread (the client cannot interrupt it).
        self.watch_timeout_seconds = watch_timeout_seconds
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._procs: dict[str, PodProcess] = {}  # by pod uid, kept after exit for inspection
        self._failed: dict[str, str] = {}  # pod uid -> why it could not start
        # Container mode creates containers off the watch thread (podman create takes a while);
        # these are the pods being created, and those among them deleted meanwhile.
        self._pending: set[str] = set()
        self._deleted_while_pending: set[str] = set()
        self._wakeups: dict[str, threading.Event] = {}  # ends a restart back-off early
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch: Any = None
        self._api: Any = None

    # -- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> PodRunner:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Connect and start watching in a background thread."""
        if self._thread is not None:
            raise RuntimeError("pod runner already started")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        api_client = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig)
        )
        self._api = k8s_client.CoreV1Api(api_client)
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._watch_loop, name="podrunner-watch", daemon=True
        )
        self._thread.start()

    def stop(self, grace_cap: float | None = None) -> None:
        """Stop watching, then terminate every process still running as if its pod was deleted
        (SIGTERM, SIGKILL after its grace period, capped by ``grace_cap``), and wait for all."""
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()
        if self._thread is not None:
            self._thread.join(timeout=self.watch_timeout_seconds + 10)
            self._thread = None
        with self._changed:
            self._changed.wait_for(lambda: not self._pending, timeout=120)
            procs = list(self._procs.values())
        for proc in procs:
            grace = proc.grace_seconds if grace_cap is None else min(grace_cap, proc.grace_seconds)
            self._terminate(proc, grace)
        for proc in procs:
            self._wait_stopped(proc)
        if self._api is not None:
            self._api.api_client.close()
            self._api = None

    # -- inspection -------------------------------------------------------------------------

    def processes(self, namespace: str | None = None) -> list[PodProcess]:
        """Every process started so far (running or exited), oldest first."""
        with self._lock:
            procs = list(self._procs.values())
        return [p for p in procs if namespace is None or p.namespace == namespace]

    def running(self, namespace: str | None = None) -> list[PodProcess]:
        return [p for p in self.processes(namespace) if p.running]

    def failures(self) -> dict[str, str]:
        """Pods (by uid) that matched but could not be started, with the reason."""
        with self._lock:
            return dict(self._failed)

    def wait_for(
        self, predicate: Callable[[list[PodProcess]], bool], timeout: float = 30.0
    ) -> list[PodProcess]:
        """Block until ``predicate(self.processes())`` holds; raise TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                procs = list(self._procs.values())
                if predicate(procs):
                    return procs
                left = deadline - time.monotonic()
                if left <= 0:
                    summary = [(p.key, p.pid, p.returncode) for p in procs]
                    raise TimeoutError(
                        f"condition not met within {timeout}s; processes: "
                        f"{summary}; failures: {self._failed}"
                    )
                self._changed.wait(timeout=min(left, 0.5))

    # -- watching ---------------------------------------------------------------------------

    def _list(self, **kwargs: Any) -> Any:
        if self.namespace is None:
            return self._api.list_pod_for_all_namespaces(**kwargs)
        return self._api.list_namespaced_pod(self.namespace, **kwargs)

    def _watch_loop(self) -> None:
        resource_version: str | None = None
        while not self._stop.is_set():
            try:
                if resource_version is None:
                    pods = self._list(label_selector=self.label_selector)
                    self._reconcile(pods.items)
                    resource_version = pods.metadata.resource_version
                self._watch = k8s_watch.Watch()  # type: ignore[no-untyped-call]
                list_fn = (
                    self._api.list_pod_for_all_namespaces
                    if self.namespace is None
                    else self._api.list_namespaced_pod
                )
                extra = {} if self.namespace is None else {"namespace": self.namespace}
                for event in self._watch.stream(
                    list_fn,
                    label_selector=self.label_selector,
                    resource_version=resource_version,
                    timeout_seconds=self.watch_timeout_seconds,
                    allow_watch_bookmarks=True,
                    **extra,
                ):
                    if self._stop.is_set():
                        break
                    kind = event["type"]
                    if kind == "ERROR":
                        code = (event.get("raw_object") or {}).get("code")
                        log.info("watch error %s: relisting", code)
                        resource_version = None
                        break
                    obj = event["object"]
                    if kind == "BOOKMARK":  # the client hands bookmarks over undecoded
                        resource_version = (
                            obj["metadata"]["resourceVersion"]
                            if isinstance(obj, dict)
                            else obj.metadata.resource_version
                        )
                        continue
                    resource_version = obj.metadata.resource_version
                    self._handle(kind, obj)
            except ApiException as exc:
                if exc.status == 410:
                    resource_version = None
                    continue
                if not self._stop.is_set():
                    log.warning("pod watch failed (%s): retrying", exc.status)
                    resource_version = None
                    self._stop.wait(1.0)
            except Exception:
                if not self._stop.is_set():
                    log.exception("pod watch failed: retrying")
                    resource_version = None
                    self._stop.wait(1.0)

    def _reconcile(self, pods: Sequence[Any]) -> None:
        """After a (re)list: start what should run, stop what vanished while we were not looking."""
        seen = set()
        for pod in pods:
            seen.add(pod.metadata.uid)
            self._handle("ADDED", pod)
        for proc in self.processes():
            in_scope = self.namespace is None or proc.namespace == self.namespace
            if proc.running and in_scope and proc.uid not in seen:
                self._terminate(proc, proc.grace_seconds)

    def _handle(self, kind: str, pod: Any) -> None:
        uid = str(pod.metadata.uid)
        with self._lock:
            proc = self._procs.get(uid)
        if kind == "DELETED" or pod.metadata.deletion_timestamp is not None:
            with self._lock:
                if uid in self._pending:
                    self._deleted_while_pending.add(uid)
            if proc is not None:
                grace = proc.grace_seconds
                # A deletion request may shorten the grace period (kubectl delete --grace-period);
                # kwok's own final delete reports 0, which must not cut the real grace short.
                requested = pod.metadata.deletion_grace_period_seconds
                if kind != "DELETED" and requested is not None:
                    grace = min(grace, float(requested))
                self._terminate(proc, grace)
            return
        phase = pod.status.phase if pod.status else None
        with self._lock:
            failed = uid in self._failed or uid in self._pending
        if proc is None and not failed and phase == "Running":
            self._launch(pod)

    # -- processes --------------------------------------------------------------------------

    def _fail(self, pod: Any, reason: str) -> None:
        """The pod cannot run: say why (once) and never try it again."""
        log.error("pod %s/%s: cannot run: %s", pod.metadata.namespace, pod.metadata.name, reason)
        with self._changed:
            self._failed[str(pod.metadata.uid)] = reason
            self._changed.notify_all()

    def _launch(self, pod: Any) -> None:
        if self.containers:
            self._launch_container(pod)
            return
        uid = str(pod.metadata.uid)
        namespace, name = str(pod.metadata.namespace), str(pod.metadata.name)
        try:
            argv, env, cwd = self._container_spec(pod)
        except (PodConfigError, ApiException) as exc:
            self._fail(pod, str(exc.reason if isinstance(exc, ApiException) else exc))
            return
        grace_seconds = _grace_seconds(pod)
        log_path = self.log_dir / f"{namespace}_{name}.log"
        with log_path.open("ab") as out:
            out.write(f"# podrunner: {argv}\n".encode())
            out.flush()
            try:
                popen = subprocess.Popen(
                    argv,
                    env=env,
                    cwd=cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                self._fail(pod, f"exec {argv[0]}: {exc}")
                return
        proc = PodProcess(
            uid=uid,
            namespace=namespace,
            name=name,
            argv=argv,
            log_path=log_path,
            popen=popen,
            grace_seconds=grace_seconds,
        )
        with self._changed:
            self._procs[uid] = proc
            self._changed.notify_all()
        log.info("pod %s started as pid %d", proc.key, popen.pid)
        threading.Thread(target=self._reap, args=(proc,), name=f"reap-{name}", daemon=True).start()

    def _wait_stopped(self, proc: PodProcess) -> None:
        """After ``_terminate``: wait for the end; a container is removed once it has ended."""
        try:
            proc.popen.wait(timeout=proc.grace_seconds + 10)
        except subprocess.TimeoutExpired:
            if proc.container is None:
                self._kill_group(proc)
            else:
                podman.remove_container(proc.container)
            proc.popen.wait(timeout=10)
        if proc.container is not None:
            with self._changed:  # the reaper may be between a restart's exit and the next start
                self._changed.wait_for(lambda: proc.exited_at is not None, timeout=10)
            podman.remove_container(proc.container)

    # -- containers -------------------------------------------------------------------------

    def _launch_container(self, pod: Any) -> None:
        uid = str(pod.metadata.uid)
        with self._lock:
            self._pending.add(uid)
        threading.Thread(
            target=self._create_container, args=(pod,), name=f"create-{pod.metadata.name}",
            daemon=True,
        ).start()  # fmt: skip

    def _create_container(self, pod: Any) -> None:
        """``podman create`` the pod's container and start it attached; off the watch thread."""
        uid = str(pod.metadata.uid)
        namespace, name = str(pod.metadata.namespace), str(pod.metadata.name)
        proc: PodProcess | None = None
        try:
            container = pick_container(pod)
            env = self._pod_env(pod, container)
            spec = container_spec(pod, container, env, podman.image_config(str(container.image)))
            podman.create_container(spec)
            log_path = self.log_dir / f"{namespace}_{name}.log"
            argv = ["podman", "create", *podman.redact_env(spec.create_args())]
            with log_path.open("ab") as out:
                out.write(f"# podrunner: {argv}\n".encode())
            proc = PodProcess(
                uid=uid,
                namespace=namespace,
                name=name,
                argv=argv,
                log_path=log_path,
                popen=self._start_attached(spec.name, log_path),
                grace_seconds=_grace_seconds(pod),
                container=spec.name,
                image=spec.image,
            )
        except (PodConfigError, ContainerConfigError, podman.PodmanError) as exc:
            self._fail(pod, str(exc))
        except ApiException as exc:
            self._fail(pod, str(exc.reason))
        except Exception as exc:  # a crash here would leave the pod pending forever
            log.exception("pod %s/%s: container creation failed", namespace, name)
            self._fail(pod, f"container creation failed: {exc}")
        with self._changed:
            self._pending.discard(uid)
            deleted = uid in self._deleted_while_pending
            self._deleted_while_pending.discard(uid)
            if proc is not None:
                self._procs[uid] = proc
                self._wakeups[uid] = threading.Event()
            self._changed.notify_all()
        if proc is None:
            return
        log.info("pod %s started as container %s (%s)", proc.key, proc.container, proc.image)
        threading.Thread(
            target=self._reap_container, args=(proc,), name=f"reap-{name}", daemon=True
        ).start()
        if deleted or self._stop.is_set():
            self._terminate(proc, proc.grace_seconds)

    @staticmethod
    def _start_attached(container: str, log_path: Path) -> subprocess.Popen[bytes]:
        with log_path.open("ab") as out:
            return subprocess.Popen(
                podman.start_attached_argv(container),
                env=podman.podman_env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _reap_container(self, proc: PodProcess) -> None:
        """Record each exit; restart (restartPolicy Always) unless the pod is going away, and
        then remove the container, as the kubelet removes a deleted pod's containers."""
        assert proc.container is not None
        try:
            self._supervise(proc, proc.container)
        finally:
            podman.remove_container(proc.container)

    def _supervise(self, proc: PodProcess, container: str) -> None:
        backoff = RESTART_BACKOFF_SECONDS
        wakeup = self._wakeups[proc.uid]
        while True:
            returncode = proc.popen.wait()
            with self._changed:
                proc.returncode = returncode
                proc.exited_at = time.monotonic()
                stopping = proc.terminating_since is not None or self._stop.is_set()
                if stopping and returncode == 137:  # podman stop's SIGKILL after the grace
                    proc.killed = True
                self._changed.notify_all()
            log.info("pod %s container exited with %d", proc.key, returncode)
            if stopping or wakeup.wait(backoff):
                return
            with self._changed:
                if proc.terminating_since is not None or self._stop.is_set():
                    return
                proc.popen = self._start_attached(container, proc.log_path)
                proc.returncode = proc.exited_at = None
                proc.restarts += 1
                self._changed.notify_all()
            log.info("pod %s container restarted (restart %d)", proc.key, proc.restarts)
            backoff = min(backoff * 2, RESTART_BACKOFF_CAP_SECONDS)

    def _stop_container(self, proc: PodProcess, grace: float) -> None:
        assert proc.container is not None
        podman.stop_container(proc.container, grace)

    def _reap(self, proc: PodProcess) -> None:
        returncode = proc.popen.wait()
        # Like a container whose main process ends: whatever it forked goes too. Done right after
        # the wait, so the group id cannot have been reused by an unrelated process yet.
        self._kill_group(proc)
        with self._changed:
            proc.returncode = returncode
            proc.exited_at = time.monotonic()
            self._changed.notify_all()
        log.info("pod %s pid %d exited with %d", proc.key, proc.pid, returncode)

    def _terminate(self, proc: PodProcess, grace: float) -> None:
        with self._lock:
            if proc.terminating_since is not None:
                return
            if proc.container is not None:
                # Also between restarts: no further restart, and the back-off ends now.
                self._wakeups[proc.uid].set()
            elif not proc.running:
                return
            proc.terminating_since = time.monotonic()
            if not proc.running:
                return
        if proc.container is not None:
            log.info("pod %s deleted: podman stop -t %.0f %s", proc.key, grace, proc.container)
            threading.Thread(
                target=self._stop_container, args=(proc, grace), name=f"stop-{proc.name}",
                daemon=True,
            ).start()  # fmt: skip
            return
        log.info("pod %s deleted: SIGTERM to pid %d, SIGKILL in %.0fs", proc.key, proc.pid, grace)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        timer = threading.Timer(grace, self._kill_after_grace, args=(proc,))
        timer.daemon = True
        timer.start()

    def _kill_after_grace(self, proc: PodProcess) -> None:
        # Only while the leader is unreaped: after that its pid may belong to someone else (and
        # the reaper already killed the rest of the group).
        if proc.popen.poll() is None:
            log.info("pod %s pid %d outlived its grace period: SIGKILL", proc.key, proc.pid)
            with self._lock:
                proc.killed = True
            self._kill_group(proc)

    @staticmethod
    def _kill_group(proc: PodProcess) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def _container_spec(self, pod: Any) -> tuple[list[str], dict[str, str], str]:
        container = pod.spec.containers[0]
        entrypoint = list(container.command or []) or self.default_command
        if not entrypoint:
            raise PodConfigError(
                f"container {container.name!r} has no command and no default command is set "
                "(the image's entrypoint is not known here)"
            )
        command = entrypoint + list(container.args or [])
        pod_env = self._pod_env(pod, container)
        env = dict(self.base_env)
        env["HOSTNAME"] = str(pod.metadata.name)
        env.update(pod_env)
        argv = [expand_vars(arg, pod_env) for arg in command]
        workdir = container.working_dir or str(self.log_dir)
        return argv, env, workdir

    def _pod_env(self, pod: Any, container: Any) -> dict[str, str]:
        """The container's own environment (``envFrom``, then ``env``), as the kubelet makes it."""
        namespace = str(pod.metadata.namespace)
        pod_env: dict[str, str] = {}
        for source in container.env_from or []:
            prefix = source.prefix or ""
            if source.config_map_ref is not None:
                data = self._config_map(
                    namespace, source.config_map_ref.name, source.config_map_ref.optional
                )
            elif source.secret_ref is not None:
                data = self._secret(namespace, source.secret_ref.name, source.secret_ref.optional)
            else:
                continue
            pod_env.update({prefix + k: v for k, v in (data or {}).items()})
        for var in container.env or []:
            value = self._env_value(pod, namespace, var, pod_env)
            if value is not None:
                pod_env[var.name] = value
        return pod_env

    def _env_value(
        self, pod: Any, namespace: str, var: Any, defined: Mapping[str, str]
    ) -> str | None:
        if var.value_from is None:
            return expand_vars(var.value or "", defined)
        ref = var.value_from
        if ref.field_ref is not None:
            return _field_path_value(pod, str(ref.field_ref.field_path))
        if ref.secret_key_ref is not None:
            sel = ref.secret_key_ref
            data = self._secret(namespace, sel.name, sel.optional)
            return self._key(data, sel, "secret")
        if ref.config_map_key_ref is not None:
            sel = ref.config_map_key_ref
            data = self._config_map(namespace, sel.name, sel.optional)
            return self._key(data, sel, "configmap")
        raise PodConfigError(f"env {var.name}: unsupported valueFrom (resourceFieldRef?)")

    @staticmethod
    def _key(data: dict[str, str] | None, sel: Any, kind: str) -> str | None:
        if data is not None and sel.key in data:
            return data[sel.key]
        if sel.optional:
            return None
        raise PodConfigError(f"{kind} {sel.name!r} has no key {sel.key!r}")

    def _config_map(
        self, namespace: str, name: str, optional: bool | None
    ) -> dict[str, str] | None:
        try:
            obj = self._api.read_namespaced_config_map(name, namespace)
        except ApiException as exc:
            if exc.status == 404 and optional:
                return None
            if exc.status == 404:
                raise PodConfigError(f"configmap {namespace}/{name} not found") from exc
            raise
        return {str(k): str(v) for k, v in (obj.data or {}).items()}

    def _secret(self, namespace: str, name: str, optional: bool | None) -> dict[str, str] | None:
        try:
            obj = self._api.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status == 404 and optional:
                return None
            if exc.status == 404:
                raise PodConfigError(f"secret {namespace}/{name} not found") from exc
            raise
        return {str(k): base64.b64decode(v).decode() for k, v in (obj.data or {}).items()}


def _grace_seconds(pod: Any) -> float:
    grace = pod.spec.termination_grace_period_seconds
    return float(DEFAULT_GRACE_SECONDS if grace is None else grace)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the pod runner in the foreground until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m localstack.podrunner", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--kubeconfig",
        default=os.environ.get("KUBECONFIG"),
        help="kubeconfig of the cluster (default: $KUBECONFIG)",
    )
    parser.add_argument(
        "--log-dir",
        type=Path,
        default=Path("podrunner-logs"),
        help="one <namespace>_<pod>.log per pod (default: ./podrunner-logs)",
    )
    parser.add_argument("--namespace", help="only this namespace (default: all)")
    parser.add_argument(
        "--selector",
        help=f"pod label selector (default: {DEFAULT_SELECTOR}, or with --containers "
        f"{CONTAINER_SELECTOR})",
    )
    parser.add_argument(
        "--containers",
        action="store_true",
        help="run each pod as a podman container of the image it names (needs `make podman` "
        "and the image in podman's store)",
    )
    parser.add_argument(
        "--default-command",
        type=shlex.split,
        metavar="COMMAND",
        help="command line (shell-quoted) for containers without a command, e.g. 'flowable-worker'",
    )
    args = parser.parse_args(argv)
    if not args.kubeconfig:
        parser.error("--kubeconfig (or $KUBECONFIG) is required")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with PodRunner(
        args.kubeconfig,
        args.log_dir,
        namespace=args.namespace,
        label_selector=args.selector,
        default_command=args.default_command,
        containers=args.containers,
    ):
        try:
            while not stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
