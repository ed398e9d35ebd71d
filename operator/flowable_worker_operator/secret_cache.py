"""The Secrets that pools name, read by name and kept for a while, so a tick rarely asks for them.

A pool's tick needs its Secrets twice: the engine's credentials, CA and client certificate for
the probe (`engines`), and every Secret value the worker pods read for the pod template's
fingerprint (`kube`, `secrethash`). Read at every tick, that is two GETs per pool per interval:
at 1000 pools on 15 s, 130 requests a second to the API server, most of them for Secrets that did
not change. A pool whose Secret does not exist paid the same for an answer that does not change
either (`bench/operator_scale.py --bad-every 10`: 50 such pools cost 101 GETs per interval).

Why not a watch: a list+watch of Secrets (what controller-runtime's cached client does) would
put every Secret of every watched namespace in the operator's memory, and needs `list` and
`watch` on Secrets, which lets the operator read all of them. A watch per Secret name
(`fieldSelector=metadata.name=...`) needs the same verbs, because the names are the users'
choice and cannot be listed in the Role. The operator keeps its RBAC at `get` (it reads the
Secrets pools name, and no others), so it reads them by name and keeps the answers here:

- **Found**: kept and read again once it is `refresh_seconds` (30 s) old. A changed Secret (a
  rotated password, a fixed one) reaches the pools within 30 s, plus their next tick; kubelet
  takes longer to update a Secret mounted as a volume (its sync period, a minute, plus its
  cache's delay), and a Secret in an environment variable never changes in a running pod.
- **Missing (404) or not allowed (403)**: remembered too, and read again after a back-off that
  starts at `first_retry_seconds` (5 s, so a Secret created a moment after its pool, as apply
  order or a secrets controller make it, is seen at once) and doubles up to `refresh_seconds`.
  A Secret created later is thus seen within 30 s as well, and a name that stays missing costs
  one GET per 30 s, however many pools name it.
- **Refreshed on demand** (`refresh`): the caller reads again at once when a pool's spec changes
  (`kube.ClusterWorkload`), so a user who edits the pool sees the Secrets as they are now. The
  back-off starts again then.
- **Any other failure** (5xx, a timeout, no connection) is not remembered: it is raised to the
  caller as before, whose tick fails and is retried, and the next read asks again.

Concurrent readers of one Secret wait for one GET (pools of one topic tick in the same instant,
`shared_answers.phase_delay`): the first reads, the others get its answer. Entries nobody asked for
in `forget_after_seconds` (10 min) are dropped, so a deleted pool's credentials do not stay in
memory for the life of the process.

The cache answers as the API does (`read_namespaced_secret(name, namespace)`: the Secret, or an
`ApiException` with status 404 or 403), so `engines` and `kube` read through it as they read
through `CoreV1Api`. The readers run in `asyncio.to_thread` workers, so the map is guarded by a
lock, and one lock per Secret name keeps concurrent readers of one name to one GET.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException

__all__ = ["FIRST_RETRY_SECONDS", "REFRESH_SECONDS", "SecretCache"]

REFRESH_SECONDS = 30.0
"""A found Secret is read again once this old; a missing one at most this long after its last
miss. The documented bound for a changed, created or deleted Secret to reach a pool (plus one
polling interval)."""

FIRST_RETRY_SECONDS = 5.0
"""A missing or forbidden Secret is read again this long after its first miss, then twice as long
after each further one, up to `REFRESH_SECONDS`."""

FORGET_AFTER_SECONDS = 600.0
"""An entry no reader asked for in this long is dropped (its pools are gone or changed)."""

_REMEMBERED = (404, 403)
"""Answers kept like a found Secret: what changes only when a user acts (creates the Secret,
grants the RBAC). Everything else may be gone at the next try and is not kept."""


@dataclass
class _Entry:
    secret: Any  # the Secret as the API returned it; None when `status` is set
    status: int | None  # 404 or 403: the Secret is missing or may not be read
    reason: str
    due: float  # read again from this moment on
    used: float  # last asked for
    misses: int = 0  # 404/403 answers in a row


class SecretCache:
    """Secrets by (namespace, name), read through `read`; see the module's docstring.

    `read(name, namespace)` is `CoreV1Api.read_namespaced_secret` (or a fake of it). `clock` is
    monotonic seconds; tests give a fake one.
    """

    def __init__(
        self,
        read: Callable[[str, str], Any],
        *,
        refresh_seconds: float = REFRESH_SECONDS,
        first_retry_seconds: float = FIRST_RETRY_SECONDS,
        forget_after_seconds: float = FORGET_AFTER_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < first_retry_seconds <= refresh_seconds:
            raise ValueError("need 0 < first_retry_seconds <= refresh_seconds")
        self._read = read
        self._refresh = refresh_seconds
        self._first_retry = first_retry_seconds
        self._forget_after = max(forget_after_seconds, refresh_seconds)
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._reading: dict[tuple[str, str], threading.Lock] = {}
        self._swept_at = clock()

    def read_namespaced_secret(self, name: str, namespace: str) -> Any:
        """The Secret as last read, or read now when its entry is due (or there is none).

        Raises `ApiException` 404 or 403 as the API server answered (remembered, see the module),
        and whatever `read` raises otherwise (not remembered)."""
        key = (namespace, name)
        entry = self._current(key)
        if entry is None:
            with self._reading_lock(key):
                # Another reader may have read it while this one waited for the lock.
                entry = self._current(key)
                if entry is None:
                    entry = self._fetch(key)
        if entry.status is not None:
            # A new exception each time: one raised object shared by threads would share its
            # traceback too.
            raise ApiException(status=entry.status, reason=entry.reason)
        return entry.secret

    def read_cached(self, name: str, namespace: str) -> Any:
        """`read_namespaced_secret` without a request: the Secret (or the 404 or 403 remembered,
        raised the same way) while its entry is not due, None when a read would ask the API
        server. Never blocks on a read in progress, so the event loop may call it: a tick whose
        Secrets are all known computes their fingerprint without a thread hand-off."""
        entry = self._current((namespace, name))
        if entry is None:
            return None
        if entry.status is not None:
            raise ApiException(status=entry.status, reason=entry.reason)
        return entry.secret

    def refresh(self, namespace: str, names: Iterable[str]) -> None:
        """The next read of each of these Secrets asks the API server, and a missing one's
        back-off starts again (a pool naming them changed: its user is acting now)."""
        with self._lock:
            for name in names:
                entry = self._entries.get((namespace, name))
                if entry is not None:
                    entry.due = float("-inf")
                    entry.misses = 0

    def __len__(self) -> int:
        """Secrets remembered, found or not (for tests and debugging)."""
        with self._lock:
            return len(self._entries)

    # --- inside ---------------------------------------------------------------------------------

    def _current(self, key: tuple[str, str]) -> _Entry | None:
        """The entry for `key` while it is not due, marked as used; None when it must be read."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or now >= entry.due:
                return None
            entry.used = now
            return entry

    def _reading_lock(self, key: tuple[str, str]) -> threading.Lock:
        with self._lock:
            lock = self._reading.get(key)
            if lock is None:
                lock = self._reading[key] = threading.Lock()
            return lock

    def _fetch(self, key: tuple[str, str]) -> _Entry:
        namespace, name = key
        try:
            secret = self._read(name, namespace)
        except ApiException as error:
            if error.status not in _REMEMBERED:
                raise
            return self._store(key, None, error.status, str(error.reason or ""))
        return self._store(key, secret, None, "")

    def _store(self, key: tuple[str, str], secret: Any, status: int | None, reason: str) -> _Entry:
        now = self._clock()
        with self._lock:
            held = self._entries.get(key)
            misses = 0 if status is None else (held.misses if held is not None else 0) + 1
            if status is None:
                delay = self._refresh
            else:
                delay = min(self._refresh, self._first_retry * 2 ** min(misses - 1, 30))
            entry = _Entry(secret, status, reason, due=now + delay, used=now, misses=misses)
            self._entries[key] = entry
            self._sweep(now)
            return entry

    def _sweep(self, now: float) -> None:
        """Drop what nobody asked for in `forget_after` (under the lock, at most once per
        `refresh` seconds, so a read costs O(1) on average)."""
        if now - self._swept_at < self._refresh:
            return
        self._swept_at = now
        for key in [k for k, e in self._entries.items() if now - e.used > self._forget_after]:
            del self._entries[key]
            lock = self._reading.get(key)
            if lock is not None and not lock.locked():
                del self._reading[key]
