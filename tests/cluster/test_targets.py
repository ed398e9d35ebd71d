"""targets.py against a real API server, controller manager and kwok.

The owner is a real ExternalWorkerPool (the CRD from deploy/crds), so ownerReferences, the garbage
collector, the /scale subresources and the ReplicaSet controller's pod-deletion-cost ranking are
the real thing, not our idea of them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML comes with kubernetes
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from flowable_worker_operator.manifests import POOL_LABEL, TEMPLATE_HASH_ANNOTATION
from flowable_worker_operator.spec import GROUP, PLURAL, VERSION, Pool, parse_pool
from flowable_worker_operator.targets import (
    DELETION_COST_ANNOTATION,
    NotControlledError,
    TargetNotFoundError,
    ensure_deployment,
    read_scale,
    set_deletion_costs,
    set_replicas,
)
from tests.support.waiting import poll_until

pytestmark = pytest.mark.cluster

CRD = Path(__file__).parents[2] / "deploy/crds/externalworkerpools.flowable-worker.io.yaml"
IMAGE = "flowable-worker:test"


@pytest.fixture(scope="module")
def pool_crd(api_client: Any) -> None:
    ext: Any = k8s_client.ApiextensionsV1Api(api_client)
    try:
        ext.create_custom_resource_definition(yaml.safe_load(CRD.read_text()))
    except ApiException as exc:  # another module of the session may have installed it
        if exc.status != 409:
            raise

    def established() -> bool:
        crd = ext.read_custom_resource_definition(f"{PLURAL}.{GROUP}")
        return any(
            c.type == "Established" and c.status == "True" for c in crd.status.conditions or []
        )

    poll_until(established)


def create_pool(api_client: Any, namespace: str, name: str, spec: dict[str, Any]) -> Pool:
    """A real pool object (so the Deployment's ownerReference points at something that exists)."""
    custom: Any = k8s_client.CustomObjectsApi(api_client)
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ExternalWorkerPool",
        "metadata": {"name": name},
        "spec": {"engine": {"url": "http://flowable:8080/flowable-rest"}, "topic": "t", **spec},
    }

    def create() -> Any:
        try:
            return custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
        except ApiException as exc:
            if exc.status == 404:  # discovery of a new CRD can lag "Established"
                return None
            raise

    return parse_pool(poll_until(create, timeout=15))


def worker_pool(api_client: Any, namespace: str, name: str = "inv", **worker: Any) -> Pool:
    spec = {"worker": {"handler": {"python": "m:f"}, **worker}}
    return create_pool(api_client, namespace, name, spec)


def update_pool(api_client: Any, pool: Pool, worker: dict[str, Any]) -> Pool:
    custom: Any = k8s_client.CustomObjectsApi(api_client)
    patched = custom.patch_namespaced_custom_object(
        GROUP, VERSION, pool.namespace, PLURAL, pool.name, {"spec": {"worker": worker}}
    )
    return parse_pool(patched)


def running_pods(core: Any, namespace: str, selector: str) -> list[Any]:
    pods = core.list_namespaced_pod(namespace, label_selector=selector).items
    return [
        p for p in pods if p.status.phase == "Running" and p.metadata.deletion_timestamp is None
    ]


def wait_running(core: Any, namespace: str, selector: str, count: int) -> list[Any]:
    def enough() -> list[Any] | None:
        pods = running_pods(core, namespace, selector)
        return pods if len(pods) == count else None

    result: list[Any] = poll_until(enough, timeout=60)
    return result


def worker_env(deployment: Any) -> dict[str, str]:
    (container,) = deployment.spec.template.spec.containers
    return {e.name: e.value for e in container.env}


# --- the owned Deployment -----------------------------------------------------------------------


def test_ensure_creates_the_deployment_and_its_pods_run(
    api_client: Any, namespace: str, pool_crd: None
) -> None:
    apps: Any = k8s_client.AppsV1Api(api_client)
    core: Any = k8s_client.CoreV1Api(api_client)
    pool = worker_pool(api_client, namespace)

    state = ensure_deployment(apps, pool, default_image=IMAGE, initial_replicas=2)

    assert (state.name, state.action, state.replicas) == ("inv-worker", "created", 2)
    pods = wait_running(core, namespace, f"{POOL_LABEL}=inv", 2)
    assert all(p.spec.containers[0].image == IMAGE for p in pods)
    live = apps.read_namespaced_deployment("inv-worker", namespace)
    (owner,) = live.metadata.owner_references
    assert (owner.kind, owner.name, owner.uid, owner.controller) == (
        "ExternalWorkerPool",
        "inv",
        pool.uid,
        True,
    )


