"""Fault injection: make chosen requests slow, fail, or vanish, deterministically.

A `Fault` names what goes wrong (`FaultKind`) and which requests it hits (endpoint name, path
prefix under the API root, HTTP method), either for the next `times` matching requests or with a
`probability` drawn from a seeded RNG, so a flaky-network test replays the same way every run.
Every kind except `RESPOND_LOST` strikes before the engine sees the request (nothing changes);
`RESPOND_LOST` lets the engine apply the request and then drops the connection, which is how a
client learns nothing about a complete that did happen, the case where a worker must not
complete twice.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from enum import Enum


class FaultKind(Enum):
    LATENCY = "latency"  # sleep `delay_seconds`, then answer normally
    SERVER_ERROR = "server_error"  # `status` (5xx) with `body`
    CONNECTION_RESET = "connection_reset"  # RST without any response
    MALFORMED_JSON = "malformed_json"  # 200 with a body that is not valid JSON
    UNAUTHORIZED = "unauthorized"  # 401 with an empty body, as Spring Security answers
    RESPOND_LOST = "respond_lost"  # apply the request, then RST instead of the answer
    ANSWER = "answer"  # `status` with `body` as `content_type`: huge, ill-typed or HTML answers


@dataclass
class Fault:
    """One injection rule.

    `times` caps how often it fires (None: no cap); `probability` makes each matching request
    fire with that chance (None: always). Both None means every matching request until cleared.
    """

    kind: FaultKind
    endpoint: str | None = None  # e.g. "acquire", "complete" (see server.ENDPOINTS)
    path_prefix: str | None = None  # under the API root, e.g. "/acquire/jobs"
    method: str | None = None
    times: int | None = None
    probability: float | None = None
    delay_seconds: float = 0.5
    status: int = 500
    body: str = '{"message":"Internal server error","exception":"injected fault"}'
    content_type: str = "application/json"
    hits: int = field(default=0, init=False)

    def matches(self, *, method: str, path: str, endpoint: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.endpoint is not None and self.endpoint != endpoint:
            return False
        return self.path_prefix is None or path.startswith(self.path_prefix)

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times


class FaultInjector:
    """The active rules; the first live rule that matches a request (and wins its draw) fires."""

    def __init__(self, *, seed: int = 0) -> None:
        self._rules: list[Fault] = []
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._rules.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def reseed(self, seed: int) -> None:
        with self._lock:
            self._rng.seed(seed)

    def pick(self, *, method: str, path: str, endpoint: str) -> Fault | None:
        """The fault for this request, if any; counts it against the rule's budget."""
        with self._lock:
            for rule in self._rules:
                if rule.exhausted or not rule.matches(method=method, path=path, endpoint=endpoint):
                    continue
                if rule.probability is not None and self._rng.random() >= rule.probability:
                    continue
                rule.hits += 1
                return rule
            return None
