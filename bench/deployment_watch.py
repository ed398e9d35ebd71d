"""Every Deployment of one namespace and when its `.spec.replicas` last changed, from one watch.

The lag from a backlog change to the replicas changing is timed at the moment the change reaches
a watcher, as a user's `kubectl get -w` would see it. One watch for the whole namespace costs the
API server one long request instead of a GET per Deployment per poll, so the benchmark adds next
to nothing to the reads it measures. Objects stay plain dicts (no model classes to build for
10,000 Deployments).
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any, cast

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException


class DeploymentWatch:
    """Runs in a daemon thread from `start()` to `stop()`; read `replicas()` and `changed_at()`."""

    def __init__(self, kubeconfig: Path, namespace: str) -> None:
        self._namespace = namespace
        self._api = k8s_config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
        self._custom = k8s_client.CustomObjectsApi(self._api)
        self._lock = threading.Lock()
        self._replicas: dict[str, int] = {}
        self._changed: dict[str, float] = {}
        self._stopping = threading.Event()
        self._watch = k8s_watch.Watch()  # type: ignore[no-untyped-call]
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def start(self) -> DeploymentWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._watch.stop()  # type: ignore[no-untyped-call]
        self._thread.join(timeout=5)
        with contextlib.suppress(Exception):
            self._api.close()

    def count(self) -> int:
        with self._lock:
            return len(self._replicas)

    def has(self, names: list[str]) -> bool:
        with self._lock:
            return all(name in self._replicas for name in names)

    def replicas(self, name: str) -> int | None:
        with self._lock:
            return self._replicas.get(name)

    def changed_at(self, name: str) -> float | None:
        """`time.monotonic()` when a change of the Deployment's replicas arrived last."""
        with self._lock:
            return self._changed.get(name)

    def _list(self) -> str:
        listed = cast(
            "dict[str, Any]",
            self._custom.list_namespaced_custom_object(
                "apps", "v1", self._namespace, "deployments"
            ),
        )
        for item in listed["items"]:
            self._seen(item)
        return str(listed["metadata"]["resourceVersion"])

    def _seen(self, deployment: dict[str, Any], deleted: bool = False) -> None:
        name = deployment["metadata"]["name"]
        replicas = int((deployment.get("spec") or {}).get("replicas") or 0)
        now = time.monotonic()
        with self._lock:
            if deleted:
                self._replicas.pop(name, None)
            elif self._replicas.get(name) != replicas:
                if name in self._replicas:
                    self._changed[name] = now
                self._replicas[name] = replicas

    def _run(self) -> None:
        try:
            version = self._list()
            while not self._stopping.is_set():
                try:
                    version = self._follow(version)
                except ApiException as error:
                    if error.status != 410:
                        raise
                    version = self._list()
        except BaseException as error:
            if not self._stopping.is_set():
                self.error = error

    def _follow(self, version: str) -> str:
        """Watch from `version` until the server ends the stream; the last version seen."""
        stream = self._watch.stream(  # type: ignore[no-untyped-call]
            self._custom.list_namespaced_custom_object,
            "apps",
            "v1",
            self._namespace,
            "deployments",
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=240,
        )
        for event in stream:
            kind, obj = event["type"], event["object"]
            if kind == "ERROR":
                raise ApiException(status=int(obj.get("code") or 500), reason=obj.get("message"))
            version = obj["metadata"]["resourceVersion"]
            if kind != "BOOKMARK":
                self._seen(obj, deleted=kind == "DELETED")
            if self._stopping.is_set():
                break
        return version
