"""Who may scale a workload when two pools, or a pool and an HPA, both point at it. Pure.

Two scalers on one `/scale` fight: each tick one sets the replicas, the next the other sets them
back, and the pods churn. So each workload has one scaler, chosen the same way by every tick of
every pool, whatever the order of events:

* a HorizontalPodAutoscaler on the workload keeps it: the operator cannot make an HPA stop, so
  the only way to end the fight is for every pool on that workload to step back;
* otherwise the oldest pool keeps it (`creationTimestamp`, then name), as the first to claim it;
  a newer pool steps back.

A pool that steps back is `Ready=False` (`ScaleTargetConflict`) with a Warning naming the other
scaler, and touches nothing; when the other goes, its next tick takes over.

Claims are read from raw objects (the operator keeps them in kopf indexes fed by watches), so an
invalid pool claims nothing: it scales nothing either. The indexes file each claim under its
namespace and its target's kind and name (`index_key`): claims on one workload always share that
key (`Target.same_as` needs both equal), so a tick reads the claims on its own workload only,
never every claim of the namespace.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from flowable_worker_operator.manifests import scale_target
from flowable_worker_operator.spec import Pool, SpecError, parse_pool

__all__ = [
    "Claim",
    "ClaimKey",
    "Target",
    "claim_of",
    "hpa_claim",
    "index_key",
    "pool_claim",
    "rival",
]

ClaimantKind = Literal["ExternalWorkerPool", "HorizontalPodAutoscaler"]
HPA_KIND: ClaimantKind = "HorizontalPodAutoscaler"


@dataclass(frozen=True)
class Target:
    """A workload as a scaler names it: API group (None: not given), kind and name."""

    group: str | None
    kind: str
    name: str

    @classmethod
    def of(cls, api_version: str | None, kind: str, name: str) -> Target:
        group = None if not api_version else api_version.rpartition("/")[0]
        return cls(group=group, kind=kind, name=name)

    def same_as(self, other: Target) -> bool:
        """The same workload; the version never matters, a missing group matches any."""
        groups_agree = self.group is None or other.group is None or self.group == other.group
        return groups_agree and self.kind == other.kind and self.name == other.name

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


ClaimKey = tuple[str, str, str]
"""(namespace, target kind, target name): where the claim indexes file a claim."""


def index_key(namespace: str, target: Target) -> ClaimKey:
    """The key shared by every claim that may name the same workload as `target` (the group,
    which a missing one matches, is left to `Target.same_as`)."""
    return namespace, target.kind, target.name


@dataclass(frozen=True)
class Claim:
    """One scaler of one workload in a namespace."""

    kind: ClaimantKind
    name: str
    uid: str
    created: str  # RFC 3339 as the API server writes it: compares in time order
    target: Target

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


def rival(me: Claim, claims: Iterable[Claim]) -> Claim | None:
    """The scaler that keeps `me`'s workload instead of `me`, or None when `me` keeps it.

    `claims` are the namespace's claims, or only those filed under `me`'s `index_key` (the same
    answer, at the cost of the claims on one workload), `me` among them or not: any HPA on the
    workload wins (the oldest named), else the oldest pool older than `me`.
    """
    others = [c for c in claims if c.uid != me.uid and c.target.same_as(me.target)]
    hpas = sorted((c for c in others if c.kind == HPA_KIND), key=_age)
    if hpas:
        return hpas[0]
    older = sorted((c for c in others if _age(c) < _age(me)), key=_age)
    return older[0] if older else None


def _age(claim: Claim) -> tuple[str, str]:
    return claim.created, claim.name


def pool_claim(body: Mapping[str, Any]) -> Claim | None:
    """The workload a pool scales (its own Deployment or its scaleTargetRef); None if invalid."""
    try:
        pool = parse_pool(body)
    except SpecError:
        return None
    return claim_of(pool, body)


def claim_of(pool: Pool, body: Mapping[str, Any]) -> Claim:
    """`pool_claim` for a pool already parsed from `body` (a tick parses it once)."""
    target = scale_target(pool)
    return Claim(
        kind="ExternalWorkerPool",
        name=pool.name,
        uid=pool.uid,
        created=_created(body),
        target=Target.of(target.api_version, target.kind, target.name),
    )


def hpa_claim(body: Mapping[str, Any]) -> Claim | None:
    """The workload an autoscaling/v2 HPA scales; None without a usable scaleTargetRef."""
    meta = body.get("metadata") or {}
    ref = (body.get("spec") or {}).get("scaleTargetRef") or {}
    if not ref.get("kind") or not ref.get("name"):
        return None
    return Claim(
        kind=HPA_KIND,
        name=str(meta.get("name") or ""),
        uid=str(meta.get("uid") or ""),
        created=_created(body),
        target=Target.of(ref.get("apiVersion"), str(ref["kind"]), str(ref["name"])),
    )


def _created(body: Mapping[str, Any]) -> str:
    return str((body.get("metadata") or {}).get("creationTimestamp") or "")