def test_ensure_again_writes_nothing(api_client: Any, namespace: str, pool_crd: None) -> None:
    apps: Any = k8s_client.AppsV1Api(api_client)
    pool = worker_pool(api_client, namespace)
    first = ensure_deployment(apps, pool, default_image=IMAGE, initial_replicas=1)
    # Let the controllers settle the status; then only our write could change resourceVersion.
    poll_until(
        lambda: apps.read_namespaced_deployment("inv-worker", namespace).status.ready_replicas == 1,
        timeout=60,
    )
    settled = apps.read_namespaced_deployment("inv-worker", namespace).metadata.resource_version

    again = ensure_deployment(apps, pool, default_image=IMAGE, initial_replicas=5)

    assert again.action == "unchanged"
    assert again.template_hash == first.template_hash
    assert again.resource_version == settled
    live = apps.read_namespaced_deployment("inv-worker", namespace)
    assert live.metadata.resource_version == settled


def test_a_spec_change_updates_the_template_but_keeps_the_scalers_replicas(
    api_client: Any, namespace: str, pool_crd: None
) -> None:
    apps: Any = k8s_client.AppsV1Api(api_client)
    core: Any = k8s_client.CoreV1Api(api_client)
    pool = worker_pool(api_client, namespace, concurrency=4)
    first = ensure_deployment(apps, pool, default_image=IMAGE, initial_replicas=1)
    set_replicas(api_client, pool, 3)

    changed = update_pool(api_client, pool, {"concurrency": 8})
    state = ensure_deployment(apps, changed, default_image=IMAGE, initial_replicas=1)

    assert state.action == "updated"
    assert state.template_hash != first.template_hash
    live = apps.read_namespaced_deployment("inv-worker", namespace)
    assert live.spec.replicas == 3
    assert live.metadata.annotations[TEMPLATE_HASH_ANNOTATION] == state.template_hash
    assert worker_env(live)["FLOWABLE_WORKER_CONCURRENCY"] == "8"
    # The rollout really happens: every running pod ends up with the new template.
    poll_until(
        lambda: (
            len(pods := running_pods(core, namespace, f"{POOL_LABEL}=inv")) == 3
            and all(
                {e.name: e.value for e in p.spec.containers[0].env}["FLOWABLE_WORKER_CONCURRENCY"]
                == "8"
                for p in pods
            )
        ),
        timeout=90,
    )
    assert ensure_deployment(apps, changed, default_image=IMAGE, initial_replicas=1).action == (
        "unchanged"
    )


def test_a_foreign_deployment_of_the_same_name_is_left_alone(
    api_client: Any, namespace: str, pool_crd: None
) -> None:
    apps: Any = k8s_client.AppsV1Api(api_client)
    pool = worker_pool(api_client, namespace)
    apps.create_namespaced_deployment(namespace, plain_deployment("inv-worker", replicas=0))

    with pytest.raises(NotControlledError, match="not by ExternalWorkerPool inv"):
        ensure_deployment(apps, pool, default_image=IMAGE, initial_replicas=1)

    # Its controllers update its status; its spec and metadata stay the owner's.
    after = apps.read_namespaced_deployment("inv-worker", namespace)
    assert after.metadata.generation == 1
    assert after.metadata.owner_references is None
    assert TEMPLATE_HASH_ANNOTATION not in (after.metadata.annotations or {})


# --- /scale -------------------------------------------------------------------------------------


def test_set_and_read_replicas_of_the_owned_deployment(
    api_client: Any, namespace: str, pool_crd: None
) -> None:
    apps: Any = k8s_client.AppsV1Api(api_client)
    pool = worker_pool(api_client, namespace)
    ensure_deployment(apps, pool, default_image=IMAGE, initial_replicas=1)

    set_replicas(api_client, pool, 3)

    scale = poll_until(lambda: (s := read_scale(api_client, pool)).current_replicas == 3 and s)
    assert (scale.replicas, scale.selector) == (3, f"{POOL_LABEL}=inv")


def test_a_missing_owned_deployment_is_a_target_error(
    api_client: Any, namespace: str, pool_crd: None
) -> None:
    pool = worker_pool(api_client, namespace)
    with pytest.raises(TargetNotFoundError, match="inv-worker"):
        read_scale(api_client, pool)
    with pytest.raises(TargetNotFoundError):
        set_replicas(api_client, pool, 1)


def plain_deployment(name: str, *, replicas: int) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }


def target_pool(api_client: Any, namespace: str, ref: dict[str, Any]) -> Pool:
    return create_pool(
        api_client,
        namespace,
        "ext",
        {"scaleTargetRef": ref, "scaling": {"jobsPerReplica": 2}},
    )


