"""The operator's metrics port behind TLS and a bearer token, as a ServiceMonitor scrapes it.

The flags load their files when parsed (exit 2 with one line naming a bad file, before kopf
starts); the aiohttp server then speaks HTTPS and asks for the token on `/metrics` only, leaving
`/healthz` open for the kubelet. Real sockets on loopback, a throwaway CA from trustme.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import httpx
import pytest
import trustme

from flowable_worker_operator import main as cli
from flowable_worker_operator.serve import _start_http

TOKEN = "operator-scrape-token"


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def files(ca: trustme.CA, tmp_path: Path) -> dict[str, Path]:
    issued = ca.issue_cert("127.0.0.1")
    paths = {"cert": tmp_path / "tls.crt", "key": tmp_path / "tls.key", "token": tmp_path / "t"}
    issued.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    issued.private_key_pem.write_to_path(str(paths["key"]))
    paths["token"].write_text(TOKEN + "\n")
    return paths


@pytest.fixture(autouse=True)
def _no_operator_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "FLOWABLE_OPERATOR_METRICS_TLS_CERT",
        "FLOWABLE_OPERATOR_METRICS_TLS_KEY",
        "FLOWABLE_OPERATOR_METRICS_AUTH_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_flags_and_environment_name_the_files(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = cli.parse_args([
        "--metrics-tls-cert", str(files["cert"]), "--metrics-tls-key", str(files["key"]),
        "--metrics-auth-token-file", str(files["token"]),
    ])
    assert (config.metrics_tls_cert, config.metrics_tls_key, config.metrics_auth_token_file) == (
        str(files["cert"]), str(files["key"]), str(files["token"])
    )
    monkeypatch.setenv("FLOWABLE_OPERATOR_METRICS_AUTH_TOKEN_FILE", str(files["token"]))
    assert cli.parse_args([]).metrics_auth_token_file == str(files["token"])
    assert cli.parse_args([]).metrics_tls_cert is None


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--metrics-tls-key", "{key}"], "--metrics-tls-key needs --metrics-tls-cert"),
        (["--metrics-tls-cert", "{missing}"], "cannot read metrics TLS certificate '{missing}'"),
        (["--metrics-tls-cert", "{cert}"], "needs a PEM certificate and its PEM private key"),
        (["--metrics-auth-token-file", "{missing}"],
         "cannot read metrics auth token file '{missing}'"),
    ],
)
def test_a_bad_file_exits_2_with_one_line_naming_it(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    flags: list[str], expected: str,
) -> None:
    names = {"key": files["key"], "cert": files["cert"], "missing": tmp_path / "absent"}
    with pytest.raises(SystemExit) as exited:
        cli.parse_args([flag.format(**names) for flag in flags])
    assert exited.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("flowable-worker-operator: error: ")
    assert expected.format(**names) in lines[0]


async def test_metrics_need_the_token_over_tls_and_healthz_stays_open(
    files: dict[str, Path], ca: trustme.CA
) -> None:
    port = _free_port()
    config = cli.parse_args([
        "--metrics-host", "127.0.0.1", "--metrics-port", str(port),
        "--metrics-tls-cert", str(files["cert"]), "--metrics-tls-key", str(files["key"]),
        "--metrics-auth-token-file", str(files["token"]),
    ])
    site = await _start_http(config, healthy=lambda: True)
    trust = ssl.create_default_context()
    ca.configure_trust(trust)
    base = f"https://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(verify=trust) as http:
            refused = await http.get(base + "/metrics")
            wrong = await http.get(base + "/metrics", headers={"Authorization": "Bearer nope"})
            scraped = await http.get(
                base + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
            )
            health = await http.get(base + "/healthz")
        async with httpx.AsyncClient() as plain:
            with pytest.raises(httpx.TransportError):
                await plain.get(f"http://127.0.0.1:{port}/metrics")
    finally:
        await site.stop()
    assert (refused.status_code, wrong.status_code) == (401, 401)
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert scraped.status_code == 200
    assert "flowable_pool_" in scraped.text
    assert (health.status_code, health.text) == (200, "ok\n")
