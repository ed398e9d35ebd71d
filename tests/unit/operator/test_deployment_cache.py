"""deployment_cache: list, then follow a watch; 410 relists, failures fall back to GETs until the
next list; writes go in at once and an older event never undoes them. The watch is a fake stream
driven by the test; the threads are the cache's own."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from flowable_worker_operator.deployment_cache import (
    CachedDeployment,
    DeploymentCache,
    GoneError,
)

NS = "billing"


def deployment(
    name: str,
    rv: int,
    *,
    uid: str | None = None,
    replicas: int = 1,
    namespace: str = NS,
    selector: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid or f"uid-{name}",
            "resourceVersion": str(rv),
            "labels": {"app.kubernetes.io/managed-by": "flowable-worker-operator"},
            "annotations": {"flowable-worker.io/template-hash": f"h{rv}"},
            "ownerReferences": [
                {"kind": "ExternalWorkerPool", "name": name, "uid": "pool-uid", "controller": True}
            ],
        },
        "spec": {
            "replicas": replicas,
            "selector": selector or {"matchLabels": {"flowable-worker.io/pool": name}},
        },
        "status": {"replicas": replicas, "readyReplicas": replicas},
    }


def event(kind: str, obj: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": kind, "object": obj}


class FakeSource:
    """Lists answer from `lists` (a list or an exception each); each watch yields the events put
    on `events` until a `None` ends it (the server's timeout) or an exception is raised."""

    def __init__(self, namespace: str | None = NS) -> None:
        self.namespace = namespace
        self.lists: queue.Queue[tuple[list[dict[str, Any]], str] | Exception] = queue.Queue()
        self.events: queue.Queue[dict[str, Any] | Exception | None] = queue.Queue()
        self.watched_from: list[str] = []
        self.listed = 0
        self.closed = threading.Event()

    def list(self) -> tuple[list[Mapping[str, Any]], str]:
        answer = self.lists.get(timeout=5)
        self.listed += 1
        if isinstance(answer, Exception):
            raise answer
        items, rv = answer
        return list(items), rv

    def watch(self, resource_version: str) -> Iterator[Mapping[str, Any]]:
        self.watched_from.append(resource_version)
        while not self.closed.is_set():
            try:
                item = self.events.get(timeout=0.05)
            except queue.Empty:
                continue
            if item is None:
                return
            if isinstance(item, Exception):
                raise item
            yield item

    def close(self) -> None:
        self.closed.set()


def wait_for(condition: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


@pytest.fixture
def source() -> FakeSource:
    return FakeSource()


@pytest.fixture
def cache(source: FakeSource) -> Iterator[DeploymentCache]:
    made = DeploymentCache([source], backoff_seconds=0.05, max_backoff_seconds=0.1)
    yield made
    made.stop()


def replicas_of(cache: DeploymentCache, name: str) -> int | None:
    entry = cache.get(NS, name)
    return None if entry is None else entry.replicas


def test_nothing_is_served_before_the_first_list(cache: DeploymentCache) -> None:
    assert not cache.ready
    assert cache.get(NS, "a-worker") is None
    cache.put(deployment("a-worker", 5))  # a write before the list is kept, but not served yet
    assert cache.get(NS, "a-worker") is None


def test_the_list_then_the_watchs_adds_changes_and_deletions(
    cache: DeploymentCache, source: FakeSource
) -> None:
    source.lists.put(([deployment("a-worker", 10), deployment("b-worker", 11)], "12"))
    cache.start()
    wait_for(lambda: cache.ready)
    entry = cache.get(NS, "a-worker")
    assert entry is not None
    assert (entry.uid, entry.resource_version, entry.replicas) == ("uid-a-worker", "10", 1)
    assert entry.annotations["flowable-worker.io/template-hash"] == "h10"
    assert entry.selector == "flowable-worker.io/pool=a-worker"
    assert entry.owners[0].uid == "pool-uid"
    assert entry.owners[0].controller
    wait_for(lambda: source.watched_from == ["12"])

    source.events.put(event("ADDED", deployment("c-worker", 13)))
    source.events.put(event("MODIFIED", deployment("a-worker", 14, replicas=3)))
    source.events.put(event("DELETED", deployment("b-worker", 15)))
    wait_for(lambda: cache.get(NS, "b-worker") is None)
    assert replicas_of(cache, "a-worker") == 3
    assert replicas_of(cache, "c-worker") == 1


def test_a_watch_ended_by_the_server_resumes_from_the_last_version_seen(
    cache: DeploymentCache, source: FakeSource
) -> None:
    source.lists.put(([], "1"))
    cache.start()
    source.events.put(event("ADDED", deployment("a-worker", 2)))
    source.events.put({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "7"}}})
    source.events.put(None)  # the server's timeoutSeconds
    wait_for(lambda: source.watched_from == ["1", "7"])
    assert source.listed == 1  # no relist for a normal end
    assert replicas_of(cache, "a-worker") == 1


@pytest.mark.parametrize(
    "gone",
    [GoneError("too old"), event("ERROR", {"kind": "Status", "code": 410, "message": "too old"})],
    ids=["410 answer", "410 event"],
)
def test_410_gone_relists_and_the_new_list_replaces_the_old_entries(
    cache: DeploymentCache, source: FakeSource, gone: Any
) -> None:
    source.lists.put(([deployment("a-worker", 10), deployment("b-worker", 11)], "12"))
    cache.start()
    wait_for(lambda: source.watched_from == ["12"])
    # While gone, b was deleted and a changed; the relist must show both.
    source.lists.put(([deployment("a-worker", 20, replicas=4)], "21"))
    source.events.put(gone)
    wait_for(lambda: source.watched_from == ["12", "21"])
    assert source.listed == 2
    assert cache.ready
    assert replicas_of(cache, "a-worker") == 4
    assert cache.get(NS, "b-worker") is None


