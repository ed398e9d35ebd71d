"""From a pool's `spec.engine` and its Secrets to the connection settings the backlog probe uses.

Credentials and CA certificates live in Secrets (never inline in the pool), so resolving an engine
is I/O: this module reads the Secrets with the synchronous Kubernetes client (the shell calls it
through `asyncio.to_thread`). The result is a hashable `backlog.Engine`: pools that point at the
same engine with the same credentials get equal values and therefore share probe requests.

A CA certificate is written once to a file named by its content hash, because the HTTP client
takes a CA *path*; equal certificates share a file, a rotated one gets a new file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import tempfile
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from flowable_worker import ClientSettings
from flowable_worker_operator.backlog import Engine
from flowable_worker_operator.spec import EngineSpec

__all__ = ["EngineConfigError", "resolve_engine"]

_CA_DIR = Path(tempfile.gettempdir()) / "flowable-worker-operator-ca"


class EngineConfigError(ValueError):
    """A Secret the engine needs is missing or unusable; the message says which and why."""


def resolve_engine(core_api: Any, namespace: str, engine: EngineSpec) -> Engine:
    """The probe's connection settings for `engine`, with credentials read from its Secrets."""
    auth: dict[str, str] = {}
    if engine.auth_secret_ref is not None:
        auth = _credentials(_secret(core_api, namespace, engine.auth_secret_ref.name))
    ca_bundle: str | None = None
    tls = engine.tls
    if tls.ca_secret_ref is not None:
        data = _secret(core_api, namespace, tls.ca_secret_ref.name)
        pem = data.get(tls.ca_secret_ref.key)
        if not pem:
            raise EngineConfigError(
                f"Secret {tls.ca_secret_ref.name} has no key {tls.ca_secret_ref.key!r} "
                "(engine.tls.caSecretRef)"
            )
        ca_bundle = str(_ca_file(pem))
    try:
        client = ClientSettings(
            base_url=engine.url,
            external_job_api_path=engine.external_job_api_path,
            ca_bundle=ca_bundle,
            verify_tls=not tls.insecure_skip_verify,
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


def _secret(core_api: Any, namespace: str, name: str) -> dict[str, str]:
    """A Secret's data, decoded; a missing Secret is a configuration problem, not a crash."""
    from kubernetes.client.exceptions import ApiException

    try:
        secret = core_api.read_namespaced_secret(name, namespace)
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
