"""ISO-8601 durations as Flowable reads them (`lockDuration`, `retryTimeout`).

Flowable parses these with `java.time.Duration.parse`, which accepts `PnDTnHnMn.nS` (days, hours,
minutes, fractional seconds) but no years or months; we only ever write that shape.
"""

from __future__ import annotations

from datetime import timedelta


def format_duration(value: timedelta) -> str:
    """`timedelta(minutes=5)` -> `PT5M`, `timedelta(seconds=0.5)` -> `PT0.5S`.

    Days are written as hours (`PT48H`), as `Duration.toString()` does, so the output is one
    canonical spelling. Negative durations are refused: no Flowable field means anything by them.
    """
    if value < timedelta(0):
        raise ValueError(f"duration must not be negative: {value!r}")
    micros = value // timedelta(microseconds=1)
    if micros == 0:
        return "PT0S"
    hours, micros = divmod(micros, 3_600_000_000)
    minutes, micros = divmod(micros, 60_000_000)
    seconds, micros = divmod(micros, 1_000_000)
    parts = ["PT"]
    if hours:
        parts.append(f"{hours}H")
    if minutes:
        parts.append(f"{minutes}M")
    if seconds or micros:
        fraction = f".{micros:06d}".rstrip("0") if micros else ""
        parts.append(f"{seconds}{fraction}S")
    return "".join(parts)


def duration_text(value: timedelta | str) -> str:
    """The ISO-8601 text to send for a duration given either way.

    A string goes out unchanged: Flowable is the judge of what it accepts, and a bad one comes back
    as a `BadRequestError` that says so.
    """
    return format_duration(value) if isinstance(value, timedelta) else value