def test_a_broken_watch_falls_back_to_gets_until_the_relist(
    cache: DeploymentCache, source: FakeSource
) -> None:
    source.lists.put(([deployment("a-worker", 10)], "12"))
    cache.start()
    wait_for(lambda: source.watched_from == ["12"])
    assert cache.get(NS, "a-worker") is not None
    source.events.put(ConnectionResetError("reset by peer"))
    wait_for(lambda: not cache.ready)
    assert cache.get(NS, "a-worker") is None  # possibly stale: the caller GETs
    source.lists.put(([deployment("a-worker", 30, replicas=2)], "31"))
    wait_for(lambda: cache.ready)
    assert replicas_of(cache, "a-worker") == 2
    wait_for(lambda: source.watched_from == ["12", "31"])


def test_a_failed_list_is_retried_with_backoff(cache: DeploymentCache, source: FakeSource) -> None:
    source.lists.put(RuntimeError("403"))
    source.lists.put(([deployment("a-worker", 10)], "12"))
    cache.start()
    wait_for(lambda: cache.ready)
    assert source.listed == 2
    assert replicas_of(cache, "a-worker") == 1


def test_a_write_is_served_at_once_and_an_older_event_does_not_undo_it(
    cache: DeploymentCache, source: FakeSource
) -> None:
    source.lists.put(([deployment("a-worker", 10)], "12"))
    cache.start()
    wait_for(lambda: source.watched_from == ["12"])
    cache.put(deployment("a-worker", 40, replicas=5))  # the answer to our replace
    assert replicas_of(cache, "a-worker") == 5
    source.events.put(event("MODIFIED", deployment("a-worker", 35, replicas=2)))  # before it
    source.events.put(event("ADDED", deployment("z-worker", 36)))
    wait_for(lambda: cache.get(NS, "z-worker") is not None)
    assert replicas_of(cache, "a-worker") == 5
    source.events.put(event("MODIFIED", deployment("a-worker", 41, replicas=6)))  # after it
    wait_for(lambda: replicas_of(cache, "a-worker") == 6)


def test_a_deletion_of_an_older_object_of_the_same_name_keeps_the_new_one(
    cache: DeploymentCache, source: FakeSource
) -> None:
    source.lists.put(([], "1"))
    cache.start()
    wait_for(lambda: cache.ready)
    cache.put(deployment("a-worker", 50, uid="new"))
    source.events.put(event("DELETED", deployment("a-worker", 45, uid="old")))
    source.events.put(event("ADDED", deployment("z-worker", 46)))
    wait_for(lambda: cache.get(NS, "z-worker") is not None)
    entry = cache.get(NS, "a-worker")
    assert entry is not None
    assert entry.uid == "new"


def test_forget_drops_a_stale_entry(cache: DeploymentCache, source: FakeSource) -> None:
    source.lists.put(([deployment("a-worker", 10)], "12"))
    cache.start()
    wait_for(lambda: cache.ready)
    cache.forget(NS, "a-worker")
    assert cache.get(NS, "a-worker") is None


def test_namespaces_without_a_watch_are_never_served() -> None:
    here, there = FakeSource("billing"), FakeSource("shipping")
    cache = DeploymentCache([here, there], backoff_seconds=0.05)
    here.lists.put(([deployment("a-worker", 10)], "11"))
    cache.start()
    try:
        wait_for(lambda: cache.get("billing", "a-worker") is not None)
        assert not cache.ready  # shipping has not listed
        cache.put(deployment("x-worker", 3, namespace="elsewhere"))
        assert cache.get("elsewhere", "x-worker") is None
        there.lists.put(([deployment("s-worker", 12, namespace="shipping")], "13"))
        wait_for(lambda: cache.ready)
        assert cache.get("shipping", "s-worker") is not None
    finally:
        cache.stop()


def test_one_watch_for_all_namespaces_serves_every_namespace() -> None:
    everywhere = FakeSource(None)
    cache = DeploymentCache([everywhere])
    everywhere.lists.put(([deployment("a-worker", 10, namespace="anywhere")], "11"))
    cache.start()
    try:
        wait_for(lambda: cache.ready)
        assert cache.get("anywhere", "a-worker") is not None
    finally:
        cache.stop()


def test_stop_ends_the_watch_threads(source: FakeSource) -> None:
    cache = DeploymentCache([source])
    source.lists.put(([], "1"))
    cache.start()
    wait_for(lambda: source.watched_from == ["1"])
    cache.stop()
    assert source.closed.is_set()
    names = {t.name for t in threading.enumerate() if t.is_alive()}
    assert "deployment-cache-billing" not in names


def test_scale_selector_is_the_api_servers_text_of_match_labels() -> None:
    two = deployment("a-worker", 1, selector={"matchLabels": {"z": "1", "a": "2"}})
    assert CachedDeployment.from_json(two).selector == "a=2,z=1"
    expressions = {"matchExpressions": [{"key": "a", "operator": "Exists"}]}
    odd = deployment("a-worker", 1, selector=expressions)
    assert CachedDeployment.from_json(odd).selector is None  # read by GET of /scale instead


def test_missing_fields_read_as_empty() -> None:
    entry = CachedDeployment.from_json({"metadata": {"name": "a", "namespace": NS}})
    assert (entry.replicas, entry.status_replicas, entry.ready_replicas) == (0, 0, 0)
    assert (entry.labels, entry.annotations, entry.owners, entry.finalizers) == ({}, {}, (), ())
