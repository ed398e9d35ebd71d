"""The pools' worker Deployments, kept in memory by a list+watch, so that a tick reads them there.

Without it every tick of every pool GETs its Deployment (`targets.ensure_deployment`) and its
`/scale` (`targets.read_scale`): at 1000 pools a quarter of the operator's CPU went to the
client's deserialization of those answers, and the API server spent as much serving them. Here
one watch per watched namespace (or one cluster-wide) follows only the Deployments that carry the
operator's managed-by label (a server-side `labelSelector`: nobody else's Deployments are ever
held), parsed from raw JSON into `CachedDeployment`, which keeps only what a tick compares.

The kubernetes client is synchronous, so each watch runs in a daemon thread; the ticks read the
cache from `asyncio.to_thread` workers as well, so the map is guarded by a lock rather than handed
to the event loop. What the cache does not know is answered by the caller's GET, as before:
before the first list, while a watch is broken (until the relist after the backoff), for a
namespace no watch covers, or for a Deployment it has not seen (a missing or foreign one).

A 410 Gone (the resourceVersion was compacted away) relists at once, keeping the old entries until
the new list replaces them; any other failure marks the watch not ready and relists after a
jittered, growing backoff. A write's answer (`put`) goes into the cache at once, so the next tick
does not replace the Deployment again before the watch reports the write; an older event arriving
after it is ignored.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from flowable_worker_operator.manifests import MANAGER, POOL_LABEL

__all__ = [
    "SELECTOR",
    "CachedDeployment",
    "DeploymentCache",
    "DeploymentSource",
    "GoneError",
    "KubernetesDeployments",
]

log = logging.getLogger(__name__)

# Every worker Deployment `manifests.build_deployment` makes carries this label (ours win over a
# user's in `ensure_deployment`'s merge), and few other Deployments do.
SELECTOR = f"app.kubernetes.io/managed-by={MANAGER},{POOL_LABEL}"


@dataclass(frozen=True)
class Owner:
    """One owner reference, as much of it as `targets` checks."""

    kind: str
    name: str
    uid: str
    controller: bool


@dataclass(frozen=True)
class CachedDeployment:
    """What a tick reads of a Deployment: identity, metadata it compares or keeps on a replace,
    spec.replicas, and the `/scale` status (pods that exist, and their selector as text)."""

    namespace: str
    name: str
    uid: str
    resource_version: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    finalizers: tuple[str, ...]
    owners: tuple[Owner, ...]
    replicas: int
    status_replicas: int
    ready_replicas: int
    # `/scale`'s status.selector; None when spec.selector is not plain matchLabels, which this
    # module does not format the way the API server does (the caller then GETs /scale).
    selector: str | None

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> CachedDeployment:
        """From a Deployment as the API server sends it (JSON, camelCase)."""
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        return cls(
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
            uid=str(meta.get("uid") or ""),
            resource_version=str(meta.get("resourceVersion") or ""),
            labels=dict(meta.get("labels") or {}),
            annotations=dict(meta.get("annotations") or {}),
            finalizers=tuple(meta.get("finalizers") or ()),
            owners=tuple(
                Owner(
                    kind=str(ref.get("kind") or ""),
                    name=str(ref.get("name") or ""),
                    uid=str(ref.get("uid") or ""),
                    controller=bool(ref.get("controller")),
                )
                for ref in meta.get("ownerReferences") or ()
            ),
            replicas=int(spec.get("replicas") or 0),
            status_replicas=int(status.get("replicas") or 0),
            ready_replicas=int(status.get("readyReplicas") or 0),
            selector=_scale_selector(spec.get("selector")),
        )


def _scale_selector(selector: Any) -> str | None:
    """`/scale`'s status.selector for a Deployment's spec.selector: the API server's text of a
    label selector, `k1=v1,k2=v2` sorted by key, for matchLabels only (what the operator makes)."""
    if not isinstance(selector, Mapping) or selector.get("matchExpressions"):
        return None
    labels = selector.get("matchLabels") or {}
    return ",".join(f"{key}={labels[key]}" for key in sorted(labels))


class GoneError(Exception):
    """410 Gone: the resourceVersion to watch from is too old; list again."""


class DeploymentSource(Protocol):
    """Where a cache's Deployments come from: one namespace, or all (`namespace` None)."""

    namespace: str | None

    def list(self) -> tuple[list[Mapping[str, Any]], str]:
        """The Deployments now, and the list's resourceVersion to watch from."""

    def watch(self, resource_version: str) -> Iterator[Mapping[str, Any]]:
        """Watch events (`{"type": ..., "object": ...}`) after `resource_version`, until the
        server ends the watch; `GoneError` when that version is too old."""

    def close(self) -> None:
        """Interrupt a watch in progress (from another thread), for a stop."""


