"""One scaler per workload: the decision (pure), and what a tick does with it.

An HPA on the workload always keeps it (the operator cannot stop an HPA); between pools the older
one (creationTimestamp, then name) keeps it. The pool that steps back is Ready=False with reason
ScaleTargetConflict and a Warning naming the other scaler, and builds or scales nothing.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import kopf
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowable_worker_operator.conflicts import (
    Claim,
    ClaimKey,
    Target,
    hpa_claim,
    index_key,
    pool_claim,
    rival,
)
from flowable_worker_operator.handlers import _hpa_claims, _pool_claims
from flowable_worker_operator.reconcile import PoolState, Reconciler
from tests.unit.operator.test_reconcile import NOW, FakeProber, FakeWorkload, condition

DEPLOYMENT_X = Target.of("apps/v1", "Deployment", "x")
EARLY, LATE = "2026-11-01T10:00:00Z", "2026-11-02T10:00:00Z"


def pool_body(
    name: str, *, created: str = EARLY, target: str | None = None, uid: str | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {"engine": {"url": "http://flowable:8080"}, "topic": "invoices"}
    if target is None:
        spec["worker"] = {"handler": {"python": "h:check"}}
    else:
        spec["scaleTargetRef"] = {"name": target}
        spec["scaling"] = {"jobsPerReplica": 2}
    return {
        "metadata": {
            "name": name,
            "namespace": "billing",
            "uid": uid or f"uid-{name}",
            "generation": 1,
            "creationTimestamp": created,
        },
        "spec": spec,
    }


def hpa_body(name: str, target: str, *, created: str = LATE, api_version: str = "apps/v1") -> Any:
    ref = {"kind": "Deployment", "name": target}
    if api_version:
        ref["apiVersion"] = api_version
    return {
        "metadata": {"name": name, "namespace": "billing", "uid": f"uid-{name}",
                     "creationTimestamp": created},
        "spec": {"scaleTargetRef": ref, "minReplicas": 1, "maxReplicas": 5},
    }  # fmt: skip


def claim(body: dict[str, Any]) -> Claim:
    made = pool_claim(body) if "worker" in body["spec"] or "engine" in body["spec"] else None
    made = made or hpa_claim(body)
    assert made is not None
    return made


# -- the decision -------------------------------------------------------------------------------


def test_a_pool_alone_keeps_its_workload() -> None:
    me = claim(pool_body("a"))
    assert rival(me, [me]) is None
    assert rival(me, []) is None


def test_the_older_pool_keeps_the_workload_whatever_the_order() -> None:
    old = claim(pool_body("old", created=EARLY, target="legacy"))
    new = claim(pool_body("new", created=LATE, target="legacy"))
    assert rival(old, [new, old]) is None
    assert rival(new, [old, new]) == old
    assert rival(new, [new, old]) == old


def test_pools_created_the_same_second_are_ordered_by_name() -> None:
    a = claim(pool_body("a", target="legacy"))
    b = claim(pool_body("b", target="legacy"))
    assert rival(a, [a, b]) is None
    assert rival(b, [a, b]) == a


def test_a_pool_pointing_at_another_pools_deployment_conflicts_with_it() -> None:
    owner = claim(pool_body("inv", created=LATE))  # owns Deployment inv-worker
    pointer = claim(pool_body("ptr", created=EARLY, target="inv-worker"))
    assert owner.target.same_as(pointer.target)
    assert rival(owner, [owner, pointer]) == pointer  # older keeps it, even if not the owner


def test_an_hpa_always_keeps_the_workload_even_if_younger() -> None:
    pool = claim(pool_body("old", created=EARLY, target="legacy"))
    hpa = claim(hpa_body("legacy", "legacy", created=LATE))
    assert rival(pool, [pool, hpa]) == hpa


def test_an_hpa_on_another_workload_is_no_rival() -> None:
    pool = claim(pool_body("p", target="legacy"))
    assert rival(pool, [claim(hpa_body("h", "other"))]) is None


@pytest.mark.parametrize(
    ("mine", "theirs", "same"),
    [
        (DEPLOYMENT_X, Target.of("apps/v1beta2", "Deployment", "x"), True),
        (DEPLOYMENT_X, Target.of(None, "Deployment", "x"), True),
        (DEPLOYMENT_X, Target.of("apps/v1", "StatefulSet", "x"), False),
        (DEPLOYMENT_X, Target.of("other.io/v1", "Deployment", "x"), False),
        (DEPLOYMENT_X, Target.of("apps/v1", "Deployment", "y"), False),
    ],
)  # fmt: skip
def test_targets_match_by_group_kind_and_name(mine: Target, theirs: Target, same: bool) -> None:
    assert mine.same_as(theirs) is same


def test_an_invalid_pool_or_an_hpa_without_a_target_claims_nothing() -> None:
    bad = pool_body("bad")
    bad["spec"]["worker"]["concurrency"] = 0
    assert pool_claim(bad) is None
    assert hpa_claim({"metadata": {"name": "h"}, "spec": {}}) is None


def test_the_kopf_indexes_key_claims_by_namespace_and_workload() -> None:
    assert _pool_claims(kopf.Body(pool_body("a"))) == {
        ("billing", "Deployment", "a-worker"): claim(pool_body("a"))
    }
    assert _hpa_claims(kopf.Body(hpa_body("h", "legacy"))) == {
        ("billing", "Deployment", "legacy"): claim(hpa_body("h", "legacy"))
    }
    # An object that claims nothing (any more) leaves the index: {} replaces its old entry.
    assert _hpa_claims(kopf.Body({"metadata": {"name": "h", "namespace": "billing"}})) == {}


_claims = st.builds(
    Claim,
    kind=st.sampled_from(["ExternalWorkerPool", "HorizontalPodAutoscaler"]),
    name=st.sampled_from(["p", "q", "r"]),
    uid=st.sampled_from(["u1", "u2", "u3", "u4"]),
    created=st.sampled_from(["", EARLY, LATE]),
    target=st.builds(
        Target,
        group=st.sampled_from([None, "", "apps", "other.io"]),
        kind=st.sampled_from(["Deployment", "StatefulSet"]),
        name=st.sampled_from(["x", "y"]),
    ),
)


@given(me=_claims, claims=st.lists(_claims, max_size=12))
def test_the_claims_filed_under_my_workload_give_the_answer_of_the_whole_namespace(
    me: Claim, claims: list[Claim]
) -> None:
    filed: dict[ClaimKey, list[Claim]] = defaultdict(list)
    for one in claims:
        filed[index_key("billing", one.target)].append(one)
    assert rival(me, filed[index_key("billing", me.target)]) == rival(me, claims)


# -- in a tick ------------------------------------------------------------------------------------


async def test_the_younger_pool_steps_back_and_names_the_older_one() -> None:
    workload, state = FakeWorkload(replicas=2), PoolState()
    older = claim(pool_body("first", created=EARLY, target="legacy"))
    mine = pool_body("second", created=LATE, target="legacy")
    reconciler = Reconciler(workload=workload, prober=FakeProber())

    outcome = await reconciler.tick(mine, state, NOW, claims=[older, claim(mine)])

    ready = condition(outcome, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ScaleTargetConflict")
    assert "Deployment legacy is also scaled by ExternalWorkerPool first" in ready["message"]
    assert [(e.type, e.reason) for e in outcome.events] == [("Warning", "ScaleTargetConflict")]
    assert "ExternalWorkerPool first" in outcome.events[0].message
    assert workload.calls == []  # nothing built, nothing scaled

    again = await reconciler.tick(mine, state, NOW, claims=[older, claim(mine)])
    assert again.events == ()


async def test_a_pool_steps_back_from_an_hpa_on_its_deployment() -> None:
    workload = FakeWorkload()
    mine = pool_body("inv")
    hpa = claim(hpa_body("inv-hpa", "inv-worker"))
    outcome = await Reconciler(workload=workload, prober=FakeProber()).tick(
        mine, PoolState(), NOW, claims=[hpa]
    )
    ready = condition(outcome, "Ready")
    assert ready["reason"] == "ScaleTargetConflict"
    assert "HorizontalPodAutoscaler inv-hpa" in ready["message"]
    assert workload.calls == []


async def test_a_tick_looks_up_the_claims_on_its_own_workload_only() -> None:
    older = claim(pool_body("first", created=EARLY, target="legacy"))
    mine = pool_body("second", created=LATE, target="legacy")
    asked: list[Target] = []

    def lookup(target: Target) -> list[Claim]:
        asked.append(target)
        return [older] if target.name == "legacy" else []

    outcome = await Reconciler(workload=FakeWorkload(), prober=FakeProber()).tick(
        mine, PoolState(), NOW, claims=lookup
    )
    assert condition(outcome, "Ready")["reason"] == "ScaleTargetConflict"
    assert [(t.kind, t.name) for t in asked] == [("Deployment", "legacy")]


async def test_the_older_pool_scales_as_usual() -> None:
    workload = FakeWorkload()
    mine = pool_body("first", created=EARLY, target="legacy")
    younger = claim(pool_body("second", created=LATE, target="legacy"))
    outcome = await Reconciler(workload=workload, prober=FakeProber()).tick(
        mine, PoolState(), NOW, claims=[claim(mine), younger]
    )
    assert condition(outcome, "Ready")["status"] == "True"
