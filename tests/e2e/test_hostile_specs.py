"""Each hostile but schema-shaped pool of issue 10, through the real API server and the real
operator process: the CRD rejects it with a message naming the rule, or the operator reports it
as Ready=False/InvalidSpec with a message naming the field and one Warning Event; never an
unexpected exception (Ready=False/ReconcileError, a traceback in the log), and nothing scaled.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from localstack.operator_process import OperatorProcess
from tests.support.emulator import FlowableEmulator
from tests.support.waiting import poll_until

from .conftest import (
    GROUP,
    PLURAL,
    VERSION,
    condition,
    deployment_replicas,
    emulated_pool,
    events_for,
    read_pool,
)

pytestmark = pytest.mark.timeout(600)

WORKER_CONTAINER = {"name": "worker"}

# (name, change to a valid pool's spec, what must happen: ("rejected" | "InvalidSpec", text))
HOSTILE: list[tuple[str, dict[str, Any], tuple[str, str]]] = [
    ("poll", {"scaling": {"pollingInterval": "99999999999h"}}, ("rejected", "pollingInterval")),
    ("url", {"engine": {"url": "http://[::1"}}, ("rejected", "engine.url must be a URL")),
    ("c" * 70, {}, ("rejected", "needs a name of at most 63 characters")),
    (
        "replicas",
        {"scaling": {"minReplicas": 2**31, "maxReplicas": 2**31}},
        ("rejected", "less than or equal to 2147483647"),
    ),
    (
        "containers",
        {"worker": {"template": {"spec": {"containers": "oops"}}}},
        ("InvalidSpec", "template.spec.containers: must be a list, got a string"),
    ),
    (
        "grace",
        {"worker": {"template": {"spec": {"terminationGracePeriodSeconds": "soon"}}}},
        ("InvalidSpec", "template.spec.terminationGracePeriodSeconds: must be a whole number"),
    ),
    (
        "value-from",
        {"worker": {"env": [{"name": "A", "valueFrom": {"bogus": 1}}]}},
        ("InvalidSpec", "env[0].valueFrom: must hold exactly one of secretKeyRef"),
    ),
    (
        "template-value-from",
        {"worker": {"template": {"spec": {"containers": [
            {**WORKER_CONTAINER, "env": [{"name": "A", "valueFrom": 7}]}
        ]}}}},
        ("InvalidSpec", "containers[0].env[0].valueFrom: must be an object"),
    ),
    (
        "label",
        {"worker": {"template": {"metadata": {"labels": {"x": "y" * 80}}}}},
        ("InvalidSpec", "the API server refused the worker Deployment label-worker"),
    ),
    (
        "quantity",
        {"worker": {"template": {"spec": {"containers": [
            {**WORKER_CONTAINER, "resources": {"limits": {"cpu": "lots"}}}
        ]}}}},
        ("InvalidSpec", "the API server refused the worker Deployment quantity-worker"),
    ),
    (
        "billion",
        {"scaling": {"minReplicas": 10**9, "maxReplicas": 10**9}},
        ("InvalidSpec", "above the operator's --max-replicas-limit of 1000 replicas"),
    ),
]


def _merged(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def test_each_hostile_spec_is_rejected_or_an_invalid_spec_never_an_exception(
    operator: OperatorProcess, emulator: FlowableEmulator, api_client: Any, namespace: str
) -> None:
    api = k8s_client.CustomObjectsApi(api_client)
    base = emulated_pool(emulator, "hostile:1:1", 4, {"pollingInterval": "1s"})
    seen: dict[str, str] = {}
    for name, change, (outcome, text) in HOSTILE:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ExternalWorkerPool",
            "metadata": {"name": name},
            "spec": _merged(base, change),
        }
        if outcome == "rejected":
            with pytest.raises(ApiException) as refused:
                api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
            message = json.loads(refused.value.body)["message"]
            assert refused.value.status == 422, (name, message)
            assert text in message, (name, message)
            seen[name] = "rejected"
            continue
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
        poll_until(
            lambda n=name: condition(read_pool(api_client, namespace, n), "Ready").get("reason")
            in ("InvalidSpec", "ReconcileError"),
            timeout=30,
        )
        ready = condition(read_pool(api_client, namespace, name), "Ready")
        assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec"), (name, ready)
        assert text in ready["message"], (name, ready["message"])
        warnings = [e for e in events_for(api_client, namespace, name) if e[0] == "Warning"]
        assert [reason for _type, reason, _message in warnings] == ["InvalidSpec"], warnings
        replicas = deployment_replicas(api_client, namespace, f"{name}-worker")
        assert replicas in (None, 0), (name, replicas)  # built only if the API server took it
        seen[name] = "InvalidSpec"
    assert "failed unexpectedly" not in operator.log()
    assert "Traceback" not in operator.log()
    assert len(seen) == len(HOSTILE)
