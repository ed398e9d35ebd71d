"""Durations go to Flowable as ISO-8601 text that java.time.Duration.parse reads."""

from __future__ import annotations

from datetime import timedelta

import pytest

from flowable_worker.client.durations import duration_text, format_duration


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(minutes=5), "PT5M"),
        (timedelta(seconds=0.5), "PT0.5S"),
        (timedelta(seconds=30), "PT30S"),
        (timedelta(hours=1, minutes=30), "PT1H30M"),
        (timedelta(days=2), "PT48H"),
        (timedelta(minutes=1, microseconds=1), "PT1M0.000001S"),
        (timedelta(0), "PT0S"),
    ],
)
def test_timedeltas_become_iso_durations(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


def test_a_negative_duration_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        format_duration(timedelta(seconds=-1))


def test_a_duration_string_is_sent_unchanged() -> None:
    assert duration_text("PT5M") == "PT5M"


def test_a_timedelta_is_formatted() -> None:
    assert duration_text(timedelta(minutes=2)) == "PT2M"
