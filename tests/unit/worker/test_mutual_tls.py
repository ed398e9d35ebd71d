"""Mutual TLS to Flowable: the worker shows a client certificate, with either transport.

Real TLS on loopback: the emulator serves HTTPS with a server context that *requires* a client
certificate signed by a throwaway CA (trustme), as a Flowable behind an mTLS ingress would. A
worker without the certificate is refused at the handshake and acquires nothing; with it, both the
lean transport and httpx's complete the job. Unusable certificate files are configuration errors:
exit 2 with one line naming the file, checked through the real CLI.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from flowable_worker import Job
from flowable_worker.config import ConfigError, load_settings
from flowable_worker.runtime import Worker
from tests.support.emulator import FlowableEmulator
from tests.unit.worker.conftest import eventually, serving, settings_for

REPO_ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Pki:
    """Files of one throwaway PKI: the CA bundle, a client certificate and its key."""

    ca_bundle: Path
    client_cert: Path
    client_key: Path
    combined: Path  # certificate and key in one file
    other_key: Path  # a key that belongs to some other certificate


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy in the environment would switch `lean` to httpx's transport: test each for real."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def pki(tmp_path: Path) -> tuple[trustme.CA, Pki]:
    ca = trustme.CA()
    client = ca.issue_cert("worker.flowable.test")
    other = ca.issue_cert("someone-else.test")
    files = Pki(
        ca_bundle=tmp_path / "ca.pem",
        client_cert=tmp_path / "client.crt",
        client_key=tmp_path / "client.key",
        combined=tmp_path / "client.pem",
        other_key=tmp_path / "other.key",
    )
    ca.cert_pem.write_to_path(str(files.ca_bundle))
    client.cert_chain_pems[0].write_to_path(str(files.client_cert))
    client.private_key_pem.write_to_path(str(files.client_key))
    client.private_key_and_cert_chain_pem.write_to_path(str(files.combined))
    other.private_key_pem.write_to_path(str(files.other_key))
    return ca, files


@pytest.fixture
def mtls_emulator(pki: tuple[trustme.CA, Pki]) -> Iterator[FlowableEmulator]:
    ca, _ = pki
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    ca.configure_trust(server)
    server.verify_mode = ssl.CERT_REQUIRED
    with FlowableEmulator(reset_interval_seconds=None, tls=server) as emulated:
        yield emulated


@pytest.mark.parametrize("http_client", ["lean", "httpx"])
async def test_with_the_client_certificate_the_worker_acquires_and_completes(
    mtls_emulator: FlowableEmulator, pki: tuple[trustme.CA, Pki], http_client: str
) -> None:
    _, files = pki
    mtls_emulator.create_job("signed")
    settings = settings_for(
        mtls_emulator, topics=("signed",), http_client=http_client,
        ca_bundle=str(files.ca_bundle), client_cert=str(files.client_cert),
        client_key=str(files.client_key),
    )
    worker = Worker(settings)
    worker.add_handler("signed", lambda job: {"ok": True})

    async with serving(worker):
        async def done() -> bool:
            return any(i.finished for i in mtls_emulator.instances())

        await eventually(done, within=10)

    assert [c.job_id for c in mtls_emulator.completions()]


@pytest.mark.parametrize("http_client", ["lean", "httpx"])
async def test_without_the_client_certificate_the_worker_is_refused(
    mtls_emulator: FlowableEmulator, pki: tuple[trustme.CA, Pki], http_client: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, files = pki
    mtls_emulator.create_job("signed")
    worker = Worker(settings_for(
        mtls_emulator, topics=("signed",), http_client=http_client,
        ca_bundle=str(files.ca_bundle),
    ))
    ran: list[Job] = []
    worker.add_handler("signed", ran.append)

    async with serving(worker):
        async def refused_twice() -> bool:
            return sum(_acquire_errors(worker).values()) >= 2

        await eventually(refused_twice, within=10)

    assert set(_acquire_errors(worker)) == {"transport"}  # the handshake, not an HTTP answer
    assert ran == []
    assert mtls_emulator.requests(endpoint="acquire") == []
    assert not any(i.finished for i in mtls_emulator.instances())


def _acquire_errors(worker: Worker) -> dict[str, float]:
    """Failed acquires of the worker so far, by reason."""
    return {
        sample.labels["reason"]: sample.value
        for family in worker.metrics.registry.collect()
        if family.name == "flowable_worker_acquire_errors"
        for sample in family.samples
        if sample.name.endswith("_total")
    }


def test_a_combined_pem_needs_no_separate_key(pki: tuple[trustme.CA, Pki]) -> None:
    _, files = pki
    settings = load_settings(
        ["--flowable-url", "https://127.0.0.1:9", "--client-cert", str(files.combined)],
        environ={}, require_handler=False, require_topics=False,
    )
    assert settings.client_settings().client_cert == str(files.combined)
    assert settings.client_settings().client_key is None


def test_the_environment_sets_the_client_certificate(pki: tuple[trustme.CA, Pki]) -> None:
    _, files = pki
    settings = load_settings(
        [], environ={
            "FLOWABLE_URL": "https://127.0.0.1:9",
            "FLOWABLE_CLIENT_CERT": str(files.client_cert),
            "FLOWABLE_CLIENT_KEY": str(files.client_key),
        },
        require_handler=False, require_topics=False,
    )
    assert (settings.client_cert, settings.client_key) == (
        str(files.client_cert), str(files.client_key)
    )


def test_a_key_without_a_certificate_is_refused(pki: tuple[trustme.CA, Pki]) -> None:
    _, files = pki
    with pytest.raises(ConfigError, match="--client-key needs --client-cert"):
        load_settings(
            ["--flowable-url", "https://127.0.0.1:9", "--client-key", str(files.client_key)],
            environ={}, require_handler=False, require_topics=False,
        )


def _run_cli(args: list[str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLOWABLE_")}
    env = {
        **clean,
        "PYTHONPATH": str(REPO_ROOT),
        "FLOWABLE_TOPIC": "t",
        "FLOWABLE_WORKER_HANDLER_URL": "http://127.0.0.1:9/h",
        "FLOWABLE_WORKER_METRICS_PORT": "0",
    }
    return subprocess.run(
        [sys.executable, "-m", "flowable_worker", "--flowable-url", "https://127.0.0.1:9",
         *args],
        env=env, capture_output=True, text=True, timeout=20, cwd=REPO_ROOT,
    )


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing-cert", "--client-cert: cannot read client certificate '{missing}'"),
        ("missing-key", "--client-key: cannot read client key '{missing}'"),
        ("mismatched", "client key '{other_key}' does not belong to client certificate"),
        ("not-pem", "cannot load client certificate '{ca_bundle}'"),
        ("encrypted", "client key '{encrypted}' is encrypted"),
    ],
)
def test_an_unusable_client_certificate_exits_2_naming_the_file(
    pki: tuple[trustme.CA, Pki], tmp_path: Path, case: str, expected: str
) -> None:
    _, files = pki
    missing = tmp_path / "absent.pem"
    encrypted = tmp_path / "encrypted.key"
    key = serialization.load_pem_private_key(files.client_key.read_bytes(), password=None)
    encrypted.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"not-given"),
    ))
    args = {
        "missing-cert": ["--client-cert", str(missing), "--client-key", str(files.client_key)],
        "missing-key": ["--client-cert", str(files.client_cert), "--client-key", str(missing)],
        "mismatched": ["--client-cert", str(files.client_cert), "--client-key",
                       str(files.other_key)],
        "not-pem": ["--client-cert", str(files.ca_bundle)],
        "encrypted": ["--client-cert", str(files.client_cert), "--client-key", str(encrypted)],
    }[case]
    result = _run_cli(args)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    shown = expected.format(
        missing=missing, other_key=files.other_key, ca_bundle=files.ca_bundle,
        encrypted=encrypted,
    )
    assert shown in lines[0]
    assert "PRIVATE KEY" not in result.stderr
