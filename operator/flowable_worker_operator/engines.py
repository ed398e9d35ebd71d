"""From a pool's `spec.engine` and its Secrets to the connection settings the backlog probe uses.

Credentials and CA certificates live in Secrets (never inline in the pool), so resolving an engine
is I/O: this module reads the Secrets through anything with the synchronous Kubernetes client's
`read_namespaced_secret` (the shell calls it through `asyncio.to_thread`). The operator passes its
`secret_cache.SecretCache`, so a tick reads a Secret from memory unless it is due again (found: 30 s
after it was read; missing: after a back-off of 5 s up to 30 s; at once when the pool's spec
changes): `secret_cache` says why not every tick, and why not a watch. The result is a hashable
`Engine`: pools that point at the same engine with the same credentials get equal values and
therefore share probe requests.

A CA certificate is written once to a file named by its content hash, because the HTTP client
takes a CA *path*; equal certificates share a file, a rotated one gets a new file. A client
certificate for mutual TLS (`engine.tls.clientCertSecretRef`) is written the same way, certificate
and key in one file readable by this process alone (0600 in a 0700 directory), and loaded once
here so that a Secret holding something unusable is a clear error on the pool, naming the Secret
and its keys, never the key's content.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from flowable_worker import ClientSettings
from flowable_worker.client.tls import load_client_certificate
from flowable_worker_operator.spec import ClientCertSecretRef, EngineSpec

__all__ = ["Engine", "EngineConfigError", "resolve_engine"]

_CA_DIR = Path(tempfile.gettempdir()) / "flowable-worker-operator-ca"
_CLIENT_CERT_DIR = Path(tempfile.gettempdir()) / "flowable-worker-operator-client-certs"


@dataclass(frozen=True)
class Engine:
    """One Flowable engine as the operator reaches it; equal engines share connections and answers.

    Hashable on purpose: it is the sharing key, so two pools whose engine, credentials and API
    paths are equal share requests, and pools with different credentials never see each other's
    answers (they might not be allowed to).
    """

    client: ClientSettings
    process_api_path: str = "/process-api"
    cmmn_api_path: str = "/cmmn-api"


class EngineConfigError(ValueError):
    """A Secret the engine needs is missing or unusable; the message says which and why."""


def resolve_engine(secrets: Any, namespace: str, engine: EngineSpec) -> Engine:
    """The probe's connection settings for `engine`, with credentials read from its Secrets.

    `secrets` answers `read_namespaced_secret(name, namespace)` as `CoreV1Api` does (the
    operator's `SecretCache`, or the API itself); a 404 or 403 is an `EngineConfigError` naming
    the Secret."""
    auth: dict[str, str] = {}
    if engine.auth_secret_ref is not None:
        auth = _credentials(_secret(secrets, namespace, engine.auth_secret_ref.name))
    ca_bundle: str | None = None
    tls = engine.tls
    if tls.ca_secret_ref is not None:
        data = _secret(secrets, namespace, tls.ca_secret_ref.name)
        pem = data.get(tls.ca_secret_ref.key)
        if not pem:
            raise EngineConfigError(
                f"Secret {tls.ca_secret_ref.name} has no key {tls.ca_secret_ref.key!r} "
                "(engine.tls.caSecretRef)"
            )
        ca_bundle = str(_ca_file(pem))
    client_cert: str | None = None
    if tls.client_cert_secret_ref is not None:
        client_cert = str(_client_cert_file(secrets, namespace, tls.client_cert_secret_ref))
    try:
        client = ClientSettings(
            base_url=engine.url,
            external_job_api_path=engine.external_job_api_path,
            ca_bundle=ca_bundle,
            verify_tls=not tls.insecure_skip_verify,
            client_cert=client_cert,
            timeout_seconds=engine.timeout_seconds,
            # The probe asks often; one failed GET is retried by the client before it counts.
            read_retries=1,
            **auth,
        )
    except ValidationError as exc:
        # Field names and messages only: pydantic's own text quotes the input, which may be a
        # credential read from the Secret, and this message is published in the pool's status.
        fields = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'settings'}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        )
        raise EngineConfigError(f"engine settings are unusable: {fields}") from None
    return Engine(
        client=client,
        process_api_path=engine.process_api_path,
        cmmn_api_path=engine.cmmn_api_path,
    )


def _secret(secrets: Any, namespace: str, name: str) -> dict[str, str]:
    """A Secret's data, decoded; a missing Secret is a configuration problem, not a crash."""
    from kubernetes.client.exceptions import ApiException

    try:
        secret = secrets.read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            raise EngineConfigError(f"Secret {namespace}/{name} not found") from None
        if exc.status == 403:
            raise EngineConfigError(
                f"not allowed to read Secret {namespace}/{name} (check the operator's RBAC)"
            ) from None
        raise
    decoded: dict[str, str] = {}
    for key, value in (secret.data or {}).items():
        try:
            decoded[key] = base64.b64decode(value).decode("utf-8").strip()
        except (binascii.Error, UnicodeDecodeError):
            raise EngineConfigError(f"Secret {namespace}/{name} key {key!r} is not text") from None
    return decoded


def _credentials(data: dict[str, str]) -> dict[str, str]:
    """username+password (Basic) or token (Bearer), as the worker reads them too."""
    if data.get("token"):
        return {"token": data["token"]}
    if data.get("username") and data.get("password"):
        return {"username": data["username"], "password": data["password"]}
    raise EngineConfigError(
        "engine.authSecretRef: the Secret needs keys username and password, or token"
    )


def _ca_file(pem: str) -> Path:
    digest = hashlib.sha256(pem.encode()).hexdigest()[:16]
    path = _CA_DIR / f"{digest}.crt"
    if not path.exists():
        _CA_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_text(pem)
        partial.replace(path)
    return path


def _client_cert_file(secrets: Any, namespace: str, ref: ClientCertSecretRef) -> Path:
    """The Secret's certificate and key in one private PEM file, checked to load as a pair.

    Checked before the file gets its final name, so a file found under that name has loaded
    once: later ticks with the same Secret only read the Secret and hash it.
    """
    data = _secret(secrets, namespace, ref.name)
    where = f"Secret {ref.name} (engine.tls.clientCertSecretRef)"
    pieces = [ref.cert_key] if ref.key_key == ref.cert_key else [ref.cert_key, ref.key_key]
    for key in pieces:
        if not data.get(key):
            raise EngineConfigError(f"{where} has no key {key!r}")
    pem = "\n".join(data[key] for key in pieces) + "\n"
    digest = hashlib.sha256(pem.encode()).hexdigest()[:16]
    path = _CLIENT_CERT_DIR / f"{digest}.pem"
    if path.exists():
        return path
    _CLIENT_CERT_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    _CLIENT_CERT_DIR.chmod(0o700)  # made earlier with a looser mode: tighten, never trust
    partial = path.with_suffix(f".{os.getpid()}.partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(pem)
    try:
        load_client_certificate(ssl.create_default_context(), str(partial), None)
    except ValueError as error:
        partial.unlink(missing_ok=True)
        # Its message names the temporary file; the pool's reader needs the Secret's keys.
        problem = _load_problem(str(error))
        keys = f"keys {ref.cert_key!r} and {ref.key_key!r}"
        raise EngineConfigError(f"{where}, {keys}: {problem}") from None
    partial.replace(path)
    return path


def _load_problem(message: str) -> str:
    """Fixed words for why a certificate and key did not load: never a path, never content."""
    if "does not belong" in message:
        return "the private key does not belong to the certificate"
    if "encrypted" in message:
        return "the private key is encrypted"
    return "they do not hold a PEM certificate and its private key"