class KubernetesDeployments:
    """A `DeploymentSource` on the API server: raw JSON (`_preload_content=False`), never the
    client's models, whose deserialization is the cost this cache removes."""

    def __init__(
        self,
        api_client: Any,
        namespace: str | None,
        *,
        label_selector: str = SELECTOR,
        timeout_seconds: int = 240,
    ) -> None:
        self.namespace = namespace
        self._apps = k8s.AppsV1Api(api_client)
        self._selector = label_selector
        self._timeout = timeout_seconds
        self._response: Any = None

    def _call(self, **kwargs: Any) -> Any:
        if self.namespace is None:
            return self._apps.list_deployment_for_all_namespaces(
                label_selector=self._selector, _preload_content=False, **kwargs
            )
        return self._apps.list_namespaced_deployment(
            self.namespace, label_selector=self._selector, _preload_content=False, **kwargs
        )

    def list(self) -> tuple[list[Mapping[str, Any]], str]:
        response = self._call(_request_timeout=60)
        try:
            body = json.loads(response.data)
        finally:
            response.release_conn()
        return list(body.get("items") or []), str(body["metadata"]["resourceVersion"])

    def watch(self, resource_version: str) -> Iterator[Mapping[str, Any]]:
        try:
            response = self._call(
                watch=True,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=self._timeout,
                # Connect, then read: the server sends a bookmark about every minute.
                _request_timeout=(30, self._timeout + 60),
            )
        except ApiException as error:
            if error.status == 410:
                raise GoneError(str(error.reason)) from None
            raise
        self._response = response
        try:
            for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
                if line:
                    yield json.loads(line)
        finally:
            self._response = None
            response.release_conn()

    def close(self) -> None:
        response = self._response
        if response is not None:
            response.shutdown()


