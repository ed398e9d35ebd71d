"""The operator against an engine after a year of deployments (issue 10), all real: the local
cluster, the real Flowable server, the operator as a process.

- 220 versions of a model whose topic is an expression beside a plain pool: the plain pool stays
  Ready, hears of the expression topics once (one bounded Warning, one line in status), and counts
  its own jobs;
- a topic no deployed model uses: Ready=False/TopicNotFound and a Warning, and a busy pool whose
  topic goes missing keeps its replicas;
- three pools on one topic: each says SharedBacklog=True naming the other two, with a Warning;
- a selector by definition key counts a version deployed after the pool; a selector pinned to a
  definition that a newer version replaced, and that has no jobs, is warned about.

Worker pods are kwok pods only (no worker processes): the jobs stay where they are, so the counts
are exact.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client

from localstack.cluster import LocalCluster
from localstack.operator_process import OperatorProcess, OperatorProcessError, run_operator
from tests.support.real_flowable import RealFlowable, one_task_model
from tests.support.waiting import poll_until

from .conftest import (
    GROUP,
    PLURAL,
    VERSION,
    condition,
    create_pool,
    deployment_replicas,
    events_for,
    read_pool,
)

pytestmark = pytest.mark.timeout(600)

EXPRESSION_VERSIONS = 220


@pytest.fixture
def other_namespace(api_client: Any) -> Iterator[str]:
    """A second namespace, for pools of one topic in two namespaces."""
    name = f"t2-{uuid.uuid4().hex[:8]}"
    core = k8s_client.CoreV1Api(api_client)
    core.create_namespace(k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name=name)))
    poll_until(
        lambda: (
            "default" in {a.metadata.name for a in core.list_namespaced_service_account(name).items}
        ),
        timeout=30,
    )
    yield name
    core.delete_namespace(name)


@pytest.fixture
def operator(
    cluster: LocalCluster,
    crd: Path,
    namespace: str,
    other_namespace: str,
    api_client: Any,
    tmp_path: Path,
) -> Iterator[OperatorProcess]:
    """The operator watching this test's two namespaces, re-listing definitions every 2 s (so
    a version deployed during a test is seen at once)."""
    try:
        with run_operator(
            cluster.kubeconfig,
            namespace,
            tmp_path / "operator.log",
            extra_args=["--namespace", other_namespace, "--discovery-interval", "2"],
        ) as running:
            yield running
            # The operator finalizes the first namespace's pools on the way out; these, here.
            custom = k8s_client.CustomObjectsApi(api_client)
            for pool in custom.list_namespaced_custom_object(
                GROUP, VERSION, other_namespace, PLURAL
            )["items"]:
                custom.delete_namespaced_custom_object(
                    GROUP, VERSION, other_namespace, PLURAL, pool["metadata"]["name"]
                )
            poll_until(
                lambda: (
                    not custom.list_namespaced_custom_object(
                        GROUP, VERSION, other_namespace, PLURAL
                    )["items"]
                ),
                timeout=30,
            )
    except OperatorProcessError as error:
        pytest.fail(str(error)[-4000:])


def _suffix() -> str:
    return uuid.uuid4().hex[:8]


def _pool(real: RealFlowable, topic: str, **fields: Any) -> dict[str, Any]:
    """A pool whose pods are kwok pods only; 2 jobs per replica, quick to scale either way."""
    return {
        "engine": {"url": real.base_url},
        "topic": topic,
        "worker": {"handler": {"python": "tests.e2e.handlers:work"}, "concurrency": 2},
        "scaling": {
            "maxReplicas": 3,
            "pollingInterval": "1s",
            "cooldownPeriod": "1s",
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}},
        },
        **fields,
    }


def _warnings(api_client: Any, namespace: str, name: str, reason: str) -> list[str]:
    return [
        message
        for kind, why, message in events_for(api_client, namespace, name)
        if kind == "Warning" and why == reason
    ]


async def _deploy_versions(real: RealFlowable, key: str, topic: str, count: int) -> None:
    """`count` versions of a one-task model (element `dyn`) on `topic`, one after the other
    (Flowable numbers a key's versions in the deploying transaction: parallel ones collide)."""
    xml = one_task_model(scope_type="bpmn", definition_key=key, topic=topic, element_id="dyn")
    async with real.api() as api:
        for _ in range(count):
            await api.deploy(xml, scope_type="bpmn")


def _ready(api_client: Any, namespace: str, name: str) -> dict[str, Any]:
    return condition(read_pool(api_client, namespace, name), "Ready")


async def test_a_missing_topic_is_said_and_holds_then_expression_versions_leave_a_plain_pool_ready(
    operator: OperatorProcess, real_flowable: RealFlowable, api_client: Any, namespace: str
) -> None:
    suffix = _suffix()
    plain, busy = f"plain-{suffix}", f"busy-{suffix}"
    await real_flowable.create_jobs(plain, 6, element_id=f"plain_{suffix}")
    await real_flowable.create_jobs(busy, 6, element_id=f"busy_{suffix}")
    create_pool(api_client, namespace, "plain", _pool(real_flowable, plain))
    create_pool(api_client, namespace, "busy", _pool(real_flowable, busy))
    create_pool(api_client, namespace, "typo", _pool(real_flowable, f"{plain}x"))

    # A topic no model uses: Ready=False/TopicNotFound and one Warning naming the topic.
    typo = poll_until(
        lambda: (c := _ready(api_client, namespace, "typo")).get("reason") == "TopicNotFound" and c,
        timeout=60,
    )
    assert typo["status"] == "False"
    assert f"'{plain}x'" in typo["message"]
    assert deployment_replicas(api_client, namespace, "typo-worker") == 0
    poll_until(lambda: deployment_replicas(api_client, namespace, "busy-worker") == 3, timeout=60)

    # A busy pool whose topic goes missing (renamed in the spec) holds its 3 replicas.
    k8s_client.CustomObjectsApi(api_client).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "busy", {"spec": {"topic": f"{busy}-renamed"}}
    )
    poll_until(
        lambda: _ready(api_client, namespace, "busy").get("reason") == "TopicNotFound", timeout=30
    )
    await asyncio.sleep(5)  # cooldown 1 s, no stabilization: an "idle" reading would scale down
    assert deployment_replicas(api_client, namespace, "busy-worker") == 3
    assert _ready(api_client, namespace, "busy")["reason"] == "TopicNotFound"
    assert len(_warnings(api_client, namespace, "typo", "TopicNotFound")) == 1

    # 220 versions of a model whose topic is an expression: the plain pool stays Ready, counts
    # its 6 jobs, and hears of the expressions once, in one bounded line.
    await _deploy_versions(real_flowable, f"dyn_{suffix}", "${topicVar}", EXPRESSION_VERSIONS)

    def noted() -> dict[str, Any] | None:
        status: dict[str, Any] = read_pool(api_client, namespace, "plain").get("status") or {}
        found = re.search(r"this engine has (\d+) external-worker element", str(status))
        return status if found and int(found.group(1)) >= EXPRESSION_VERSIONS else None

    status = poll_until(noted, timeout=30)  # the listing may catch the deployments midway
    ready = condition({"status": status}, "Ready")
    assert ready["status"] == "True", ready
    assert status["backlog"]["unlocked"] == 6
    assert deployment_replicas(api_client, namespace, "plain-worker") == 3
    [note] = status["warnings"]
    assert len(note) <= 1024
    await asyncio.sleep(3)  # a few more ticks: still one Warning, however many definitions
    # One Warning, although the count grew while the deployments went on.
    assert len(_warnings(api_client, namespace, "plain", "UnresolvedTopics")) == 1
    assert not _warnings(api_client, namespace, "plain", "TopicNotResolved")
    # The missing topic might now be an expression's: still not Ready, bounded, still held.
    typo = poll_until(
        lambda: (
            (c := _ready(api_client, namespace, "typo")).get("reason") == "TopicNotResolved" and c
        ),
        timeout=30,
    )
    assert len(typo["message"]) <= 1024
    assert len(_warnings(api_client, namespace, "typo", "TopicNotResolved")) == 1
    assert deployment_replicas(api_client, namespace, "busy-worker") == 3


