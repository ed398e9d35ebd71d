"""Who may read `/metrics`: TLS on the metrics port and an optional static bearer token.

Shared by the worker's probe server and the operator's, so both speak what prometheus-operator's
ServiceMonitor and PodMonitor can scrape: `scheme: https` with a `tlsConfig`, and
`authorization: {type: Bearer, credentials: <Secret key>}` (or the older `bearerTokenSecret`).
Basic auth is left out on purpose: a bearer token is one Secret key on both sides, and adding a
second scheme would double what must be kept in sync for no reach Prometheus lacks.

Only `/metrics` asks for the token. `/healthz` and `/readyz` stay open because the kubelet probes
them and can send no credentials; they tell nothing beyond up/down and a reason. TLS, when on,
covers the whole port (kubelet HTTPS probes do not verify the certificate, so a self-signed one
works for them).

The certificate, key and token are read once at start: a missing, unreadable or unusable file is a
configuration error naming the file (exit 2), never a traceback on the first scrape. Rotating them
takes a restart (`kubectl rollout restart`), as for the worker's other mounted files.
"""

from __future__ import annotations

import hmac
import ssl
from typing import NoReturn

from flowable_worker.client.tls import check_readable

__all__ = ["authorized", "read_token", "server_tls_context"]

# A Secret's value fits easily; anything longer is not a token but a wrong file.
_MAX_TOKEN_BYTES = 4096


def server_tls_context(cert: str, key: str | None) -> ssl.SSLContext:
    """A server context with `cert` (and `key`; None: in the same file); ValueError naming it."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    for path, what in ((cert, "metrics TLS certificate"), (key, "metrics TLS key")):
        if path is not None:
            check_readable(path, what)
    try:
        context.load_cert_chain(cert, key, password=_no_password)
    except (ssl.SSLError, _EncryptedKeyError) as error:
        if isinstance(error, ssl.SSLError) and error.reason == "KEY_VALUES_MISMATCH":
            problem = "the key does not belong to the certificate"
        elif isinstance(error, _EncryptedKeyError):
            problem = "the key is encrypted; give an unencrypted PEM key"
        else:
            problem = "needs a PEM certificate and its PEM private key"
        shown = cert if key is None else f"{cert!r} with key {key!r}"
        raise ValueError(f"cannot load metrics TLS certificate {shown}: {problem}") from None
    return context


def read_token(path: str) -> str:
    """The bearer token in `path`, surrounding whitespace removed; ValueError naming the file.

    Stripped like every credential read from a Secret (a file written by `kubectl create secret
    --from-file` keeps its last newline), so Prometheus and this server agree on the value.
    """
    try:
        with open(path, "rb") as handle:
            raw = handle.read(_MAX_TOKEN_BYTES + 1)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ValueError(f"cannot read metrics auth token file {path!r}: {reason}") from None
    if len(raw) > _MAX_TOKEN_BYTES:
        raise ValueError(
            f"metrics auth token file {path!r} is longer than {_MAX_TOKEN_BYTES} bytes"
        )
    try:
        token = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError(f"metrics auth token file {path!r} is not UTF-8 text") from None
    if not token:
        raise ValueError(f"metrics auth token file {path!r} is empty")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in token):
        raise ValueError(
            f"metrics auth token in {path!r} contains whitespace or a control character "
            "(value not shown)"
        )
    return token


def authorized(header: str | None, token: str | None) -> bool:
    """True when no token is required, or `header` is `Bearer <token>` (constant-time compare)."""
    if token is None:
        return True
    if header is None:
        return False
    scheme, _, given = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8"), token.encode("utf-8"))


class _EncryptedKeyError(Exception):
    """OpenSSL asked for a key password: the key is encrypted (never prompt on a terminal)."""


def _no_password() -> NoReturn:
    raise _EncryptedKeyError

