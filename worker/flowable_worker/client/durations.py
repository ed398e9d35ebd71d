"""Durations as Flowable reads them (`lockDuration`, `retryTimeout`) and as people write them.

Flowable parses these with `java.time.Duration.parse`, which accepts `PnDTnHnMn.nS` (days, hours,
minutes, fractional seconds) but no years or months; we only ever write that shape. People (flags,
environment variables, a pool's spec) may also write `300`, `300s`, `5m` or `1h30m`:
`parse_duration` reads all of these, for the worker's configuration and the operator's spec alike.
"""

from __future__ import annotations

import re
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


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_ISO = re.compile(
    r"^P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$",
    re.IGNORECASE,
)


def parse_duration(text: str) -> timedelta:
    """`PT5M`, `300`, `300s`, `5m`, `1h30m`, `250ms` -> timedelta; ValueError otherwise."""
    value = text.strip()
    iso = _ISO.match(value)
    if iso and value.upper() not in {"P", "PT"} and not value.upper().endswith("T"):
        days, hours, minutes, seconds = (float(g) if g else 0.0 for g in iso.groups())
        return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    try:
        return timedelta(seconds=float(value))
    except ValueError:
        pass
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    parts = _DURATION_PART.findall(value)
    if parts and "".join(n + u for n, u in parts) == value:
        return timedelta(seconds=sum(float(n) * units[u] for n, u in parts))
    raise ValueError(f"not a duration: {text!r} (use PT5M, 300s, 5m or 300)")