async def test_three_pools_on_one_topic_in_two_namespaces_are_named_to_each_other(
    operator: OperatorProcess,
    real_flowable: RealFlowable,
    api_client: Any,
    namespace: str,
    other_namespace: str,
) -> None:
    suffix = _suffix()
    topic = f"shared-{suffix}"
    await real_flowable.create_jobs(topic, 4, element_id=f"shared_{suffix}")
    pools = ((namespace, "first"), (namespace, "second"), (other_namespace, "third"))
    for where, name in pools:
        create_pool(api_client, where, name, _pool(real_flowable, topic))

    for where, name in pools:
        shared = poll_until(
            lambda where=where, name=name: (
                (c := condition(read_pool(api_client, where, name), "SharedBacklog")).get("status")
                == "True"
                and "2 other pool(s)" in c["message"]
                and c
            ),
            timeout=60,
        )
        others = [f"{ns}/{other}" for ns, other in pools if other != name]
        assert all(other in shared["message"] for other in others), shared
        assert condition(read_pool(api_client, where, name), "Ready")["status"] == "True"
        poll_until(
            lambda where=where, name=name, others=others: any(
                all(other in message for other in others)
                for message in _warnings(api_client, where, name, "SharedBacklog")
            ),
            timeout=30,
        )


async def test_a_pool_per_tenant_counts_its_tenant_only_and_shares_nothing(
    operator: OperatorProcess, real_flowable: RealFlowable, api_client: Any, namespace: str
) -> None:
    suffix = _suffix()
    key, topic = f"tenanted_{suffix}", f"tenanted-{suffix}"
    xml = one_task_model(scope_type="bpmn", definition_key=key, topic=topic, element_id="work")
    async with real_flowable.api() as api:
        for tenant, jobs in (("acme", 2), ("globex", 3)):
            model = await api.deploy(xml, scope_type="bpmn", tenant_id=tenant)
            for _ in range(jobs):
                await api.start_process_instance(definition_id=model.definition_id)
    for tenant in ("acme", "globex"):
        selector = {"elementId": "work", "processDefinitionKey": key, "tenantId": tenant}
        create_pool(
            api_client,
            namespace,
            tenant,
            _pool(real_flowable, topic, backlog={"selectors": [selector]}),
        )

    def unlocked(name: str) -> int | None:
        backlog = (read_pool(api_client, namespace, name).get("status") or {}).get("backlog")
        return None if backlog is None else int(backlog["unlocked"])

    poll_until(lambda: unlocked("acme") == 2 and unlocked("globex") == 3, timeout=60)
    for tenant in ("acme", "globex"):
        pool = read_pool(api_client, namespace, tenant)
        assert condition(pool, "SharedBacklog")["status"] == "False"
        assert {s.get("tenantId") for s in pool["status"]["selectors"]} == {tenant}


