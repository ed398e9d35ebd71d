"""ISO-8601 instants and durations exactly as Flowable writes and reads them.

Flowable stores times with millisecond precision and renders them as UTC instants with a `Z`,
leaving the fraction out when it is zero (`2020-05-08T09:35:45Z`, `2020-05-08T09:35:45.583Z`).
Durations (`lockDuration`, `retryTimeout`) go through `java.time.Duration.parse`, which accepts
only days, hours, minutes and seconds (no years or months) and allows signs on every part.
This module is pure: no clock.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(
    r"([-+]?)P(?:([-+]?\d+)D)?"
    r"(T(?:([-+]?\d+)H)?(?:([-+]?\d+)M)?(?:([-+]?\d+)(?:[.,](\d{0,9}))?S)?)?",
    re.IGNORECASE,
)


def truncate_to_millis(moment: datetime) -> datetime:
    """Drop sub-millisecond digits, as Flowable's database columns do."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def format_instant(moment: datetime | None) -> str | None:
    """Render like Flowable: UTC, `Z`, milliseconds only when non-zero."""
    if moment is None:
        return None
    utc = truncate_to_millis(moment.astimezone(UTC))
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    millis = utc.microsecond // 1000
    if millis:
        text += f".{millis:03d}"
    return text + "Z"


def parse_duration(text: str) -> timedelta:
    """Parse like `java.time.Duration.parse`; raise ValueError on anything it would reject."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or text.strip().upper().endswith("T"):
        raise ValueError(f"Text cannot be parsed to a Duration: {text}")
    negate, days, time_part, hours, minutes, seconds, fraction = match.groups()
    if days is None and not time_part:
        raise ValueError(f"Text cannot be parsed to a Duration: {text}")
    if time_part and hours is None and minutes is None and seconds is None:
        raise ValueError(f"Text cannot be parsed to a Duration: {text}")
    total = timedelta(
        days=int(days or 0),
        hours=int(hours or 0),
        minutes=int(minutes or 0),
        seconds=int(seconds or 0),
    )
    if fraction:
        micros = int((fraction + "000000")[:6])
        sign = -1 if seconds is not None and seconds.startswith("-") else 1
        total += timedelta(microseconds=sign * micros)
    return -total if negate == "-" else total
