"""`secret_cache.SecretCache`: Secrets read by name and kept, on a clock the test moves.

What it promises (its module docstring): a found Secret is read again after 30 s, a missing or
forbidden one after 5, 10, 20, then every 30 s; `refresh` reads at once and restarts the back-off;
other failures are not kept; concurrent readers of one Secret share one read; what nobody asks
for is forgotten. It answers as `CoreV1Api.read_namespaced_secret` does.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from flowable_worker_operator.secret_cache import (
    FIRST_RETRY_SECONDS,
    REFRESH_SECONDS,
    SecretCache,
)


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


class Api:
    """`read_namespaced_secret` over a dict; `status[name]` answers that HTTP status instead."""

    def __init__(self, secrets: dict[str, dict[str, str]] | None = None) -> None:
        self.secrets = secrets or {}
        self.status: dict[str, int] = {}
        self.reads: list[tuple[str, str]] = []

    def read_namespaced_secret(self, name: str, namespace: str) -> Any:
        self.reads.append((namespace, name))
        if name in self.status:
            raise ApiException(status=self.status[name], reason="refused")
        if name not in self.secrets:
            raise ApiException(status=404, reason="Not Found")
        return SimpleNamespace(data=dict(self.secrets[name]), metadata=SimpleNamespace(uid="u"))


def _cache(api: Api, clock: Clock, **kwargs: Any) -> SecretCache:
    return SecretCache(api.read_namespaced_secret, clock=clock, **kwargs)


def _status(cache: SecretCache, name: str, namespace: str = "billing") -> int | str:
    """The HTTP status a read answers, or the Secret's `data['v']` when found."""
    try:
        return str(cache.read_namespaced_secret(name, namespace).data["v"])
    except ApiException as error:
        return int(error.status)


def _reads_over(cache: SecretCache, api: Api, clock: Clock, seconds: int) -> list[float]:
    """Read once a second for `seconds`; the offsets (from the start) at which the API was asked."""
    start, asked = clock.now, []
    for _ in range(seconds):
        before = len(api.reads)
        _status(cache, "creds")
        if len(api.reads) > before:
            asked.append(clock.now - start)
        clock.now += 1
    return asked


def test_a_found_secret_is_served_from_memory_until_it_is_due() -> None:
    api, clock = Api({"creds": {"v": "1"}}), Clock()
    cache = _cache(api, clock)
    assert _reads_over(cache, api, clock, 95) == [0, 30, 60, 90]


def test_a_changed_secret_is_seen_within_the_refresh_time() -> None:
    api, clock = Api({"creds": {"v": "1"}}), Clock()
    cache = _cache(api, clock)
    assert _status(cache, "creds") == "1"
    clock.now += 7
    api.secrets["creds"] = {"v": "2"}  # rotated
    seen = clock.now
    while _status(cache, "creds") != "2":
        clock.now += 1
    assert clock.now - seen <= REFRESH_SECONDS


def test_a_missing_secret_is_read_again_after_a_back_off_capped_at_the_refresh_time() -> None:
    api, clock = Api(), Clock()
    cache = _cache(api, clock)
    assert (FIRST_RETRY_SECONDS, REFRESH_SECONDS) == (5, 30)  # the documented schedule
    assert _reads_over(cache, api, clock, 130) == [0, 5, 15, 35, 65, 95, 125]
    assert _status(cache, "creds") == 404  # answered as the API does, from memory


def test_a_secret_created_later_is_seen_within_the_refresh_time_whatever_the_back_off() -> None:
    for created_after in (1, 4, 6, 14, 33, 64, 200):
        api, clock = Api(), Clock()
        cache = _cache(api, clock)
        _reads_over(cache, api, clock, created_after)
        api.secrets["creds"] = {"v": "1"}
        created = clock.now
        while _status(cache, "creds") != "1":
            clock.now += 0.5
        assert clock.now - created <= REFRESH_SECONDS, created_after


def test_a_forbidden_secret_backs_off_like_a_missing_one_and_says_403() -> None:
    api, clock = Api(), Clock()
    api.status["creds"] = 403
    cache = _cache(api, clock)
    assert _reads_over(cache, api, clock, 40) == [0, 5, 15, 35]
    assert _status(cache, "creds") == 403


def test_other_failures_are_not_kept_the_next_read_asks_again() -> None:
    api, clock = Api(), Clock()
    api.status["creds"] = 500
    cache = _cache(api, clock)
    for _ in range(3):
        assert _status(cache, "creds") == 500
    assert len(api.reads) == 3
    del api.status["creds"]
    api.secrets["creds"] = {"v": "1"}
    assert _status(cache, "creds") == "1"


def test_a_deleted_secret_is_missed_after_the_refresh_time_then_backs_off_from_the_start() -> None:
    api, clock = Api({"creds": {"v": "1"}}), Clock()
    cache = _cache(api, clock)
    _status(cache, "creds")
    del api.secrets["creds"]
    clock.now += REFRESH_SECONDS
    assert _reads_over(cache, api, clock, 16) == [0, 5, 15]