async def test_a_key_selector_counts_a_new_version_and_a_stale_pin_is_warned(
    operator: OperatorProcess, real_flowable: RealFlowable, api_client: Any, namespace: str
) -> None:
    suffix = _suffix()
    key, topic = f"tenant_{suffix}", f"tenant-{suffix}"
    xml = one_task_model(scope_type="bpmn", definition_key=key, topic=topic, element_id="work")
    async with real_flowable.api() as api:
        old = await api.deploy(xml, scope_type="bpmn")
        new = await api.deploy(xml, scope_type="bpmn")
        for _ in range(3):
            await api.start_process_instance(definition_id=new.definition_id)
    by_key = {"elementId": "work", "processDefinitionKey": key}
    pinned = {"elementId": "work", "processDefinitionId": old.definition_id}
    create_pool(
        api_client,
        namespace,
        "by-key",
        _pool(real_flowable, topic, backlog={"selectors": [by_key]}),
    )
    create_pool(
        api_client,
        namespace,
        "pinned",
        _pool(real_flowable, topic, backlog={"selectors": [pinned]}),
    )

    def unlocked(name: str) -> int | None:
        backlog = (read_pool(api_client, namespace, name).get("status") or {}).get("backlog")
        return None if backlog is None else int(backlog["unlocked"])

    poll_until(lambda: unlocked("by-key") == 3, timeout=60)
    # A version deployed after the pool: its jobs count from the next listing on.
    async with real_flowable.api() as api:
        newest = await api.deploy(xml, scope_type="bpmn")
        for _ in range(2):
            await api.start_process_instance(definition_id=newest.definition_id)
    poll_until(lambda: unlocked("by-key") == 5, timeout=30)

    # The pin on version 1 counts nothing, and says why.
    stale = poll_until(
        lambda: (read_pool(api_client, namespace, "pinned").get("status") or {}).get("warnings"),
        timeout=30,
    )
    assert unlocked("pinned") == 0
    assert any(old.definition_id in w and "no longer the latest" in w for w in stale), stale
    assert _warnings(api_client, namespace, "pinned", "StaleSelector")
