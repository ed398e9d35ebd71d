"""The TLS side of reaching Flowable: whom we trust, and which certificate we show (mutual TLS).

One function builds the `ssl.SSLContext` for both transports (httpx's own and the worker's lean
one), so a client certificate works the same whichever carries the requests; httpx 0.28 takes the
client certificate inside the context (its `cert=` argument is deprecated).

`load_client_certificate` turns every way a certificate/key pair can be unusable into one
`ValueError` line naming the file: a missing or unreadable file, a file that is not PEM, a key that
does not belong to the certificate, or an encrypted key. An encrypted key is refused rather than
asked for: without a password callback OpenSSL would prompt on the terminal, which in a pod means
hanging forever at start. Nothing here ever prints a key's content.
"""

from __future__ import annotations

import ssl
from typing import NoReturn

__all__ = ["check_readable", "load_client_certificate", "ssl_context"]


def ssl_context(
    *,
    verify: bool,
    ca_bundle: str | None = None,
    client_cert: str | None = None,
    client_key: str | None = None,
) -> ssl.SSLContext:
    """A client context: verification off, a private CA, or the system's; plus our certificate."""
    if verify:
        context = ssl.create_default_context(cafile=ca_bundle)
    else:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if client_cert is not None:
        load_client_certificate(context, client_cert, client_key)
    return context


def load_client_certificate(context: ssl.SSLContext, cert: str, key: str | None) -> None:
    """Load `cert` (and `key`; None: the key is in the certificate's file) into `context`.

    Raises ValueError with one line naming the file at fault.
    """
    for path, what in ((cert, "client certificate"), (key, "client key")):
        if path is not None:
            check_readable(path, what)
    try:
        context.load_cert_chain(cert, key, password=_no_password)
    except _EncryptedKeyError:
        raise ValueError(
            f"client key {key or cert!r} is encrypted; give an unencrypted PEM key "
            "(a Secret already protects it)"
        ) from None
    except ssl.SSLError as error:
        if error.reason == "KEY_VALUES_MISMATCH":
            raise ValueError(
                f"client key {key or cert!r} does not belong to client certificate {cert!r}"
            ) from None
        if key is None:
            raise ValueError(
                f"cannot load client certificate {cert!r}: it needs a PEM certificate and, "
                "without a separate key file, the PEM private key in the same file"
            ) from None
        raise ValueError(
            f"cannot load client certificate {cert!r} with key {key!r}: both must be PEM "
            f"(a certificate, then its private key) ({error.reason or error})"
        ) from None


class _EncryptedKeyError(Exception):
    """OpenSSL asked for a key password: the key is encrypted."""


def _no_password() -> NoReturn:
    raise _EncryptedKeyError


def check_readable(path: str, what: str) -> None:
    """ValueError naming `path` when it can't be opened (a missing Secret key, a bad mount)."""
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ValueError(f"cannot read {what} {path!r}: {reason}") from None
