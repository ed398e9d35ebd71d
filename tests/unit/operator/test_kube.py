"""`kube.ClusterWorkload` at its seams: the Kubernetes API objects it calls are fakes here, and
`targets`' functions are recorded. What is checked is its own job: every call runs off the event
loop, each Secret the pods read is read once and hashed, the budget is only re-made when its spec
changes, and the status goes to the status subresource."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, cast

import pytest
from kubernetes.client.exceptions import ApiException

from flowable_worker_operator import kube, targets
from flowable_worker_operator.deployment_cache import CachedDeployment, DeploymentCache
from flowable_worker_operator.engines import Engine, EngineConfigError
from flowable_worker_operator.kube import ClusterWorkload
from flowable_worker_operator.manifests import POOL_LABEL, TEMPLATE_HASH_ANNOTATION
from flowable_worker_operator.secret_cache import REFRESH_SECONDS, SecretCache
from flowable_worker_operator.secrethash import (
    SECRETS_HASH_ANNOTATION,
    SecretContent,
    secrets_hash,
)
from flowable_worker_operator.spec import GROUP, PLURAL, VERSION, Pool, parse_pool


def _pool(uid: str = "u1", **worker: Any) -> Pool:
    return parse_pool(
        {
            "metadata": {"name": "invoices", "namespace": "billing", "uid": uid, "generation": 1},
            "spec": {
                "engine": {"url": "http://flowable:8080", "authSecretRef": {"name": "creds"}},
                "topic": "t",
                "worker": {"handler": {"python": "a:b"}, **worker},
            },
        }
    )


class Core:
    """CoreV1Api's Secret reads: `secrets` by name, `refuse` names answered with that status."""

    def __init__(self, secrets: dict[str, dict[str, str]], refuse: dict[str, int] | None = None):
        self.secrets = secrets
        self.refuse = refuse or {}
        self.reads: list[str] = []
        self.threads: set[int] = set()

    def read_namespaced_secret(self, name: str, namespace: str) -> Any:
        self.threads.add(threading.get_ident())
        self.reads.append(f"{namespace}/{name}")
        if name in self.refuse:
            raise ApiException(status=self.refuse[name], reason="refused")
        if name not in self.secrets:
            raise ApiException(status=404, reason="Not Found")
        return SimpleNamespace(data=self.secrets[name], metadata=SimpleNamespace(uid=f"uid-{name}"))


class Custom:
    """CustomObjectsApi's status patch; answers as with `_preload_content=False`, a raw response
    whose connection must go back to the pool."""

    def __init__(self) -> None:
        self.patches: list[tuple[Any, ...]] = []
        self.threads: set[int] = set()
        self.answers: list[RawResponse] = []

    def patch_namespaced_custom_object_status(self, *args: Any, **kwargs: Any) -> Any:
        assert kwargs == {"_preload_content": False}  # the answer is not parsed
        self.threads.add(threading.get_ident())
        self.patches.append(args)
        self.answers.append(RawResponse())
        return self.answers[-1]


class RawResponse:
    def __init__(self) -> None:
        self.drained = self.released = False

    def drain_conn(self) -> None:
        self.drained = True

    def release_conn(self) -> None:
        self.released = True


def _workload(core: Core) -> ClusterWorkload:
    workload = ClusterWorkload(SimpleNamespace(), default_image="worker:1")
    workload._core = core  # the seam: one API object per kind, made from the ApiClient
    workload._custom = Custom()
    return workload


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    calls: list[tuple[str, Any]] = []

    def ensure_deployment(apps: Any, pool: Pool, **kwargs: Any) -> targets.DeploymentState:
        calls.append(("deployment", {"thread": threading.get_ident(), **kwargs}))
        return targets.DeploymentState("invoices-worker", "unchanged", 0, 0, "h", "1")

    def ensure_pod_disruption_budget(policy: Any, pool: Pool) -> str:
        calls.append(("budget", pool.uid))
        return "unchanged"

    monkeypatch.setattr(targets, "ensure_deployment", ensure_deployment)
    monkeypatch.setattr(targets, "ensure_pod_disruption_budget", ensure_pod_disruption_budget)
    return calls


