"""`engine.tls.clientCertSecretRef`: the operator's own probes show the pool's client certificate.

The Secret's certificate and key end up in one private file (0600 in a 0700 directory) named by
their content, so equal Secrets share a file and an equal `Engine` (one probe connection), and a
rotated Secret gets a new one. An unusable Secret is an `EngineConfigError` naming the Secret and
its keys, never the key's content. Then real TLS on loopback: the emulator requires a client
certificate; the operator's client (through the same bounded transport the prober uses) counts
jobs with the resolved engine, and without it gets a transport error, not a raw `ssl.SSLError`.
"""

from __future__ import annotations

import base64
import re
import ssl
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import trustme

from flowable_worker import FlowableClient, FlowableTransportError
from flowable_worker_operator import engines
from flowable_worker_operator.engines import EngineConfigError, resolve_engine
from flowable_worker_operator.responses import bounded_transport
from flowable_worker_operator.spec import EngineSpec
from tests.support.emulator import FlowableEmulator


class Secrets:
    """A CoreV1Api stand-in serving Secrets from a dict of name -> {key: text}."""

    def __init__(self, secrets: Mapping[str, Mapping[str, str]]) -> None:
        self._secrets = secrets

    def read_namespaced_secret(self, name: str, namespace: str) -> Any:
        data = {k: base64.b64encode(v.encode()).decode() for k, v in self._secrets[name].items()}
        return SimpleNamespace(data=data)


@pytest.fixture(autouse=True)
def private_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "client-certs"
    monkeypatch.setattr(engines, "_CLIENT_CERT_DIR", directory)
    monkeypatch.setattr(engines, "_CA_DIR", tmp_path / "ca")
    return directory


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def _tls_secret(ca: trustme.CA, name: str = "operator.flowable.test") -> dict[str, str]:
    issued = ca.issue_cert(name)
    return {
        "tls.crt": issued.cert_chain_pems[0].bytes().decode(),
        "tls.key": issued.private_key_pem.bytes().decode(),
        "ca.crt": ca.cert_pem.bytes().decode(),
    }


def _spec(url: str = "https://flowable:8443", **ref: str) -> EngineSpec:
    return EngineSpec.model_validate(
        {
            "url": url,
            "tls": {
                "caSecretRef": {"name": "mtls"},
                "clientCertSecretRef": {"name": "mtls", **ref},
            },
        }
    )


def test_the_client_certificate_is_written_privately_and_loads(
    ca: trustme.CA, private_dir: Path
) -> None:
    secret = _tls_secret(ca)
    engine = resolve_engine(Secrets({"mtls": secret}), "billing", _spec())

    path = Path(engine.client.client_cert or "")
    assert path.parent == private_dir
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(private_dir.stat().st_mode) == 0o700
    assert engine.client.client_key is None  # certificate and key share the file
    assert secret["tls.key"].strip() in path.read_text()
    engine.client.ssl_context()  # loads as a pair
    assert secret["tls.key"] not in repr(engine)


def test_a_looser_directory_left_from_before_is_tightened(
    ca: trustme.CA, private_dir: Path
) -> None:
    private_dir.mkdir(mode=0o755)
    private_dir.chmod(0o755)
    resolve_engine(Secrets({"mtls": _tls_secret(ca)}), "billing", _spec())
    assert stat.S_IMODE(private_dir.stat().st_mode) == 0o700


def test_equal_secrets_give_equal_engines_and_a_rotated_one_a_new_file(ca: trustme.CA) -> None:
    first = resolve_engine(Secrets({"mtls": _tls_secret(ca)}), "billing", _spec())
    again = resolve_engine(Secrets({"mtls": _tls_secret(ca)}), "billing", _spec())
    rotated_secret = _tls_secret(ca, "rotated.flowable.test")
    rotated = resolve_engine(Secrets({"mtls": rotated_secret}), "billing", _spec())

    assert first.client.client_cert != again.client.client_cert  # a new certificate each call
    same = resolve_engine(Secrets({"mtls": dict(rotated_secret)}), "billing", _spec())
    assert same == rotated
    assert hash(same) == hash(rotated)
    assert rotated.client.client_cert != first.client.client_cert