def test_scale_target_ref_to_an_existing_deployment(
    api_client: Any, namespace: str, pool_crd: None
) -> None:
    apps: Any = k8s_client.AppsV1Api(api_client)
    apps.create_namespaced_deployment(namespace, plain_deployment("existing", replicas=1))
    pool = target_pool(api_client, namespace, {"name": "existing"})

    set_replicas(api_client, pool, 2)

    scale = poll_until(lambda: (s := read_scale(api_client, pool)).current_replicas == 2 and s)
    assert (scale.replicas, scale.selector) == (2, "app=existing")


def test_scale_target_ref_to_a_statefulset(api_client: Any, namespace: str, pool_crd: None) -> None:
    apps: Any = k8s_client.AppsV1Api(api_client)
    core: Any = k8s_client.CoreV1Api(api_client)
    body = plain_deployment("db", replicas=1)
    body["spec"]["serviceName"] = "db"
    apps.create_namespaced_stateful_set(namespace, body)
    pool = target_pool(api_client, namespace, {"kind": "StatefulSet", "name": "db"})

    set_replicas(api_client, pool, 3)

    scale = poll_until(
        lambda: (s := read_scale(api_client, pool)).current_replicas == 3 and s, timeout=60
    )
    assert (scale.replicas, scale.selector) == (3, "app=db")
    wait_running(core, namespace, "app=db", 3)


def test_scale_target_ref_of_another_kind_goes_through_discovery(
    api_client: Any, namespace: str, pool_crd: None
) -> None:
    apps: Any = k8s_client.AppsV1Api(api_client)
    apps.create_namespaced_replica_set(namespace, plain_deployment("rs", replicas=1))
    pool = target_pool(api_client, namespace, {"kind": "ReplicaSet", "name": "rs"})

    set_replicas(api_client, pool, 2)

    scale = poll_until(lambda: (s := read_scale(api_client, pool)).current_replicas == 2 and s)
    assert (scale.replicas, scale.selector) == (2, "app=rs")


@pytest.mark.parametrize(
    "ref",
    [
        {"name": "nothing-here"},
        {"kind": "StatefulSet", "name": "nothing-here"},
        {"kind": "ReplicaSet", "name": "nothing-here"},
        {"apiVersion": "example.com/v1", "kind": "Gadget", "name": "g"},
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "kube-root-ca.crt"},  # no /scale
    ],
)
def test_a_missing_or_unscalable_target_is_a_target_error(
    api_client: Any, namespace: str, pool_crd: None, ref: dict[str, Any]
) -> None:
    pool = target_pool(api_client, namespace, ref)
    with pytest.raises(TargetNotFoundError):
        read_scale(api_client, pool)


# --- pod-deletion-cost --------------------------------------------------------------------------


def test_scale_down_removes_idle_pods_before_busy_ones(
    api_client: Any, namespace: str, pool_crd: None
) -> None:
    """The real ReplicaSet controller honours the costs set_deletion_costs writes.

    The busy pods are deliberately the two *newest*: without costs the controller removes newer
    pods first, so the surviving set only comes out right if the costs are obeyed.
    """
    apps: Any = k8s_client.AppsV1Api(api_client)
    core: Any = k8s_client.CoreV1Api(api_client)
    pool = worker_pool(api_client, namespace)
    ensure_deployment(apps, pool, default_image=IMAGE, initial_replicas=2)
    selector = read_scale(api_client, pool).selector
    old = {p.metadata.name for p in wait_running(core, namespace, selector, 2)}
    time.sleep(4)  # so "newer" is clear even in the controller's logarithmic age buckets
    set_replicas(api_client, pool, 4)
    busy = {p.metadata.name for p in wait_running(core, namespace, selector, 4)} - old
    assert len(busy) == 2
    locks = dict(zip(sorted(busy), (3, 1), strict=True))

    assert set_deletion_costs(core, namespace, selector, locks) == 4
    assert set_deletion_costs(core, namespace, selector, locks) == 0  # nothing changed
    costs = {
        p.metadata.name: p.metadata.annotations[DELETION_COST_ANNOTATION]
        for p in running_pods(core, namespace, selector)
    }
    assert costs == {**dict.fromkeys(old, "0"), **{k: str(v) for k, v in locks.items()}}

    set_replicas(api_client, pool, 2)

    poll_until(
        lambda: {p.metadata.name for p in running_pods(core, namespace, selector)} == busy,
        timeout=60,
    )
    set_replicas(api_client, pool, 1)
    survivor = poll_until(
        lambda: (p := running_pods(core, namespace, selector)) and len(p) == 1 and p, timeout=60
    )
    assert survivor[0].metadata.name == max(locks, key=lambda name: locks[name])
