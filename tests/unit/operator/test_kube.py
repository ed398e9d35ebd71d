"""`kube.ClusterWorkload` at its seams: the Kubernetes API objects it calls are fakes here, and
`targets`' functions are recorded. What is checked is its own job: every call runs off the event
loop, each Secret the pods read is read once and hashed, the budget is only re-made when its spec
changes, and the status goes to the status subresource."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from flowable_worker_operator import kube, targets
from flowable_worker_operator.deployment_cache import DeploymentCache
from flowable_worker_operator.kube import ClusterWorkload
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


async def test_the_engine_is_resolved_with_the_pools_namespace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[Any, str, str]] = []

    def resolve(core: Any, namespace: str, engine: Any) -> str:
        seen.append((core, namespace, engine.url))
        return "engine"

    monkeypatch.setattr(kube, "resolve_engine", resolve)
    core = Core({})
    assert await _workload(core).engine(_pool()) == "engine"
    assert seen == [(core, "billing", "http://flowable:8080")]


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
