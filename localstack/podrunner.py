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

log = logging.getLogger("localstack.podrunner")

RUN_AS_PROCESS_LABEL = "localstack.flowable-worker.io/run-as-process"
DEFAULT_SELECTOR = f"{RUN_AS_PROCESS_LABEL}=true"
DEFAULT_GRACE_SECONDS = 30

_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")


class PodConfigError(Exception):
    """The pod's container cannot be turned into a process (what the kubelet would report as
    CreateContainerConfigError)."""


@dataclass
class PodProcess:
    """One pod running as a local process, and what became of it."""

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

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.returncode is None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def expand_vars(text: str, env: Mapping[str, str]) -> str:
    """Kubelet's ``$(VAR)`` expansion: known names are replaced, unknown ones stay as written,
    and ``$$`` escapes a dollar."""

    def repl(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _VAR_REF.sub(repl, text)


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
        label_selector: str = DEFAULT_SELECTOR,
        base_env: Mapping[str, str] | None = None,
        default_command: Sequence[str] | None = None,
        watch_timeout_seconds: int = 2,
    ) -> None:
        self.kubeconfig = Path(kubeconfig)
        self.log_dir = Path(log_dir)
        self.namespace = namespace
        self.label_selector = label_selector
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
        with self._lock:
            procs = list(self._procs.values())
        for proc in procs:
            grace = proc.grace_seconds if grace_cap is None else min(grace_cap, proc.grace_seconds)
            self._terminate(proc, grace)
        for proc in procs:
            try:
                proc.popen.wait(timeout=proc.grace_seconds + 10)
            except subprocess.TimeoutExpired:
                self._kill_group(proc)
                proc.popen.wait(timeout=10)
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
            failed = uid in self._failed
        if proc is None and not failed and phase == "Running":
            self._launch(pod)

    # -- processes --------------------------------------------------------------------------

    def _launch(self, pod: Any) -> None:
        uid = str(pod.metadata.uid)
        namespace, name = str(pod.metadata.namespace), str(pod.metadata.name)
        try:
            argv, env, cwd = self._container_spec(pod)
        except (PodConfigError, ApiException) as exc:
            reason = exc.reason if isinstance(exc, ApiException) else str(exc)
            log.error("pod %s/%s: cannot run: %s", namespace, name, reason)
            with self._changed:
                self._failed[uid] = str(reason)
                self._changed.notify_all()
            return
        grace = pod.spec.termination_grace_period_seconds
        grace_seconds = float(DEFAULT_GRACE_SECONDS if grace is None else grace)
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
                log.error("pod %s/%s: cannot exec %s: %s", namespace, name, argv[0], exc)
                with self._changed:
                    self._failed[uid] = f"exec {argv[0]}: {exc}"
                    self._changed.notify_all()
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
            if proc.terminating_since is not None or not proc.running:
                return
            proc.terminating_since = time.monotonic()
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
        env = dict(self.base_env)
        env["HOSTNAME"] = str(pod.metadata.name)
        env.update(pod_env)
        argv = [expand_vars(arg, pod_env) for arg in command]
        workdir = container.working_dir or str(self.log_dir)
        return argv, env, workdir

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
        default=DEFAULT_SELECTOR,
        help=f"pod label selector (default: {DEFAULT_SELECTOR})",
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
    ):
        try:
            while not stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
