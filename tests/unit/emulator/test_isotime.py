"""Flowable's instant format and Java's Duration grammar."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from tests.support.emulator.isotime import format_instant, parse_duration


def test_instants_are_utc_with_millis_only_when_non_zero() -> None:
    assert format_instant(datetime(2020, 5, 8, 9, 35, 45, 583999, tzinfo=UTC)) == \
        "2020-05-08T09:35:45.583Z"
    assert format_instant(datetime(2020, 5, 8, 9, 35, 45, 999, tzinfo=UTC)) == \
        "2020-05-08T09:35:45Z"
    assert format_instant(datetime(2020, 5, 8, 11, 0, tzinfo=timezone(timedelta(hours=2)))) == \
        "2020-05-08T09:00:00Z"
    assert format_instant(None) is None


@pytest.mark.parametrize(("text", "expected"), [
    ("PT5M", timedelta(minutes=5)),
    ("PT0.5S", timedelta(milliseconds=500)),
    ("P2D", timedelta(days=2)),
    ("P1DT2H3M4.25S", timedelta(days=1, hours=2, minutes=3, seconds=4.25)),
    ("-PT1M", timedelta(minutes=-1)),
    ("pt10s", timedelta(seconds=10)),
])
def test_durations_parse_like_java(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["5m", "P", "PT", "P1Y", "P1M", "PT5", ""])
def test_durations_java_rejects_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="cannot be parsed"):
        parse_duration(text)
