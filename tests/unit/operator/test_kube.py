"""`kube.ClusterWorkload` at its seams: the Kubernetes API objects it calls are fakes here, and
`targets`' functions are recorded. What is checked is its own job: every call runs off the event
loop, each Secret the pods read is read once and hashed, the budget is only re-made when its spec
changes, and the status goes to the status subresource."""

from __future__ import annotations

import contextlib
import threading
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from flowable_worker_operator import kube, targets
from flowable_worker_operator.deployment_cache import DeploymentCache
from flowable_worker_operator.engines import Engine, EngineConfigError
from flowable_worker_operator.kube import ClusterWorkload
from flowable_worker_operator.secret_cache import REFRESH_SECONDS, SecretCache
from flowable_worker_operator.secrethash import SecretContent, secrets_hash
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
        return SimpleNamespace(
            data=self.secrets[name], metadata=SimpleNamespace(uid=f"uid-{name}")
        )


class Custom:
    def __init__(self) -> None:
        self.patches: list[tuple[Any, ...]] = []
        self.threads: set[int] = set()

    def patch_namespaced_custom_object_status(self, *args: Any) -> None:
        self.threads.add(threading.get_ident())
        self.patches.append(args)


def _workload(core: Core) -> ClusterWorkload:
    workload = ClusterWorkload(SimpleNamespace(), default_image="worker:1")
    workload._core = core  # the seam: one API object per kind, made from the ApiClient
    workload._custom = Custom()
    return workload


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    calls: list[tuple[str, Any]] = []

    def ensure_deployment(apps: Any, pool: Pool, **kwargs: Any) -> None:
        calls.append(("deployment", {"thread": threading.get_ident(), **kwargs}))

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
