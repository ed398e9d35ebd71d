"""Every request the emulator received, for tests that count calls or check what was sent.

Records are appended when the answer (or the injected fault) is decided, so `status` is what
the client saw: `None` when the connection was reset without an answer.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .faults import FaultKind


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str  # under the API root, e.g. "/acquire/jobs/<id>/complete", query string excluded
    query: str
    endpoint: str  # "acquire", "complete", ... or "unknown"
    job_id: str | None
    body: Any  # parsed JSON body, or None when absent or unparsable
    status: int | None
    fault: FaultKind | None
    at: datetime


class RequestLog:
    """Thread-safe append-only list of `RequestRecord`s."""

    def __init__(self) -> None:
        self._records: list[RequestRecord] = []
        self._lock = threading.Lock()

    def append(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def records(self, *, endpoint: str | None = None) -> list[RequestRecord]:
        with self._lock:
            return [r for r in self._records if endpoint is None or r.endpoint == endpoint]

    def counts(self) -> Counter[str]:
        """Requests per endpoint name."""
        with self._lock:
            return Counter(r.endpoint for r in self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
