"""Pool conditions: transitions keep their time, order is fixed, statuses read back."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone

from flowable_worker_operator.status import (
    CONDITION_TYPES,
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

    now = datetime(2026, 11, 28, 10, 0, 15, tzinfo=UTC)
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
    assert keep_heartbeats(fresh, stored, now=now) == written
    later = now + timedelta(minutes=5)
    assert keep_heartbeats(fresh, stored, now=later) == fresh


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

    now = datetime(2026, 11, 28, 10, 0, 15, tzinfo=UTC)
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
    assert keep_heartbeats(fresh, written, now=now) == written
    more = {**fresh, "backlog": {**fresh["backlog"], "unlocked": 2}}
    assert keep_heartbeats(more, written, now=now) == more  # something else moved: all fresh
    assert keep_heartbeats(fresh, written, now=now + timedelta(minutes=5)) == fresh
    cleared = {**fresh, "lastActiveTime": None}
    assert keep_heartbeats(cleared, written, now=now) == cleared  # a removal is written


def test_keeping_heartbeats_leaves_the_fresh_status_as_it_was() -> None:
    from flowable_worker_operator.status import keep_heartbeats

    now = datetime(2026, 11, 28, 10, 0, 15, tzinfo=UTC)
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
    kept = keep_heartbeats(fresh, written, now=now)
    assert kept == written
    assert fresh == before
