"""Pool conditions: transitions keep their time, order is fixed, statuses read back."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from flowable_worker_operator.status import (
    CONDITION_TYPES,
    HEARTBEATS,
    condition_status,
    find_condition,
    format_time,
    parse_time,
    set_condition,
)

T0 = datetime(2026, 11, 28, 10, 0, 0, 123456, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def test_a_new_condition_gets_every_field() -> None:
    conditions = set_condition(
        [], type="Ready", status=True, reason="Scaling", message="ok", generation=3, now=T0
    )
    assert conditions == [
        {
            "type": "Ready",
            "status": "True",
            "observedGeneration": 3,
            "lastTransitionTime": "2026-11-28T10:00:00Z",
            "reason": "Scaling",
            "message": "ok",
        }
    ]


def test_same_status_keeps_the_transition_time_but_updates_the_rest() -> None:
    first = set_condition(
        [], type="Active", status=True, reason="Backlog", message="3 jobs", generation=1, now=T0
    )
    second = set_condition(
        first, type="Active", status=True, reason="Backlog", message="9 jobs", generation=2, now=T1
    )
    (condition,) = second
    assert condition["lastTransitionTime"] == "2026-11-28T10:00:00Z"
    assert (condition["message"], condition["observedGeneration"]) == ("9 jobs", 2)


def test_a_status_change_moves_the_transition_time() -> None:
    first = set_condition(
        [], type="Active", status=True, reason="Backlog", message="", generation=1, now=T0
    )
    second = set_condition(
        first, type="Active", status=False, reason="Idle", message="", generation=1, now=T1
    )
    assert second[0]["lastTransitionTime"] == "2026-11-28T10:05:00Z"
    assert second[0]["status"] == "False"


def test_unknown_status() -> None:
    conditions = set_condition(
        [],
        type="EngineReachable",
        status=None,
        reason="NotProbed",
        message="",
        generation=1,
        now=T0,
    )
    assert conditions[0]["status"] == "Unknown"
    assert condition_status(conditions, "EngineReachable") is None


def test_conditions_keep_a_fixed_order_and_foreign_ones_come_last() -> None:
    conditions: list[dict[str, object]] = [{"type": "ZCustom", "status": "True"}]
    for kind in reversed(CONDITION_TYPES):
        conditions = set_condition(
            conditions, type=kind, status=False, reason="R", message="", generation=1, now=T0
        )
    assert [c["type"] for c in conditions] == [
        "Ready",
        "Active",
        "Fallback",
        "Paused",
        "EngineReachable",
        "SharedBacklog",
        "ZCustom",
    ]


def test_the_input_is_not_changed() -> None:
    before = [
        {
            "type": "Ready",
            "status": "False",
            "lastTransitionTime": "x",
            "reason": "R",
            "message": "",
        }
    ]
    set_condition(before, type="Ready", status=True, reason="R", message="", generation=1, now=T0)
    assert before[0]["status"] == "False"


def test_reading_conditions_back() -> None:
    conditions = set_condition(
        [], type="Paused", status=True, reason="Annotation", message="", generation=1, now=T0
    )
    assert condition_status(conditions, "Paused") is True
    assert condition_status(conditions, "Ready") is None
    assert find_condition(conditions, "Ready") is None
    found = find_condition(conditions, "Paused")
    assert found is not None
    assert found["reason"] == "Annotation"


def test_times_are_utc_to_the_second() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert format_time(datetime(2026, 11, 28, 12, 0, 0, 999, tzinfo=plus_two)) == (
        "2026-11-28T10:00:00Z"
    )
    assert format_time(datetime(2026, 11, 28, 10, 0, 0)) == "2026-11-28T10:00:00Z"


def test_heartbeats_are_kept_against_a_status_read_back_without_its_nulls() -> None:
    from flowable_worker_operator.status import keep_heartbeats

    written = {
        "replicas": 0,
        "lastScaleTime": None,
        "probe": {
            "consecutiveFailures": 0,
            "lastSuccessTime": "2026-11-28T10:00:00Z",
            "lastError": None,
        },
        "backlog": {"unlocked": 0, "locked": 0, "observedTime": "2026-11-28T10:00:00Z"},
    }
    # What the API server stores: a merge patch's nulls remove their fields.
    stored = {
        "replicas": 0,
        "probe": {"consecutiveFailures": 0, "lastSuccessTime": "2026-11-28T10:00:00Z"},
        "backlog": {"unlocked": 0, "locked": 0, "observedTime": "2026-11-28T10:00:00Z"},
        "kopf": {"progress": {}},
    }
    fresh = {
        **written,
        "probe": {**written["probe"], "lastSuccessTime": "2026-11-28T10:00:15Z"},
        "backlog": {**written["backlog"], "observedTime": "2026-11-28T10:00:15Z"},
    }
    assert keep_heartbeats(fresh, stored) == written


def test_timestamps_read_back_as_aware_datetimes_or_none() -> None:
    assert parse_time("2026-11-28T10:00:00Z") == datetime(2026, 11, 28, 10, tzinfo=UTC)
    # A Lease's MicroTime, and a time written without a zone (taken as UTC, as format_time does).
    assert parse_time("2026-11-28T10:00:00.250000Z") == datetime(
        2026, 11, 28, 10, 0, 0, 250000, tzinfo=UTC
    )
    assert parse_time("2026-11-28T10:00:00") == datetime(2026, 11, 28, 10, tzinfo=UTC)
    assert parse_time(format_time(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))) == datetime(
        2026, 1, 2, 3, 4, 5, tzinfo=UTC
    )
    for unreadable in (None, "", "yesterday", 12, "2026-13-01T00:00:00Z"):
        assert parse_time(unreadable) is None


def test_last_active_time_is_a_heartbeat_and_an_unmoved_old_field_forces_no_write() -> None:
    from flowable_worker_operator.status import keep_heartbeats

    written = {
        "replicas": 1,
        "lastActiveTime": "2026-11-28T10:00:00Z",
        "lastScaleTime": "2026-11-28T08:00:00Z",  # old, but it did not move: no refresh due
        "probe": {"lastSuccessTime": "2026-11-28T10:00:00Z"},
        "backlog": {"unlocked": 1, "locked": 0, "observedTime": "2026-11-28T10:00:00Z"},
    }
    fresh = {
        **written,
        "lastActiveTime": "2026-11-28T10:00:15Z",
        "probe": {"lastSuccessTime": "2026-11-28T10:00:15Z"},
        "backlog": {**written["backlog"], "observedTime": "2026-11-28T10:00:15Z"},
    }
    assert keep_heartbeats(fresh, written) == written
    more = {**fresh, "backlog": {**fresh["backlog"], "unlocked": 2}}
    assert keep_heartbeats(more, written) == more  # something else moved: all fresh
    cleared = {**fresh, "lastActiveTime": None}
    assert keep_heartbeats(cleared, written) == cleared  # a removal is written


def test_heartbeats_however_old_are_kept_while_nothing_else_changes() -> None:
    """No refresh: a day-old `lastSuccessTime` is not rewritten for a probe alone (a refresh
    every 5 minutes cost 500 PATCHes an interval at 10,000 idle pools); one that is absent or
    unreadable is."""
    from flowable_worker_operator.status import keep_heartbeats

    written = {
        "probe": {"lastSuccessTime": "2026-11-27T10:00:00Z"},
        "backlog": {"unlocked": 0, "locked": 0, "observedTime": "2026-11-27T10:00:00Z"},
    }
    fresh = {
        "probe": {"lastSuccessTime": "2026-11-28T10:00:00Z"},
        "backlog": {"unlocked": 0, "locked": 0, "observedTime": "2026-11-28T10:00:00Z"},
    }
    assert keep_heartbeats(fresh, written) == written
    for unreadable in (None, "yesterday"):
        damaged = {**written, "probe": {"lastSuccessTime": unreadable}}
        assert keep_heartbeats(fresh, damaged) == fresh


def test_keeping_heartbeats_leaves_the_fresh_status_as_it_was() -> None:
    from flowable_worker_operator.status import keep_heartbeats

    written = {
        "probe": {"consecutiveFailures": 0, "lastSuccessTime": "2026-11-28T10:00:00Z"},
        "backlog": {"unlocked": 0, "locked": 0, "observedTime": "2026-11-28T10:00:00Z"},
        "conditions": [{"type": "Ready", "status": "True"}],
    }
    fresh = {
        "probe": {"consecutiveFailures": 0, "lastSuccessTime": "2026-11-28T10:00:15Z"},
        "backlog": {"unlocked": 0, "locked": 0, "observedTime": "2026-11-28T10:00:15Z"},
        "conditions": [{"type": "Ready", "status": "True"}],
    }
    before = copy.deepcopy(fresh)
    kept = keep_heartbeats(fresh, written)
    assert kept == written
    assert fresh == before


# --- keep_heartbeats' comparison, against the one it replaced (null-stripped copies compared) --


def _stripped(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _stripped(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_stripped(v) for v in value]
    return value


def _reference_same(status: Mapping[str, Any], previous: Mapping[str, Any]) -> bool:
    """The comparison as it was: both sides stripped of nulls and of the present heartbeats."""
    present = [at for at in HEARTBEATS if _heartbeat_of(status, at) is not None]

    def without(value: Mapping[str, Any]) -> Any:
        stripped = _stripped(value)
        for *sections, key in present:
            inner = stripped
            for section in sections:
                inner = inner.get(section) if isinstance(inner, dict) else None
            if isinstance(inner, dict):
                inner.pop(key, None)
        return stripped

    return bool(without(status) == without({k: previous.get(k) for k in status}))


def _heartbeat_of(status: Mapping[str, Any], at: tuple[str, ...]) -> str | None:
    value: Any = status
    for key in at:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value if isinstance(value, str) else None


_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2, 2), st.sampled_from(["a", "b"]))
_times = st.one_of(st.none(), st.sampled_from(["2026-11-28T10:00:00Z", "2026-11-28T10:00:15Z"]))
_value = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["x", "y", "status"]), inner, max_size=3),
    ),
    max_leaves=8,
)


@st.composite
def _statuses(draw: st.DrawFn) -> dict[str, Any]:
    status: dict[str, Any] = draw(
        st.dictionaries(st.sampled_from(["replicas", "conditions", "selector"]), _value)
    )
    for section, key in (("probe", "lastSuccessTime"), ("backlog", "observedTime")):
        if draw(st.booleans()):
            inner = draw(st.dictionaries(st.sampled_from(["unlocked", "lastError"]), _value))
            inner[key] = draw(_times)
            status[section] = inner
    if draw(st.booleans()):
        status["lastActiveTime"] = draw(_times)
    return status


def _reference_keep(status: Mapping[str, Any], previous: Mapping[str, Any]) -> dict[str, Any]:
    """keep_heartbeats as it was before its comparison was rewritten (less the refresh every
    5 minutes, since removed)."""
    if not _reference_same(status, previous):
        return dict(status)
    present = [at for at in HEARTBEATS if _heartbeat_of(status, at) is not None]
    for at in present:
        before = _heartbeat_of(previous, at)
        if before == _heartbeat_of(status, at):
            continue
        if before is None or parse_time(before) is None:
            return dict(status)
    kept = copy.deepcopy(dict(status))
    for *sections, key in present:
        inner = kept
        for section in sections:
            inner = inner[section]
        inner[key] = _heartbeat_of(previous, (*sections, key))
    return kept


@given(status=_statuses(), previous=_statuses(), extra=st.booleans())
def test_keeping_heartbeats_decides_as_the_null_stripping_comparison_did(
    status: dict[str, Any], previous: dict[str, Any], extra: bool
) -> None:
    from flowable_worker_operator.status import keep_heartbeats

    if extra:
        previous["kopf"] = {"progress": {}}  # someone else's field: never weighed
    assert keep_heartbeats(status, previous) == _reference_keep(status, previous)


def test_keeping_heartbeats_sees_a_change_beside_an_unmoved_heartbeat() -> None:
    from flowable_worker_operator.status import keep_heartbeats

    previous = {"probe": {"lastSuccessTime": "2026-11-28T10:00:00Z", "lastError": "x"}}
    fresh = {"probe": {"lastSuccessTime": "2026-11-28T10:00:15Z", "lastError": None}}
    assert keep_heartbeats(fresh, previous) == fresh  # the error went: written
    same = {"probe": {"lastSuccessTime": "2026-11-28T10:00:15Z", "lastError": "x"}}
    assert keep_heartbeats(same, previous) == previous


_kinds = st.sampled_from([*CONDITION_TYPES, "SomeoneElses"])
_condition = st.fixed_dictionaries(
    {
        "type": _kinds,
        "status": st.sampled_from(["True", "False", "Unknown"]),
        "lastTransitionTime": st.sampled_from(["2026-11-28T09:00:00Z", ""]),
        "reason": st.just("Before"),
    }
)
_update = st.tuples(_kinds, st.sampled_from([True, False, None]), st.just("R"), st.just("m"))


@given(
    conditions=st.lists(_condition, max_size=5),
    updates=st.lists(_update, max_size=6, unique_by=lambda u: u[0]),
)
def test_updates_of_distinct_types_at_once_are_those_one_after_another(
    conditions: list[dict[str, Any]], updates: list[tuple[str, bool | None, str, str]]
) -> None:
    from flowable_worker_operator.status import set_conditions

    one_by_one: list[dict[str, Any]] = list(conditions)
    for kind, status, reason, message in updates:
        one_by_one = set_condition(
            one_by_one, type=kind, status=status, reason=reason, message=message,
            generation=2, now=T1,
        )  # fmt: skip
    at_once = set_conditions(conditions, updates, generation=2, now=T1)
    if updates:
        assert at_once == one_by_one


def test_a_type_set_twice_in_one_go_is_judged_against_what_was_stored() -> None:
    from flowable_worker_operator.status import set_conditions

    stored = set_condition([], type="Ready", status=False, reason="A", message="", generation=1,
                           now=T0)  # fmt: skip
    updates = [("Ready", True, "Idle", ""), ("Ready", False, "TopicNotFound", "")]
    (ready,) = set_conditions(stored, updates, generation=1, now=T1)
    assert (ready["status"], ready["reason"]) == ("False", "TopicNotFound")
    assert ready["lastTransitionTime"] == stored[0]["lastTransitionTime"]
