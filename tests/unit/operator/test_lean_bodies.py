"""managedFields leave the pool bodies kopf keeps, through the installed kopf's own `Body`."""

from __future__ import annotations

import copy
import json
import sys
from typing import Any

import kopf

from flowable_worker_operator import handlers
from flowable_worker_operator.lean_bodies import (
    SHARED_VALUE_LENGTH,
    drop_managed_fields,
    share_strings,
)

# A pool as the API server sends it after the operator wrote its status: three field managers.
MANAGED_FIELDS = [
    {
        "manager": "kubectl-client-side-apply",
        "operation": "Update",
        "apiVersion": "flowable-worker.io/v1alpha1",
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:spec": {".": {}, "f:topic": {}, "f:engine": {".": {}, "f:url": {}}}},
    },
    {
        "manager": "flowable-worker-operator",
        "operation": "Update",
        "subresource": "status",
        "apiVersion": "flowable-worker.io/v1alpha1",
        "fieldsType": "FieldsV1",
        "fieldsV1": {
            "f:status": {
                "f:conditions": {
                    f'k:{{"type":"{kind}"}}': {
                        ".": {},
                        "f:lastTransitionTime": {},
                        "f:message": {},
                        "f:reason": {},
                        "f:status": {},
                        "f:type": {},
                    }
                    for kind in ("Ready", "EngineReachable", "WorkloadReady", "Scaling")
                },
                "f:observedGeneration": {},
                "f:replicas": {},
            }
        },
    },
]


def _raw() -> dict[str, Any]:
    return {
        "apiVersion": "flowable-worker.io/v1alpha1",
        "kind": "ExternalWorkerPool",
        "metadata": {
            "name": "p",
            "namespace": "ns",
            "uid": "u1",
            "generation": 3,
            "resourceVersion": "41",
            "labels": {"team": "a"},
            "managedFields": copy.deepcopy(MANAGED_FIELDS),
        },
        "spec": {"topic": "t", "engine": {"url": "http://flowable:8080"}},
        "status": {"replicas": 2, "observedGeneration": 3},
    }


def _deep_size(value: Any) -> int:
    size = sys.getsizeof(value)
    if isinstance(value, dict):
        size += sum(_deep_size(k) + _deep_size(v) for k, v in value.items())
    elif isinstance(value, list):
        size += sum(_deep_size(item) for item in value)
    return size


def test_the_raw_object_behind_a_kopf_body_loses_its_managed_fields_and_nothing_else() -> None:
    raw = _raw()
    expected = copy.deepcopy(raw)
    del expected["metadata"]["managedFields"]
    body = kopf.Body(raw)
    before = _deep_size(raw)
    assert drop_managed_fields(body)
    assert raw == expected  # the very dict kopf holds, not a copy
    assert "managedFields" not in body.metadata
    assert body.metadata.labels == {"team": "a"}
    assert body.spec["topic"] == "t"
    assert _deep_size(raw) < before / 2  # most of such a body was the field managers' record
    assert not drop_managed_fields(body)  # the second time: nothing left to drop


def test_a_live_body_sees_each_new_event_without_them() -> None:
    """kopf's daemon view is one `Body` whose source each watch event replaces (`_replace_with`);
    what the event handler drops is gone from that view too."""
    live = kopf.Body(_raw())
    drop_managed_fields(live)
    newer = _raw()
    newer["metadata"]["resourceVersion"] = "42"
    live._replace_with(newer)
    assert "managedFields" in live.metadata
    drop_managed_fields(kopf.Body(newer))  # the handler gets a view of the same raw object
    assert "managedFields" not in live.metadata
    assert live.metadata["resourceVersion"] == "42"


def test_anything_unexpected_is_left_as_it_is() -> None:
    assert not drop_managed_fields({"metadata": None})
    assert not drop_managed_fields({})
    frozen = json.loads(json.dumps(_raw()))
    assert drop_managed_fields(frozen)  # a plain dict works as well
    assert not drop_managed_fields(kopf.Body({"metadata": {"name": "p"}}))


async def test_the_pool_event_handler_drops_them_from_every_event() -> None:
    raw = json.loads(json.dumps(_raw()))  # decoded, as kopf's are: strings of its own
    runtime = handlers.Runtime(workload=None, prober=None, reconciler=None)  # type: ignore[arg-type]
    runtime.start = lambda: None  # type: ignore[method-assign]  # no ticks: only the event
    await handlers._on_pool_event(
        type=None,
        body=kopf.Body(raw),
        memo=kopf.Memo(runtime=runtime),
        pool_claims={},
        hpa_claims={},
    )
    assert "managedFields" not in raw["metadata"]
    assert runtime.pools["ns", "p"].body["metadata"] is raw["metadata"]
    other = json.loads(json.dumps(raw))
    share_strings(other)
    assert _strings(raw)[0] == _strings(other)[0]  # its strings shared as well


def _strings(node: Any) -> tuple[list[int], list[int]]:
    """The ids of a body's keys and of its string values, in order."""
    keys: list[int] = []
    values: list[int] = []
    if isinstance(node, dict):
        for key, value in node.items():
            keys.append(id(key))
            more = _strings(value)
            keys += more[0]
            values += more[1]
    elif isinstance(node, list):
        for value in node:
            more = _strings(value)
            keys += more[0]
            values += more[1]
    elif isinstance(node, str):
        values.append(id(node))
    return keys, values


def test_two_pools_decoded_apart_hold_one_copy_of_their_strings_and_mean_the_same() -> None:
    text = json.dumps(_raw())
    one, two = json.loads(text), json.loads(text)
    one["status"] = {"message": "x" * (SHARED_VALUE_LENGTH + 1)}
    two["status"] = {"message": "x" * (SHARED_VALUE_LENGTH + 1)}
    assert _strings(one)[0] != _strings(two)[0]  # the decoder gives each its own keys
    expected = copy.deepcopy(one)
    order = list(one["metadata"])
    metadata = one["metadata"]
    share_strings(kopf.Body(one))
    share_strings(two)  # a plain dict works as well
    assert one == expected  # the same content, in the same order, in the very dicts kopf holds
    assert list(one["metadata"]) == order
    assert one["metadata"] is metadata
    keys_one, values_one = _strings(one)
    keys_two, values_two = _strings(two)
    assert keys_one == keys_two
    assert values_one[:-1] == values_two[:-1]  # every short value shared
    assert one["status"]["message"] is not two["status"]["message"]  # a long one left alone


def test_sharing_strings_leaves_an_unexpected_body_as_it_is() -> None:
    share_strings({})
    share_strings(kopf.Body({"metadata": {"name": "p"}}))
    odd: dict[str, Any] = {"spec": [1, None, 2.5, True, ["a"]]}
    share_strings(odd)
    assert odd == {"spec": [1, None, 2.5, True, ["a"]]}
