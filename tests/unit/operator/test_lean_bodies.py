"""Pool bodies kept packed (what they held, not managedFields, in a small share of their JSON),
kopf's own object left alone, and fingerprints that tell values apart."""

from __future__ import annotations

import copy
import json
import zlib
from typing import Any

import kopf
from hypothesis import given
from hypothesis import strategies as st

from flowable_worker_operator import handlers
from flowable_worker_operator.lean_bodies import PackedBody, fingerprint

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
        "fieldsV1": {"f:status": {"f:observedGeneration": {}, "f:replicas": {}}},
    },
]


def _condition(kind: str, status: str, reason: str, message: str) -> dict[str, Any]:
    return {
        "lastTransitionTime": "2026-12-01T07:32:27Z",
        "message": message,
        "observedGeneration": 3,
        "reason": reason,
        "status": status,
        "type": kind,
    }


def _raw() -> dict[str, Any]:
    """A pool of a team's own, its status written: names, topic and messages unlike the packing
    dictionary's."""
    return {
        "apiVersion": "flowable-worker.io/v1alpha1",
        "kind": "ExternalWorkerPool",
        "metadata": {
            "annotations": {
                "flowable-worker.io/kopf-managed": "yes",
                "flowable-worker.io/last-handled-configuration": json.dumps(
                    {"spec": {"topic": "invoices", "engine": {"url": "http://bpm.example:8080"}}}
                ),
            },
            "creationTimestamp": "2026-12-01T07:32:27Z",
            "finalizers": ["flowable-worker.io/operator"],
            "generation": 3,
            "labels": {"team": "billing"},
            "managedFields": copy.deepcopy(MANAGED_FIELDS),
            "name": "invoice-workers",
            "namespace": "billing",
            "resourceVersion": "884213",
            "uid": "5b0c9d2e-6f1a-4c3b-9e8d-7a6b5c4d3e2f",
        },
        "spec": {
            "engine": {"url": "http://bpm.example:8080", "timeoutSeconds": 10},
            "scaling": {"maxReplicas": 25, "minReplicas": 1, "pollingInterval": "15s"},
            "topic": "invoices",
            "worker": {"concurrency": 8, "handler": {"python": "billing.invoices:handle"}},
        },
        "status": {
            "backlog": {
                "locked": 12,
                "observedTime": "2026-12-01T07:40:12Z",
                "stale": False,
                "unlocked": 40,
            },
            "conditions": [
                _condition(
                    "Ready",
                    "True",
                    "ScaledUp",
                    "40 unlocked + 12 locked jobs, 8 per replica; scaling to 7",
                ),
                _condition("Active", "True", "Backlog", "40 unlocked and 12 locked jobs"),
                _condition("Fallback", "False", "ProbeHealthy", "no fallback in effect"),
                _condition("Paused", "False", "NotPaused", "scaling is active"),
                _condition("EngineReachable", "True", "ProbeSucceeded", "the backlog was measured"),
            ],
            "desiredReplicas": 7,
            "lastActiveTime": "2026-12-01T07:40:12Z",
            "lastScaleTime": "2026-12-01T07:40:12Z",
            "observedGeneration": 3,
            "probe": {"consecutiveFailures": 0, "lastSuccessTime": "2026-12-01T07:40:12Z"},
            "replicas": 7,
            "selector": "flowable-worker.io/pool=invoice-workers",
        },
    }


def _without_managed_fields(raw: dict[str, Any]) -> dict[str, Any]:
    lean = copy.deepcopy(raw)
    del lean["metadata"]["managedFields"]
    return lean


def test_a_packed_body_unpacks_to_what_it_held_but_managed_fields() -> None:
    raw = _raw()
    packed = PackedBody(kopf.Body(raw))
    assert packed.unpack() == _without_managed_fields(raw)
    assert list(packed.unpack()["metadata"]) == [k for k in raw["metadata"] if k != "managedFields"]
    assert packed.uid == raw["metadata"]["uid"]


def test_packing_leaves_the_object_kopf_handed_over_as_it_was() -> None:
    """kopf goes on reading its object after the handler returns (its annotations, finalizers)."""
    raw = _raw()
    before = copy.deepcopy(raw)
    PackedBody(kopf.Body(raw))
    PackedBody(raw)  # a plain dict works as well
    assert raw == before


def test_a_pool_packs_into_a_small_share_of_its_json() -> None:
    """The preset dictionary at work: zlib alone leaves 784 of this pool's 1985 bytes of JSON;
    with the dictionary it keeps 356, although names, topic and messages are the team's own
    (a pool like the benchmark's, closer to the dictionary, keeps about 170 of 3300). A broken
    or lost dictionary fails here."""
    raw = _raw()
    text = json.dumps(_without_managed_fields(raw), separators=(",", ":")).encode()
    packed = PackedBody(raw)
    assert len(packed) < len(zlib.compress(text)) / 2, (len(packed), len(text))
    assert len(packed) < len(text) / 4


def test_each_unpacking_is_a_new_object() -> None:
    packed = PackedBody(_raw())
    one = packed.unpack()
    one["status"]["replicas"] = 0
    one["metadata"].clear()
    assert packed.unpack() == _without_managed_fields(_raw())


def test_a_body_unlike_the_dictionary_packs_and_unpacks_too() -> None:
    odd = {
        "metadata": None,
        "spec": [1, None, 2.5, True, ["ä", "\u2603"], {"": "x" * 10_000}],
        "status": {"message": "line\nbreak \"quoted\" \\ back"},
    }
    packed = PackedBody(odd)
    assert packed.unpack() == odd
    assert packed.uid is None
    assert PackedBody({}).unpack() == {}
    assert PackedBody({"metadata": {"uid": 7}}).uid is None  # not a uid


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(), json_values, max_size=6))
def test_any_json_object_round_trips(body: dict[str, Any]) -> None:
    body.pop("metadata", None)
    assert PackedBody(body).unpack() == body


def test_a_fingerprint_tells_values_apart_and_ignores_key_order() -> None:
    status = _raw()["status"]
    reordered = dict(reversed(list(status.items())))
    assert fingerprint(status) == fingerprint(reordered)
    assert len(fingerprint(status)) == 16
    changed = copy.deepcopy(status)
    changed["conditions"][2]["status"] = "True"
    assert fingerprint(changed) != fingerprint(status)
    assert fingerprint([1, 2]) != fingerprint([2, 1])  # lists keep their order
    assert fingerprint(None) != fingerprint({})


async def test_the_pool_event_handler_keeps_every_event_packed() -> None:
    raw = json.loads(json.dumps(_raw()))  # decoded, as kopf's are
    before = copy.deepcopy(raw)
    runtime = handlers.Runtime(workload=None, prober=None, reconciler=None)  # type: ignore[arg-type]
    runtime.start = lambda: None  # type: ignore[method-assign]  # no ticks: only the event
    await handlers._on_pool_event(
        type=None,
        body=kopf.Body(raw),
        memo=kopf.Memo(runtime=runtime),
        pool_claims={},
        hpa_claims={},
    )
    pool = runtime.pools["billing", "invoice-workers"]
    assert isinstance(pool.packed, PackedBody)
    assert pool.body == _without_managed_fields(raw)
    assert raw == before  # kopf's object as it was
