"""Reading and writing the date-time texts Flowable uses.

Job fields (`dueDate`, `lockExpirationTime`, ...) are ISO instants such as
`2020-05-08T09:35:45.583Z`, with the millis left out when zero; other deployments (older Jackson
configurations, proxies) may write `+00:00` or `+0000` offsets or more fraction digits. Parsing is
therefore lenient; writing matches exactly what Flowable's own parsers accept (see variables.py).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

# Up to 9 fraction digits (Java's Instant.toString may emit nanoseconds); Python keeps 6.
_FRACTION = re.compile(r"(\.\d{6})\d+")
_COMPACT_OFFSET = re.compile(r"([+-]\d{2})(\d{2})$")


def parse_datetime(text: str) -> datetime:
    """Parse an ISO-8601 date-time; offsets are kept, a missing offset gives a naive datetime."""
    cleaned = _FRACTION.sub(r"\1", text.strip())
    if cleaned.endswith(("z", "Z")):
        cleaned = cleaned[:-1] + "+00:00"
    elif "T" in cleaned and _COMPACT_OFFSET.search(cleaned.split("T", 1)[1]):
        cleaned = _COMPACT_OFFSET.sub(r"\1:\2", cleaned)
    return datetime.fromisoformat(cleaned)


def parse_instant(text: str) -> datetime:
    """Parse an instant to an aware UTC datetime; a text without offset is read as UTC."""
    parsed = parse_datetime(text)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _fraction(micros: int) -> str:
    """`.583` / `.583123` style fraction, omitted when zero (like Java's Instant.toString)."""
    if micros == 0:
        return ""
    return f".{micros // 1000:03d}" if micros % 1000 == 0 else f".{micros:06d}"


def format_instant(value: datetime, *, millis_only: bool = False) -> str:
    """An aware datetime as `YYYY-MM-DDTHH:MM:SS[.fff[fff]]Z` in UTC.

    `millis_only` truncates to milliseconds and always writes three digits, which is what
    Flowable's `date` parser (`yyyy-MM-dd'T'HH:mm[:ss[.SSS]]` plus offset) accepts: it refuses six
    fraction digits, and `java.util.Date` keeps only millis anyway.
    """
    if value.tzinfo is None:
        raise ValueError("an instant needs an aware datetime (tzinfo set)")
    utc = value.astimezone(UTC)
    # isoformat, not strftime: strftime("%Y") does not zero-pad years before 1000 on glibc.
    base = utc.replace(tzinfo=None, microsecond=0).isoformat()
    if millis_only:
        return f"{base}.{utc.microsecond // 1000:03d}Z"
    return f"{base}{_fraction(utc.microsecond)}Z"
