"""Requests the API server served, by verb and resource, from its own `/metrics`.

`apiserver_request_total` counts every request by verb, group, resource and subresource, whoever
sent it; the difference of two readings is what a window cost. The control plane's own clients
(kwok's node heartbeats, the controllers' watches) share those counters, so `is_operator()` keeps
the resources this operator touches and the benchmark reports the rest apart.
"""

from __future__ import annotations

import re
from collections import Counter

RequestKey = tuple[str, str]
"""(verb, resource[/subresource]), e.g. ("PATCH", "externalworkerpools/status")."""

WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE", "APPLY"})
READ_VERBS = frozenset({"GET", "LIST"})

OPERATOR_RESOURCES = frozenset(
    {"externalworkerpools", "deployments", "poddisruptionbudgets", "events", "secrets"}
)
"""What the operator reads or writes: its pools (and their status), the worker Deployments (and
their /scale), PodDisruptionBudgets, Secrets of engine credentials, and Events. A Deployment's
/status is the controller manager's alone (`NOT_OPERATOR`); it also posts Events, but only when
pods change, which they do not while pools are idle."""

NOT_OPERATOR = frozenset({"deployments/status"})

_SAMPLE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> Counter[RequestKey]:
    """Totals of `apiserver_request_total` per (verb, resource[/subresource])."""
    totals: Counter[RequestKey] = Counter()
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None:
            continue
        labels = dict(_LABEL.findall(match["labels"]))
        resource = labels.get("resource", "")
        if not resource:
            continue  # /metrics, /readyz and other non-resource paths
        if labels.get("subresource"):
            resource = f"{resource}/{labels['subresource']}"
        totals[(labels.get("verb", ""), resource)] += int(float(match["value"]))
    return totals


def is_operator(key: RequestKey) -> bool:
    return key[1] not in NOT_OPERATOR and key[1].split("/")[0] in OPERATOR_RESOURCES


def sum_verbs(counts: Counter[RequestKey], verbs: frozenset[str]) -> int:
    return sum(n for (verb, _), n in counts.items() if verb in verbs)