def test_refresh_reads_at_once_and_restarts_the_back_off() -> None:
    api, clock = Api(), Clock()
    cache = _cache(api, clock)
    _reads_over(cache, api, clock, 100)  # backed off to every 30 s
    reads = len(api.reads)
    cache.refresh("billing", ["creds", "never-read"])
    assert _status(cache, "creds") == 404
    assert len(api.reads) == reads + 1
    assert _reads_over(cache, api, clock, 16)[:2] == [5, 15]  # 5 s after the refreshed miss
    api.secrets["creds"] = {"v": "1"}
    cache.refresh("billing", ["creds"])
    assert _status(cache, "creds") == "1"


def test_a_refresh_in_another_namespace_changes_nothing() -> None:
    api, clock = Api({"creds": {"v": "1"}}), Clock()
    cache = _cache(api, clock)
    _status(cache, "creds")
    cache.refresh("shipping", ["creds"])
    _status(cache, "creds")
    assert api.reads == [("billing", "creds")]


def test_secrets_are_kept_per_namespace() -> None:
    api, clock = Api({"creds": {"v": "1"}}), Clock()
    cache = _cache(api, clock)
    for namespace in ("billing", "shipping", "billing"):
        cache.read_namespaced_secret("creds", namespace)
    assert api.reads == [("billing", "creds"), ("shipping", "creds")]


def test_concurrent_readers_of_one_secret_share_one_read() -> None:
    started, release = threading.Event(), threading.Event()
    reads: list[str] = []

    def slow(name: str, namespace: str) -> Any:
        reads.append(name)
        started.set()
        release.wait(5)
        return SimpleNamespace(data={"v": "1"}, metadata=SimpleNamespace(uid="u"))

    cache = SecretCache(slow)
    with ThreadPoolExecutor(8) as threads:
        futures = [threads.submit(cache.read_namespaced_secret, "creds", "billing")]
        assert started.wait(5)
        futures += [
            threads.submit(cache.read_namespaced_secret, "creds", "billing") for _ in range(7)
        ]
        time.sleep(0.1)  # the seven are waiting for the first's read
        release.set()
        answers = [future.result(timeout=5) for future in futures]
    assert reads == ["creds"]
    assert all(answer is answers[0] for answer in answers)


def test_what_nobody_asks_for_is_forgotten() -> None:
    api, clock = Api({"old": {"v": "1"}, "creds": {"v": "2"}}), Clock()
    cache = _cache(api, clock, forget_after_seconds=600)
    _status(cache, "old")
    _reads_over(cache, api, clock, 700)  # "creds" only
    assert len(cache) == 1


def test_a_first_retry_longer_than_the_refresh_time_is_refused() -> None:
    with pytest.raises(ValueError, match="first_retry_seconds"):
        SecretCache(Api().read_namespaced_secret, refresh_seconds=5, first_retry_seconds=10)


def test_read_cached_answers_what_is_kept_and_none_when_due_without_asking() -> None:
    api, clock = Api({"creds": {"v": "1"}}), Clock()
    cache = _cache(api, clock)
    assert cache.read_cached("creds", "billing") is None  # never read: a read would ask
    assert _status(cache, "creds") == "1"
    clock.now += REFRESH_SECONDS - 1
    assert cache.read_cached("creds", "billing").data["v"] == "1"
    clock.now += 1
    assert cache.read_cached("creds", "billing") is None  # due
    assert api.reads == [("billing", "creds")]


def test_read_cached_raises_a_remembered_miss_as_the_api_does() -> None:
    api, clock = Api(), Clock()
    api.status["locked"] = 403
    cache = _cache(api, clock)
    assert _status(cache, "missing") == 404
    assert _status(cache, "locked") == 403
    for name, status in (("missing", 404), ("locked", 403)):
        with pytest.raises(ApiException) as raised:
            cache.read_cached(name, "billing")
        assert raised.value.status == status
    clock.now += FIRST_RETRY_SECONDS
    assert cache.read_cached("missing", "billing") is None
    assert len(api.reads) == 2


def test_read_cached_does_not_wait_for_a_read_in_progress() -> None:
    api, clock = Api({"creds": {"v": "1"}}), Clock()
    started, release = threading.Event(), threading.Event()

    def slow(name: str, namespace: str) -> Any:
        started.set()
        release.wait(5)
        return api.read_namespaced_secret(name, namespace)

    cache = SecretCache(slow, clock=clock)
    with ThreadPoolExecutor(1) as pool:
        reading = pool.submit(cache.read_namespaced_secret, "creds", "billing")
        assert started.wait(5)
        began = time.monotonic()
        assert cache.read_cached("creds", "billing") is None
        assert time.monotonic() - began < 1
        release.set()
        assert reading.result(5).data["v"] == "1"
    assert cache.read_cached("creds", "billing").data["v"] == "1"
