"""What the operator keeps of each pool between events, kept small: the body packed, and of
what it wrote only a fingerprint.

The operator keeps the last body it saw of every pool for as long as the pool lives: the pool's
ticks read it (`handlers`). Kept as the JSON decoder made it, a pool of a few kilobytes of JSON is a
tree of some twenty dicts and a hundred strings: 5.9 KB of heap a pool even after its
`metadata.managedFields` were dropped and its strings shared (docs/benchmarks.md, "Memory at
10,000 pools"), 59 MB at 10,000 pools, and every one of those objects is one more for the garbage
collector to walk. Nearly all of it is the same from one pool to the next: the keys, the defaults
of the spec, the condition types, reasons and messages.

So `PackedBody` keeps a body as its JSON, compressed with zlib against a preset dictionary: a
typical pool body (`_TYPICAL`), whose keys and phrases the compressor then refers to instead of
repeating. A pool with a written status packs into about 170 bytes, and unpacking it (a
decompression and a JSON decode: about 15 microseconds) is done once per tick, which reads it.
The dictionary only makes the packing smaller: a body unlike it still packs, and unpacks to what
was packed.

`metadata.managedFields` is left out of the packed body: the API server's record of which field
manager set which field, read by neither the operator nor kopf (kopf keeps its state in
annotations; the operator writes status by merge patch). The object kopf handed over is never
changed: kopf goes on reading it after the handler returns.

`fingerprint` is the same idea for a value the operator only compares with the next one (the
status it last wrote, the spec it last read): 16 bytes instead of a copy.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Mapping
from typing import Any, Final, final

__all__ = ["PackedBody", "fingerprint"]

_LEVEL: Final = 6
"""zlib's default level: bodies are packed once per event, not per tick, so the few tens of
microseconds it costs over level 1 buy a quarter smaller pool."""

_CONDITION: Final = {
    "lastTransitionTime": "2026-01-01T00:00:00Z",
    "message": "",
    "observedGeneration": 1,
    "reason": "",
    "status": "True",
    "type": "",
}

_TYPICAL: Final[dict[str, Any]] = {
    "apiVersion": "flowable-worker.io/v1alpha1",
    "kind": "ExternalWorkerPool",
    "metadata": {
        "annotations": {
            "flowable-worker.io/kopf-managed": "yes",
            "flowable-worker.io/last-handled-configuration": "",
        },
        "creationTimestamp": "2026-01-01T00:00:00Z",
        "finalizers": ["flowable-worker.io/operator"],
        "generation": 1,
        "name": "",
        "namespace": "",
        "resourceVersion": "",
        "uid": "00000000-0000-0000-0000-000000000000",
    },
    "spec": {
        "backlog": {},
        "engine": {
            "authSecretRef": {"name": ""},
            "cmmnApiPath": "/cmmn-api",
            "externalJobApiPath": "/external-job-api",
            "processApiPath": "/process-api",
            "timeoutSeconds": 10,
            "url": "http://flowable:8080/flowable-rest",
        },
        "paused": False,
        "scaling": {
            "activationBacklog": 0,
            "cooldownPeriod": "300s",
            "deferSmallQueues": True,
            "maxReplicas": 10,
            "minReplicas": 0,
            "pollingInterval": "15s",
            "releaseIdleAfter": "20s",
            "tolerance": 0.1,
        },
        "topic": "",
        "worker": {
            "concurrency": 1,
            "handler": {"python": ""},
            "image": "",
            "lockDuration": "PT5M",
            "terminationGracePeriodSeconds": 30,
        },
    },
    "status": {
        "backlog": {"locked": 0, "observedTime": "", "stale": False, "unlocked": 0},
        "conditions": [
            {
                **_CONDITION,
                "message": "0 unlocked + 0 locked jobs, activation needs more than 0 unlocked; "
                "staying at 0",
                "reason": "Idle",
                "type": "Ready",
            },
            {
                **_CONDITION,
                "message": "0 unlocked and 0 locked jobs",
                "reason": "Idle",
                "status": "False",
                "type": "Active",
            },
            {
                **_CONDITION,
                "message": "no fallback in effect",
                "reason": "ProbeHealthy",
                "status": "False",
                "type": "Fallback",
            },
            {
                **_CONDITION,
                "message": "scaling is active",
                "reason": "NotPaused",
                "status": "False",
                "type": "Paused",
            },
            {
                **_CONDITION,
                "message": "the backlog was measured",
                "reason": "ProbeSucceeded",
                "type": "EngineReachable",
            },
            {
                **_CONDITION,
                "message": "the jobs this pool counts are also counted by 1 other pool(s): ; "
                "each scales for all of them and their workers take each other's jobs; give "
                "each pool a topic of its own, or disjoint backlog.selectors "
                '(docs/pool-resource.md, "Several pools on one topic")',
                "reason": "OtherPoolsCountTheseJobs",
                "type": "SharedBacklog",
            },
        ],
        "desiredReplicas": 0,
        "lastActiveTime": "2026-01-01T00:00:00Z",
        "observedGeneration": 1,
        "probe": {"consecutiveFailures": 0, "lastSuccessTime": "2026-01-01T00:00:00Z"},
        "replicas": 0,
        "selector": "flowable-worker.io/pool=",
        "selectors": [{"elementId": "", "topic": ""}],
    },
}
"""A pool as the API server sends it once the operator has written its status: the preset
dictionary's content. Only its text matters, and only to the size of what is packed."""

_DICTIONARY: Final = json.dumps(_TYPICAL, separators=(",", ":")).encode()


def _json(value: Any, *, sort_keys: bool = False) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=sort_keys).encode()


@final
class PackedBody:
    """A pool body as packed JSON (without managedFields), and its uid, which the event handler
    compares at every event; immutable."""

    __slots__ = ("_data", "uid")

    def __init__(self, body: Mapping[str, Any]) -> None:
        metadata = body.get("metadata")
        lean = dict(body)
        if isinstance(metadata, Mapping):
            lean["metadata"] = {k: v for k, v in metadata.items() if k != "managedFields"}
            uid = metadata.get("uid")
        else:
            uid = None
        packer = zlib.compressobj(_LEVEL, zdict=_DICTIONARY)
        self._data: Final = packer.compress(_json(lean)) + packer.flush()
        self.uid: Final = uid if isinstance(uid, str) else None

    def unpack(self) -> dict[str, Any]:
        """The body, a new object at each call (the caller may change it)."""
        unpacker = zlib.decompressobj(zdict=_DICTIONARY)
        body: dict[str, Any] = json.loads(unpacker.decompress(self._data) + unpacker.flush())
        return body

    def __len__(self) -> int:
        """The packed size, in bytes."""
        return len(self._data)


def fingerprint(value: Any) -> bytes:
    """16 bytes that differ, but for a 2**-128 chance, whenever the JSON value `value` differs by
    value: keys are sorted, so dicts equal in another order agree. A number written as an int
    once and as a float the next time (1 and 1.0) differs here though equal in Python; callers
    use it to skip a repeated step, for which a rare needless repeat is harmless."""
    return hashlib.blake2b(_json(value, sort_keys=True), digest_size=16).digest()