def test_custom_keys_and_one_entry_holding_both(ca: trustme.CA) -> None:
    secret = _tls_secret(ca)
    both = secret["tls.crt"] + "\n" + secret["tls.key"]
    combined = {"both.pem": both, "ca.crt": secret["ca.crt"]}
    engine = resolve_engine(
        Secrets({"mtls": combined}), "billing", _spec(certKey="both.pem", keyKey="both.pem")
    )
    engine.client.ssl_context()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"tls.key": None}, "Secret mtls (engine.tls.clientCertSecretRef) has no key 'tls.key'"),
        ({"tls.crt": None}, "has no key 'tls.crt'"),
        ({"tls.key": "other"}, "the private key does not belong to the certificate"),
        ({"tls.crt": "not a certificate"}, "do not hold a PEM certificate and its private key"),
    ],
)
def test_an_unusable_secret_names_secret_and_keys_never_the_key(
    ca: trustme.CA, change: dict[str, str | None], expected: str
) -> None:
    secret: dict[str, str] = _tls_secret(ca)
    for key, value in change.items():
        if value is None:
            del secret[key]
        elif value == "other":
            secret[key] = ca.issue_cert("someone-else.test").private_key_pem.bytes().decode()
        else:
            secret[key] = value
    with pytest.raises(EngineConfigError, match=re.escape(expected)) as caught:
        resolve_engine(Secrets({"mtls": secret}), "billing", _spec())
    assert "PRIVATE KEY" not in str(caught.value)
    assert "/" not in str(caught.value).split(":", 1)[-1]  # no temporary path either


@pytest.fixture
def mtls_emulator(ca: trustme.CA) -> Iterator[FlowableEmulator]:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    ca.configure_trust(server)
    server.verify_mode = ssl.CERT_REQUIRED
    with FlowableEmulator(reset_interval_seconds=None, tls=server) as emulated:
        emulated.create_job("probe")
        yield emulated


async def test_the_operators_probe_shows_the_certificate(
    ca: trustme.CA, mtls_emulator: FlowableEmulator
) -> None:
    engine = resolve_engine(
        Secrets({"mtls": _tls_secret(ca)}), "billing", _spec(url=mtls_emulator.base_url)
    )
    settings = engine.client
    async with FlowableClient(settings, transport=bounded_transport(settings)) as client:
        assert await client.count_jobs() == 1


async def test_without_the_certificate_the_probe_fails_as_a_transport_error(
    ca: trustme.CA, mtls_emulator: FlowableEmulator
) -> None:
    spec = EngineSpec.model_validate(
        {"url": mtls_emulator.base_url, "tls": {"caSecretRef": {"name": "mtls"}}}
    )
    engine = resolve_engine(Secrets({"mtls": _tls_secret(ca)}), "billing", spec)
    settings = engine.client.model_copy(update={"read_retries": 0})
    async with FlowableClient(settings, transport=bounded_transport(settings)) as client:
        with pytest.raises(FlowableTransportError):
            await client.count_jobs()


async def test_a_refused_certificate_reaches_discovery_as_an_httpx_error(
    ca: trustme.CA, mtls_emulator: FlowableEmulator
) -> None:
    """Discovery reads through a plain httpx client and catches `httpx.HTTPError` only: the TLS
    alert must arrive as one (httpx itself lets the raw `ssl.SSLError` escape)."""
    spec = EngineSpec.model_validate(
        {"url": mtls_emulator.base_url, "tls": {"caSecretRef": {"name": "mtls"}}}
    )
    settings = resolve_engine(Secrets({"mtls": _tls_secret(ca)}), "billing", spec).client
    async with httpx.AsyncClient(transport=bounded_transport(settings)) as http:
        # The alert (mapped to ConnectError) or, when the server has already closed, a ReadError.
        with pytest.raises(httpx.TransportError):
            await http.get(mtls_emulator.base_url + "/process-api/repository/process-definitions")