async def test_ensure_hashes_the_secrets_the_pods_read_each_read_once(
    recorded: list[tuple[str, Any]],
) -> None:
    creds = {"username": "dQ==", "password": "cA=="}
    core = Core({"creds": creds})
    pool = _pool()
    await _workload(core).ensure(pool, initial_replicas=2)

    assert core.reads == ["billing/creds"]  # three keys of one Secret: one read
    assert threading.get_ident() not in core.threads  # off the event loop
    kind, kwargs = recorded[0]
    assert kind == "deployment"
    assert kwargs["thread"] != threading.get_ident()
    assert kwargs["initial_replicas"] == 2
    assert kwargs["default_image"] == "worker:1"
    refs = (("creds", "password"), ("creds", "token"), ("creds", "username"))
    expected = secrets_hash(refs, {"creds": SecretContent(uid="uid-creds", data=creds)})
    assert kwargs["secrets_hash"] == expected is not None


async def test_a_missing_secret_hashes_as_absent_and_a_changed_one_changes_the_hash(
    recorded: list[tuple[str, Any]],
) -> None:
    pool = _pool()
    await _workload(Core({})).ensure(pool, initial_replicas=0)
    await _workload(Core({"creds": {"token": "dA=="}})).ensure(pool, initial_replicas=0)
    await _workload(Core({"creds": {"token": "dTI="}})).ensure(pool, initial_replicas=0)
    hashes = [kwargs["secrets_hash"] for kind, kwargs in recorded if kind == "deployment"]
    assert len(set(hashes)) == 3


async def test_a_forbidden_secret_is_a_target_error_naming_it(
    recorded: list[tuple[str, Any]],
) -> None:
    with pytest.raises(targets.TargetError, match="not allowed to read Secret billing/creds"):
        await _workload(Core({}, refuse={"creds": 403})).ensure(_pool(), initial_replicas=0)
    with pytest.raises(ApiException):
        await _workload(Core({}, refuse={"creds": 500})).ensure(_pool(), initial_replicas=0)
    assert recorded == []  # nothing applied without knowing the Secrets


async def test_the_budget_is_made_again_only_when_its_spec_or_the_pool_changes(
    recorded: list[tuple[str, Any]],
) -> None:
    workload = _workload(Core({}))
    await workload.ensure(_pool(), initial_replicas=0)
    await workload.ensure(_pool(), initial_replicas=0)
    budget = {"podDisruptionBudget": {"maxUnavailable": 1}}
    await workload.ensure(_pool(**budget), initial_replicas=0)
    await workload.ensure(_pool(**budget), initial_replicas=0)
    await workload.ensure(_pool("u2", **budget), initial_replicas=0)  # deleted and re-created
    assert [uid for kind, uid in recorded if kind == "budget"] == ["u1", "u1", "u2"]
    assert sum(kind == "deployment" for kind, _ in recorded) == 5


async def test_status_goes_to_the_status_subresource_as_a_merge_patch() -> None:
    workload = _workload(Core({}))
    await workload.write_status("billing", "invoices", {"replicas": 3})
    custom = workload._custom
    assert custom.patches == [
        (GROUP, VERSION, "billing", PLURAL, "invoices", {"status": {"replicas": 3}})
    ]
    assert threading.get_ident() not in custom.threads
    (answer,) = custom.answers
    assert answer.drained  # the connection goes back to the pool
    assert answer.released


async def test_the_engine_is_resolved_with_the_pools_namespace_through_the_secret_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[str, str]] = []

    def resolve(secrets: Any, namespace: str, engine: Any) -> str:
        seen.append((namespace, engine.url))
        secrets.read_namespaced_secret("creds", namespace)
        return "engine"

    monkeypatch.setattr(kube, "resolve_engine", resolve)
    core = Core({"creds": {"token": "dA=="}})
    workload = _workload(core)
    assert await workload.engine(_pool()) == "engine"
    assert await workload.engine(_pool()) == "engine"
    assert seen == [("billing", "http://flowable:8080")] * 2
    assert core.reads == ["billing/creds"]  # the second tick's read came from the cache


