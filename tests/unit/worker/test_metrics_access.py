"""The worker's metrics port behind TLS and a bearer token, as a ServiceMonitor scrapes it.

Real sockets on loopback: the probe server speaks HTTPS with a throwaway CA's certificate, and
`/metrics` needs `Authorization: Bearer <token from the file>`, while `/healthz` and `/readyz`
answer anyone (the kubelet sends no credentials). A plain-HTTP or stalled client on the TLS port
does not take the server down for the next one.
"""

from __future__ import annotations

import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from prometheus_client import CollectorRegistry, Counter

from flowable_worker.config import ConfigError, load_settings
from flowable_worker.health import HealthState, ProbeServer
from flowable_worker.metrics_access import authorized, read_token, server_tls_context

TOKEN = "scrape-me-0123456789"


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def cert_files(ca: trustme.CA, tmp_path: Path) -> tuple[Path, Path]:
    issued = ca.issue_cert("127.0.0.1")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    return cert, key


@pytest.fixture
def server(cert_files: tuple[Path, Path]) -> Iterator[ProbeServer]:
    registry = CollectorRegistry()
    Counter("scraped_example", "a metric to find", registry=registry).inc()
    state = HealthState(alive_within=10, ready_within=10)
    probes = ProbeServer(
        host="127.0.0.1", port=0, registry=registry, state=state,
        tls=server_tls_context(str(cert_files[0]), str(cert_files[1])), token=TOKEN,
    )
    probes.start()
    try:
        yield probes
    finally:
        probes.stop()


def _get(
    url: str, ca: trustme.CA, token: str | None = None
) -> tuple[int, str]:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_metrics_need_the_token_over_tls(server: ProbeServer, ca: trustme.CA) -> None:
    base = f"https://127.0.0.1:{server.port}"

    assert _get(base + "/metrics", ca)[0] == 401
    assert _get(base + "/metrics", ca, token="wrong")[0] == 401
    status, text = _get(base + "/metrics", ca, token=TOKEN)
    assert status == 200
    assert "scraped_example_total 1.0" in text


def test_probes_stay_open_for_the_kubelet(server: ProbeServer, ca: trustme.CA) -> None:
    base = f"https://127.0.0.1:{server.port}"

    assert _get(base + "/healthz", ca) == (200, "starting\n")
    assert _get(base + "/readyz", ca)[0] == 503  # Flowable has not answered: not ready, but open


def test_a_plain_http_client_is_dropped_and_the_server_serves_on(
    server: ProbeServer, ca: trustme.CA
) -> None:
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5)
    stalled = socket.create_connection(("127.0.0.1", server.port))  # never says hello
    try:
        assert _get(f"https://127.0.0.1:{server.port}/metrics", ca, token=TOKEN)[0] == 200
    finally:
        stalled.close()


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (None, False),
        ("", False),
        (f"Bearer {TOKEN}", True),
        (f"bearer {TOKEN}", True),
        (f"Basic {TOKEN}", False),
        (f"Bearer {TOKEN}x", False),
        ("Bearer ünïcode", False),
    ],
)
def test_only_the_bearer_token_is_authorized(header: str | None, ok: bool) -> None:
    assert authorized(header, TOKEN) is ok
    assert authorized(header, None) is True  # no token configured: open


def test_the_token_file_is_read_like_a_secret(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")  # kubectl create secret --from-file keeps the newline
    assert read_token(str(path)) == TOKEN


@pytest.mark.parametrize(
    ("content", "expected"),
    [(None, "cannot read metrics auth token file"), ("\n", "is empty"),
     ("two words", "whitespace or a control character")],
)
def test_an_unusable_token_file_is_a_configuration_error_naming_it(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=expected) as caught:
        load_settings(
            ["--flowable-url", "http://127.0.0.1:9", "--metrics-auth-token-file", str(path)],
            environ={}, require_handler=False, require_topics=False,
        )
    assert str(caught.value).startswith("--metrics-auth-token-file: ")
    assert str(path) in str(caught.value)
    assert "two words" not in str(caught.value)


def test_unusable_metrics_tls_files_are_configuration_errors(
    cert_files: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, key = cert_files
    base = ["--flowable-url", "http://127.0.0.1:9"]

    def load(*flags: str) -> None:
        load_settings([*base, *flags], environ={}, require_handler=False, require_topics=False)

    with pytest.raises(ConfigError, match="--metrics-tls-key needs --metrics-tls-cert"):
        load("--metrics-tls-key", str(key))
    with pytest.raises(ConfigError, match=f"cannot read metrics TLS certificate '{tmp_path}/no"):
        load("--metrics-tls-cert", str(tmp_path / "no.crt"))
    with pytest.raises(ConfigError, match="needs a PEM certificate and its PEM private key"):
        load("--metrics-tls-cert", str(cert))  # no key in the file, none given
    settings = load_settings(
        [*base, "--metrics-tls-cert", str(cert), "--metrics-tls-key", str(key)],
        environ={}, require_handler=False, require_topics=False,
    )
    assert settings.metrics_tls_cert == str(cert)
