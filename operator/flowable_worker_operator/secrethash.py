"""A fingerprint of the Secret values a pool's worker pods read, to roll them when one changes.

A running pod never sees a changed Secret through its environment (`secretKeyRef` is read once,
at container start), so pods started with a wrong password keep it after the Secret is fixed.
The operator therefore puts a fingerprint of every Secret value the worker pods take into the pod
template (`flowable-worker.io/secrets-hash`): a changed value changes the template, and the
Deployment controller replaces the pods, as it does for any template change.

The values themselves never reach the template, and neither does a plain hash of them: anyone
with `view` reads Deployments, and a SHA-256 of a short password is guessed offline in no time.
Each value is an HMAC keyed by its Secret's `metadata.uid`: stable while the Secret lives (so an
operator restart rolls nothing), unknown to a reader without access to the Secret itself (who
could read the value anyway). Recreating a Secret with the same content rolls the pods once.

Pure: the Secrets come in as values (`SecretContent`), the shell (`kube`) reads them.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from flowable_worker_operator.spec import Pool

__all__ = ["SECRETS_HASH_ANNOTATION", "SecretContent", "secret_refs", "secrets_hash"]

SECRETS_HASH_ANNOTATION = "flowable-worker.io/secrets-hash"

_AUTH_KEYS = ("username", "password", "token")
"""The keys of `engine.authSecretRef` the worker reads (as `engines._credentials` does)."""


@dataclass(frozen=True)
class SecretContent:
    """A Secret as read: its uid and its `data` (base64 text, as the API returns it)."""

    uid: str
    data: Mapping[str, str] = field(default_factory=dict)


def secret_refs(pool: Pool) -> tuple[tuple[str, str], ...]:
    """(Secret, key) of every Secret value the pool's worker pods take, in a stable order:
    the engine's credentials, CA and client certificate, and `secretKeyRef`s of `worker.env` and
    of the template's containers."""
    worker = pool.spec.worker
    if worker is None:
        return ()
    engine = pool.spec.engine
    refs: list[tuple[str, str]] = []
    if engine.auth_secret_ref is not None:
        refs += [(engine.auth_secret_ref.name, key) for key in _AUTH_KEYS]
    if engine.tls.ca_secret_ref is not None:
        refs.append((engine.tls.ca_secret_ref.name, engine.tls.ca_secret_ref.key))
    cert = engine.tls.client_cert_secret_ref
    if cert is not None:
        refs += [(cert.name, cert.cert_key), (cert.name, cert.key_key)]
    refs += worker.secret_key_refs()
    return tuple(sorted(set(refs)))


def secrets_hash(
    refs: Sequence[tuple[str, str]], secrets: Mapping[str, SecretContent | None]
) -> str | None:
    """16 hex digits that change when any referenced value changes; None without references.

    A missing Secret or key counts as its own state ("absent"), so creating it later rolls the
    pods too (they could not start without it, or started without the value).
    """
    if not refs:
        return None
    lines = []
    for name, key in sorted(set(refs)):
        secret = secrets.get(name)
        value = None if secret is None else secret.data.get(key)
        if secret is None or value is None:
            lines.append(f"{name}/{key}:absent")
            continue
        mac = hmac.new(secret.uid.encode(), f"{name}\0{key}\0{value}".encode(), hashlib.sha256)
        lines.append(f"{name}/{key}:{mac.hexdigest()}")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]