class DeploymentCache:
    """The Deployments the sources report, by (namespace, name); see the module's docstring."""

    def __init__(
        self,
        sources: Sequence[DeploymentSource],
        *,
        backoff_seconds: float = 1.0,
        max_backoff_seconds: float = 30.0,
    ) -> None:
        self._sources = tuple(sources)
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], CachedDeployment] = {}
        self._ready: dict[int, bool] = {index: False for index in range(len(self._sources))}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._backoff = backoff_seconds
        self._max_backoff = max_backoff_seconds

    @property
    def ready(self) -> bool:
        """Every source listed, and no watch broken since."""
        with self._lock:
            return all(self._ready.values())

    def get(self, namespace: str, name: str) -> CachedDeployment | None:
        """The Deployment as last seen, or None when the caller must ask the API server: its
        namespace's watch not (or no longer) ready, or no such Deployment seen."""
        with self._lock:
            index = self._source_of(namespace)
            if index is None or not self._ready[index]:
                return None
            return self._entries.get((namespace, name))

    def put(self, obj: Mapping[str, Any]) -> None:
        """Record a Deployment the operator has just written (the write's answer)."""
        entry = CachedDeployment.from_json(obj)
        with self._lock:
            if self._source_of(entry.namespace) is not None:
                self._store(entry)

    def forget(self, namespace: str, name: str) -> None:
        """Drop an entry found stale (a write refused for its resourceVersion)."""
        with self._lock:
            self._entries.pop((namespace, name), None)

    # --- the watches (threads) ----------------------------------------------------------------

    def start(self) -> None:
        """One daemon thread per source; `stop` ends them."""
        for index, source in enumerate(self._sources):
            thread = threading.Thread(
                target=self.run,
                args=(index,),
                name=f"deployment-cache-{source.namespace or '*'}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the watches; a thread blocked in a read is a daemon and dies with the process."""
        self._stop.set()
        for source in self._sources:
            try:
                source.close()
            except Exception:  # a stop must not fail on closing
                log.debug("deployment cache: closing a watch failed", exc_info=True)
        for thread in self._threads:
            thread.join(timeout)

    def run(self, index: int) -> None:
        """List, then watch, until `stop`: relist on 410 Gone, back off on any other failure."""
        source = self._sources[index]
        failures = 0
        while not self._stop.is_set():
            try:
                resource_version = self._relist(index)
                failures = 0
                while not self._stop.is_set():
                    resource_version = self._follow(index, resource_version)
            except GoneError:
                log.info("deployment cache %s: 410 Gone, listing again", source.namespace or "*")
                continue
            except Exception as error:  # any failure: back off, list again
                if self._stop.is_set():
                    break
                with self._lock:
                    self._ready[index] = False
                failures += 1
                delay = min(self._max_backoff, self._backoff * 2 ** min(failures - 1, 10))
                delay *= random.uniform(0.5, 1.0)  # jitter
                log.warning(
                    "deployment cache %s: %s; Deployments are read by GET until it lists again "
                    "in %.1f s",
                    source.namespace or "*",
                    _describe(error),
                    delay,
                )
                self._stop.wait(delay)

    def _relist(self, index: int) -> str:
        source = self._sources[index]
        items, resource_version = source.list()
        entries = [CachedDeployment.from_json(item) for item in items]
        with self._lock:
            for key in [k for k in self._entries if self._source_of(k[0]) == index]:
                del self._entries[key]
            for entry in entries:
                self._entries[(entry.namespace, entry.name)] = entry
            self._ready[index] = True
        return resource_version

    def _follow(self, index: int, resource_version: str) -> str:
        """One watch from `resource_version` until the server ends it; the last version seen."""
        for event in self._sources[index].watch(resource_version):
            kind = event.get("type")
            obj = event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise GoneError(str(obj.get("message") or "Gone"))
                raise RuntimeError(f"watch error: {obj.get('message') or obj}")
            resource_version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
            if kind in ("ADDED", "MODIFIED"):
                entry = CachedDeployment.from_json(obj)
                with self._lock:
                    self._store(entry)
            elif kind == "DELETED":
                entry = CachedDeployment.from_json(obj)
                with self._lock:
                    live = self._entries.get((entry.namespace, entry.name))
                    if live is not None and live.uid == entry.uid:
                        del self._entries[(entry.namespace, entry.name)]
            if self._stop.is_set():
                break
        return resource_version

    # --- under the lock -----------------------------------------------------------------------

    def _store(self, entry: CachedDeployment) -> None:
        """Keep `entry` unless the entry held is a newer version of the same object."""
        key = (entry.namespace, entry.name)
        held = self._entries.get(key)
        if held is not None and held.uid == entry.uid and _older(entry, held):
            return
        self._entries[key] = entry

    def _source_of(self, namespace: str) -> int | None:
        for index, source in enumerate(self._sources):
            if source.namespace is None or source.namespace == namespace:
                return index
        return None


def _older(entry: CachedDeployment, held: CachedDeployment) -> bool:
    """`entry` is older than `held`. resourceVersions are opaque to clients, but the API server's
    (etcd's revision) are integers; anything else is taken as newer, as a watch would."""
    try:
        return int(entry.resource_version) < int(held.resource_version)
    except ValueError:
        return False


def _describe(error: Exception) -> str:
    if isinstance(error, ApiException):
        if error.status == 403:
            return "not allowed to list and watch Deployments (check the operator's RBAC)"
        return f"HTTP {error.status} {error.reason}"
    return f"{type(error).__name__}: {error}"