async def test_the_deployment_cache_reaches_ensure_and_scale(
    recorded: list[tuple[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator's watch of its Deployments is what `targets` reads them from."""
    cache = DeploymentCache([])
    scaled: list[Any] = []

    def read_scale(api_client: Any, pool: Pool, deployments: Any = None) -> targets.Scale:
        scaled.append(deployments)
        return targets.Scale(replicas=1, current_replicas=1, selector="")

    monkeypatch.setattr(targets, "read_scale", read_scale)
    workload = ClusterWorkload(SimpleNamespace(), default_image="worker:1", deployments=cache)
    workload._core = Core({})  # type: ignore[assignment]  # the seam, as in _workload
    await workload.ensure(_pool(), initial_replicas=0)
    await workload.scale(_pool())
    (kwargs,) = [kwargs for kind, kwargs in recorded if kind == "deployment"]
    assert kwargs["cache"] is cache
    assert scaled == [cache]


# --- Secrets through the cache (secret_cache.SecretCache; its own rules: test_secret_cache.py) --


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _cached_workload(core: Core, clock: Clock) -> ClusterWorkload:
    workload = ClusterWorkload(
        SimpleNamespace(),
        default_image="worker:1",
        secrets=SecretCache(lambda name, ns: core.read_namespaced_secret(name, ns), clock=clock),
    )
    workload._core = core  # type: ignore[assignment]
    workload._custom = Custom()  # type: ignore[assignment]
    return workload


def _generation(pool: Pool, generation: int) -> Pool:
    return pool.model_copy(update={"generation": generation})


async def _tick(workload: ClusterWorkload, pool: Pool) -> None:
    """What a tick asks of the Secrets: the engine's, then the pods' (reconcile's order)."""
    with contextlib.suppress(EngineConfigError):
        await workload.engine(pool)
    await workload.ensure(pool, initial_replicas=0)


async def test_a_tick_reads_each_secret_once_for_the_probe_and_the_pods(
    recorded: list[tuple[str, Any]],
) -> None:
    core = Core({"creds": {"username": "dQ==", "password": "cA=="}})
    workload = _workload(core)  # as serve makes it: with its own SecretCache
    await _tick(workload, _pool())
    await _tick(workload, _pool())
    assert core.reads == ["billing/creds"]  # was one read for each, at every tick: 4


async def test_a_found_secret_is_read_again_only_after_the_refresh_time(
    recorded: list[tuple[str, Any]],
) -> None:
    clock = Clock()
    core = Core({"creds": {"token": "dA=="}})
    workload = _cached_workload(core, clock)
    for _ in range(30):  # 29 s of ticks every second
        await _tick(workload, _pool())
        clock.now += 1
    assert core.reads == ["billing/creds"]
    core.secrets["creds"] = {"token": "dTI="}  # rotated
    clock.now += REFRESH_SECONDS
    await _tick(workload, _pool())
    assert core.reads == ["billing/creds"] * 2
    hashes = [kwargs["secrets_hash"] for kind, kwargs in recorded if kind == "deployment"]
    assert hashes[-1] != hashes[0]  # the rotated value reaches the pod template


async def test_a_missing_secret_is_looked_up_with_a_back_off_not_at_every_tick(
    recorded: list[tuple[str, Any]],
) -> None:
    clock = Clock()
    core = Core({})
    workload = _cached_workload(core, clock)
    read_at: list[float] = []
    for second in range(120):
        before = len(core.reads)
        await _tick(workload, _pool())
        if len(core.reads) > before:
            read_at.append(second)
        clock.now += 1
    # 5 s, 10 s, 20 s, then every 30 s; was 2 reads a tick, 240 in these 120 ticks.
    assert read_at == [0, 5, 15, 35, 65, 95]
    assert len(core.reads) == 6


async def test_a_secret_created_later_is_seen_within_the_refresh_time(
    recorded: list[tuple[str, Any]],
) -> None:
    clock = Clock()
    core = Core({})
    workload = _cached_workload(core, clock)
    for _ in range(100):  # long enough for the back-off to reach its cap
        await _tick(workload, _pool())
        clock.now += 1
    core.secrets["creds"] = {"token": "dA=="}
    created = clock.now
    while not isinstance(await _engine_or_error(workload, _pool()), Engine):
        clock.now += 1
    assert clock.now - created <= REFRESH_SECONDS


async def _engine_or_error(workload: ClusterWorkload, pool: Pool) -> Engine | EngineConfigError:
    try:
        return await workload.engine(pool)
    except EngineConfigError as error:
        return error


async def test_a_pools_spec_change_reads_its_secrets_again_at_once_and_once(
    recorded: list[tuple[str, Any]],
) -> None:
    clock = Clock()
    core = Core({})
    workload = _cached_workload(core, clock)
    await _tick(workload, _pool())
    clock.now += 1
    await _tick(workload, _pool())
    assert len(core.reads) == 1
    core.secrets["creds"] = {"token": "dA=="}
    await _tick(workload, _generation(_pool(), 2))  # the user edited the pool
    assert len(core.reads) == 2  # at once, and once for the probe and the pods
    assert isinstance(await _engine_or_error(workload, _generation(_pool(), 2)), Engine)
    await _tick(workload, _pool("u2"))  # deleted and recreated under the same name
    assert len(core.reads) == 3


async def test_pools_naming_one_secret_share_its_reads(
    recorded: list[tuple[str, Any]],
) -> None:
    clock = Clock()
    core = Core({})
    workload = _cached_workload(core, clock)
    pools = [
        parse_pool(
            {
                "metadata": {"name": f"p{i}", "namespace": "billing", "uid": f"u{i}",
                             "generation": 1},
                "spec": {
                    "engine": {"url": "http://flowable:8080",
                               "authSecretRef": {"name": "missing-credentials"}},
                    "topic": "t",
                    "worker": {"handler": {"python": "a:b"}},
                },
            }
        )
        for i in range(50)
    ]  # fmt: skip
    for _ in range(16):  # 16 ticks each, one a second
        for pool in pools:
            await _tick(workload, pool)
        clock.now += 1
    # Was 50 pools x 2 reads x 16 ticks = 1600 (bench/operator_scale.py --bad-every 10).
    assert core.reads == ["billing/missing-credentials"] * 3  # at 0, 5 and 15 s


# --- an unchanged pool's ensure and /scale: answered from the caches, on the event loop --------


class Apps:
    """The Deployment calls `targets.ensure_deployment` makes, against one stored Deployment
    (`live`) whose every write goes into `watch` as the watch would bring it."""

    def __init__(self, watch: Deployments) -> None:
        self.live: dict[str, Any] | None = None
        self.calls: list[str] = []
        self.watch = watch
        self._rv = 0

    def read_namespaced_deployment(self, **kwargs: Any) -> Any:
        self.calls.append("get")
        if self.live is None:
            raise ApiException(status=404)
        return _Raw(self.live)

    def create_namespaced_deployment(self, *, body: dict[str, Any], **kwargs: Any) -> Any:
        self.calls.append("create")
        return _Raw(self.store(body))

    def replace_namespaced_deployment(self, *, body: dict[str, Any], **kwargs: Any) -> Any:
        self.calls.append("replace")
        assert self.live is not None
        assert body["metadata"]["resourceVersion"] == self.live["metadata"]["resourceVersion"]
        return _Raw(self.store(body))

    def store(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Keep `body` as the server would (a new resourceVersion), and let the watch see it."""
        self._rv += 1
        stored: dict[str, Any] = json.loads(json.dumps(body))
        stored["metadata"].update(resourceVersion=str(self._rv), uid="deployment-uid")
        stored.setdefault("status", {})
        self.live = stored
        self.watch.put(stored)
        return stored

    def delete(self) -> None:
        """Someone deletes the Deployment: the watch drops it."""
        self.live = None
        self.watch.forget("billing", "invoices-worker")

    @property
    def template(self) -> dict[str, Any]:
        assert self.live is not None
        template: dict[str, Any] = self.live["spec"]["template"]
        return template


class _Raw:
    """A `_preload_content=False` answer."""

    def __init__(self, body: Mapping[str, Any]) -> None:
        self.data = json.dumps(body).encode()

    def release_conn(self) -> None:
        pass


class Deployments:
    """What `DeploymentCache` answers once listed: the last version put, by (namespace, name)."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], CachedDeployment] = {}

    def get(self, namespace: str, name: str) -> CachedDeployment | None:
        return self.entries.get((namespace, name))

    def put(self, obj: Mapping[str, Any]) -> None:
        entry = CachedDeployment.from_json(obj)
        self.entries[(entry.namespace, entry.name)] = entry

    def forget(self, namespace: str, name: str) -> None:
        self.entries.pop((namespace, name), None)


class Policy:
    def read_namespaced_pod_disruption_budget(self, **kwargs: Any) -> Any:
        raise ApiException(status=404)


@dataclass
class Cluster:
    """A `ClusterWorkload` over fakes of the API server, its Deployment watch and Secrets."""

    workload: ClusterWorkload
    apps: Apps
    deployments: Deployments
    core: Core
    clock: Clock
    ensured: list[str]  # pools `targets.ensure_deployment` was called for
    threads: list[str]  # what `asyncio.to_thread` was asked to run

    async def ensure(self, pool: Pool) -> None:
        await self.workload.ensure(pool, initial_replicas=1)


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Cluster:
    deployments = Deployments()
    apps = Apps(deployments)
    core = Core({"creds": {"token": "dA=="}})
    clock = Clock()
    workload = ClusterWorkload(
        SimpleNamespace(),
        default_image="worker:1",
        deployments=cast(DeploymentCache, deployments),
        secrets=SecretCache(lambda name, ns: core.read_namespaced_secret(name, ns), clock=clock),
    )
    workload._apps = apps  # type: ignore[assignment]
    workload._core = core  # type: ignore[assignment]
    workload._policy = Policy()  # type: ignore[assignment]
    made = Cluster(workload, apps, deployments, core, clock, [], [])
    ensure_deployment = targets.ensure_deployment

    def counted(*args: Any, **kwargs: Any) -> targets.DeploymentState:
        made.ensured.append(args[1].name)
        return ensure_deployment(*args, **kwargs)

    to_thread = asyncio.to_thread

    async def recorded(function: Any, /, *args: Any, **kwargs: Any) -> Any:
        made.threads.append(getattr(function, "__name__", repr(function)))
        return await to_thread(function, *args, **kwargs)

    monkeypatch.setattr(targets, "ensure_deployment", counted)
    monkeypatch.setattr(asyncio, "to_thread", recorded)
    return made


def _respecced(pool: Pool, generation: int, **worker: Any) -> Pool:
    """`pool` as the user edited its `spec.worker` (the API server's new generation)."""
    assert pool.spec.worker is not None
    changed = pool.spec.worker.model_copy(update=worker)
    spec = pool.spec.model_copy(update={"worker": changed})
    return pool.model_copy(update={"generation": generation, "spec": spec})


async def test_an_unchanged_pools_ensure_and_scale_make_no_request_and_no_thread_hand_off(
    cluster: Cluster,
) -> None:
    pool = _pool()
    await cluster.ensure(pool)  # creates it
    assert cluster.apps.calls == ["get", "create"]
    cluster.threads.clear()
    for _ in range(20):  # 20 ticks within the Secret cache's refresh time
        await cluster.ensure(pool)
        scale = await cluster.workload.scale(pool)
        cluster.clock.now += 1
    assert scale == targets.Scale(replicas=1, current_replicas=0, selector=f"{POOL_LABEL}=invoices")
    assert cluster.ensured == ["invoices"]  # was one build and comparison of it per tick
    assert cluster.apps.calls == ["get", "create"]
    assert cluster.core.reads == ["billing/creds"]
    assert cluster.threads == []


async def test_a_rotated_secret_reaches_the_pod_template_though_nothing_else_changed(
    cluster: Cluster,
) -> None:
    pool = _pool()
    await cluster.ensure(pool)
    before = cluster.apps.template["metadata"]["annotations"][SECRETS_HASH_ANNOTATION]
    cluster.core.secrets["creds"] = {"token": "dTI="}  # rotated
    await cluster.ensure(pool)
    assert cluster.apps.calls == ["get", "create"]  # not yet read again: the cache's 30 s
    cluster.clock.now += REFRESH_SECONDS
    await cluster.ensure(pool)
    assert cluster.apps.calls == ["get", "create", "replace"]
    after = cluster.apps.template["metadata"]["annotations"][SECRETS_HASH_ANNOTATION]
    assert after != before
    await cluster.ensure(pool)
    assert cluster.ensured == ["invoices"] * 2  # and skipped again once made right


async def test_a_secret_created_later_reaches_the_pod_template(cluster: Cluster) -> None:
    cluster.core.secrets.clear()
    pool = _pool()
    await cluster.ensure(pool)
    absent = cluster.apps.template["metadata"]["annotations"][SECRETS_HASH_ANNOTATION]
    cluster.core.secrets["creds"] = {"token": "dA=="}
    for _ in range(int(REFRESH_SECONDS)):
        cluster.clock.now += 1
        await cluster.ensure(pool)
    assert cluster.apps.calls == ["get", "create", "replace"]
    assert cluster.apps.template["metadata"]["annotations"][SECRETS_HASH_ANNOTATION] != absent


async def test_a_deployment_edited_by_someone_else_is_compared_again_and_repaired(
    cluster: Cluster,
) -> None:
    pool = _pool()
    await cluster.ensure(pool)
    live = cluster.apps.live
    assert live is not None
    edited = json.loads(json.dumps(live))
    edited["metadata"]["annotations"][TEMPLATE_HASH_ANNOTATION] = "edited"
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = "someone-else:9"
    cluster.apps.store(edited)  # `kubectl apply` of another manifest; the watch brings it
    await cluster.ensure(pool)
    assert cluster.apps.calls == ["get", "create", "replace"]
    assert cluster.apps.template["spec"]["containers"][0]["image"] == "worker:1"
    await cluster.ensure(pool)
    assert cluster.ensured == ["invoices"] * 2


async def test_any_new_version_of_the_deployment_is_compared_again(cluster: Cluster) -> None:
    """Even a change that needs no repair (`kubectl scale`, the controller's status): the
    comparison runs once for that version, and writes nothing."""
    pool = _pool()
    await cluster.ensure(pool)
    live = cluster.apps.live
    assert live is not None
    cluster.apps.store({**live, "spec": {**live["spec"], "replicas": 3}})
    await cluster.ensure(pool)
    await cluster.ensure(pool)
    assert cluster.ensured == ["invoices"] * 2
    assert cluster.apps.calls == ["get", "create"]
    assert (await cluster.workload.scale(pool)).replicas == 3


async def test_a_deployment_deleted_by_someone_else_is_made_again(cluster: Cluster) -> None:
    pool = _pool()
    await cluster.ensure(pool)
    cluster.apps.delete()
    await cluster.ensure(pool)
    assert cluster.apps.calls == ["get", "create", "get", "create"]
    await cluster.ensure(pool)
    assert len(cluster.ensured) == 2


async def test_a_spec_change_is_applied(cluster: Cluster) -> None:
    pool = _pool()
    await cluster.ensure(pool)
    await cluster.ensure(_respecced(pool, 2, image="worker:2"))
    assert cluster.apps.calls == ["get", "create", "replace"]
    assert cluster.apps.template["spec"]["containers"][0]["image"] == "worker:2"


async def test_a_spec_changed_under_the_same_generation_is_applied_too(cluster: Cluster) -> None:
    """The API server moves the generation with every spec change; the spec is compared as well,
    so a body without that bookkeeping (or a re-parse) cannot leave a change unapplied."""
    pool = _pool()
    await cluster.ensure(pool)
    await cluster.ensure(_respecced(pool, 1, image="worker:2"))
    assert cluster.apps.template["spec"]["containers"][0]["image"] == "worker:2"
    await cluster.ensure(_pool())  # back, parsed anew: equal to the first, so compared again
    assert cluster.apps.template["spec"]["containers"][0]["image"] == "worker:1"


async def test_a_pool_recreated_under_the_same_name_is_compared_again(cluster: Cluster) -> None:
    pool = _pool()
    await cluster.ensure(pool)
    with pytest.raises(targets.NotControlledError):  # the old pool's Deployment, not yet gone
        await cluster.ensure(_pool("u2"))
    with pytest.raises(targets.NotControlledError):  # a failure is not remembered as done
        await cluster.ensure(_pool("u2"))
    assert len(cluster.ensured) == 3


async def test_without_a_deployment_watch_every_ensure_compares(
    recorded: list[tuple[str, Any]],
) -> None:
    workload = _workload(Core({}))
    for _ in range(3):
        await workload.ensure(_pool(), initial_replicas=0)
    assert sum(kind == "deployment" for kind, _ in recorded) == 3


async def test_the_scale_of_a_scale_target_ref_is_read_in_a_thread(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_scale(api_client: Any, pool: Pool, cache: Any = None) -> targets.Scale:
        return targets.Scale(replicas=4, current_replicas=4, selector="s")

    monkeypatch.setattr(targets, "read_scale", read_scale)
    referring = parse_pool(
        {
            "metadata": {"name": "invoices", "namespace": "billing", "uid": "u1", "generation": 1},
            "spec": {
                "engine": {"url": "http://flowable:8080"},
                "topic": "t",
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
                "scaling": {"jobsPerReplica": 1},
            },
        }
    )
    assert (await cluster.workload.scale(referring)).replicas == 4
    assert (await cluster.workload.scale(_pool())).replicas == 4  # not in the watch yet
    assert cluster.threads == ["read_scale", "read_scale"]
