"""Resolving a pool's engine: a settings error names the fields, never the values from Secrets."""

from __future__ import annotations

import base64
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from flowable_worker import ClientSettings
from flowable_worker_operator import engines
from flowable_worker_operator.engines import EngineConfigError, resolve_engine
from flowable_worker_operator.spec import EngineSpec

TOKEN = "s3cr3t-t0ken-value"


class Secrets:
    """A CoreV1Api stand-in that holds one Secret with a token."""

    def read_namespaced_secret(self, name: str, namespace: str) -> Any:
        return SimpleNamespace(data={"token": base64.b64encode(TOKEN.encode()).decode()})


def test_a_settings_error_does_not_quote_the_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    # Make the settings refuse what the Secret gave (as a stricter ClientSettings might): pydantic's
    # own message would quote the input, token included, into the pool's status.
    def strict(**fields: Any) -> ClientSettings:
        # A field-level refusal of the token: pydantic's text shows `input_value=[...token...]`.
        return ClientSettings(**{**fields, "token": [fields["token"]]})

    monkeypatch.setattr(engines, "ClientSettings", strict)
    spec = EngineSpec.model_validate(
        {"url": "http://flowable:8080", "authSecretRef": {"name": "a"}}
    )

    with pytest.raises(EngineConfigError, match="engine settings are unusable") as caught:
        resolve_engine(Secrets(), "billing", spec)
    assert TOKEN not in str(caught.value)
    assert "token: Input should be a valid string" in str(caught.value)  # the rule is said


def test_a_token_secret_resolves() -> None:
    spec = EngineSpec.model_validate(
        {"url": "http://flowable:8080", "authSecretRef": {"name": "a"}}
    )
    engine = resolve_engine(Secrets(), "billing", spec)
    assert engine.client.token == TOKEN


# --- the Secrets seam: a CoreV1Api stand-in holding any Secrets, or refusing -----------------


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class Cluster:
    """`read_namespaced_secret` over a dict of Secrets; `status` makes every read fail so."""

    def __init__(self, secrets: dict[str, dict[str, str]], status: int | None = None) -> None:
        self.secrets = secrets
        self.status = status
        self.reads: list[tuple[str, str]] = []

    def read_namespaced_secret(self, name: str, namespace: str) -> Any:
        from kubernetes.client.exceptions import ApiException

        self.reads.append((namespace, name))
        if self.status is not None:
            raise ApiException(status=self.status, reason="refused")
        if name not in self.secrets:
            raise ApiException(status=404, reason="Not Found")
        return SimpleNamespace(data={k: _b64(v) for k, v in self.secrets[name].items()})


def _spec(**fields: Any) -> EngineSpec:
    return EngineSpec.model_validate({"url": "https://flowable:8443", **fields})


def test_basic_credentials_are_read_and_trimmed_like_the_workers() -> None:
    cluster = Cluster({"auth": {"username": "admin\n", "password": " s3cret\n"}})
    engine = resolve_engine(cluster, "billing", _spec(authSecretRef={"name": "auth"}))
    assert (engine.client.username, engine.client.password) == ("admin", "s3cret")
    assert engine.client.token is None
    assert cluster.reads == [("billing", "auth")]


def test_without_an_auth_secret_nothing_is_read() -> None:
    cluster = Cluster({})
    engine = resolve_engine(cluster, "billing", _spec())
    assert cluster.reads == []
    assert (engine.client.username, engine.client.token) == (None, None)
    assert engine.client.base_url == "https://flowable:8443"


@pytest.mark.parametrize(
    ("secrets", "status", "message"),
    [
        ({}, None, "Secret billing/auth not found"),
        ({"auth": {}}, 403, "not allowed to read Secret billing/auth (check the operator's RBAC)"),
        ({"auth": {"username": "admin"}}, None, "needs keys username and password, or token"),
    ],
)
def test_an_unusable_auth_secret_is_a_config_error(
    secrets: dict[str, dict[str, str]], status: int | None, message: str
) -> None:
    with pytest.raises(EngineConfigError) as caught:
        resolve_engine(Cluster(secrets, status), "billing", _spec(authSecretRef={"name": "auth"}))
    assert message in str(caught.value)


def test_an_api_error_other_than_404_or_403_is_not_hidden() -> None:
    from kubernetes.client.exceptions import ApiException

    with pytest.raises(ApiException):
        resolve_engine(Cluster({}, status=500), "billing", _spec(authSecretRef={"name": "auth"}))


def test_a_secret_value_that_is_not_text_is_named_not_shown() -> None:
    class Binary(Cluster):
        def read_namespaced_secret(self, name: str, namespace: str) -> Any:
            return SimpleNamespace(data={"token": base64.b64encode(b"\xff\xfe").decode()})

    with pytest.raises(EngineConfigError, match=r"Secret billing/auth key 'token' is not text"):
        resolve_engine(Binary({}), "billing", _spec(authSecretRef={"name": "auth"}))


def test_a_ca_certificate_becomes_a_file_named_by_its_content(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(engines, "_CA_DIR", tmp_path / "ca")
    pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"
    cluster = Cluster({"ca": {"ca.crt": pem}, "rotated": {"ca.crt": pem + "\n# new"}})
    ref = {"tls": {"caSecretRef": {"name": "ca"}}}
    first = resolve_engine(cluster, "billing", _spec(**ref))
    again = resolve_engine(cluster, "shipping", _spec(**ref))
    assert first.client.ca_bundle is not None
    assert Path(first.client.ca_bundle).read_text() == pem
    # Equal certificates share one file, so the two pools' engines are equal: they share probes.
    assert first == again
    assert hash(first) == hash(again)
    rotated = resolve_engine(cluster, "billing", _spec(tls={"caSecretRef": {"name": "rotated"}}))
    assert rotated.client.ca_bundle != first.client.ca_bundle
    assert rotated != first


def test_a_ca_secret_without_its_key_says_which_key() -> None:
    cluster = Cluster({"ca": {"other": "x"}})
    with pytest.raises(EngineConfigError, match=r"Secret ca has no key 'ca.crt'"):
        resolve_engine(cluster, "billing", _spec(tls={"caSecretRef": {"name": "ca"}}))


def test_tls_verification_and_api_paths_come_from_the_spec() -> None:
    engine = resolve_engine(
        Cluster({}),
        "billing",
        _spec(
            tls={"insecureSkipVerify": True},
            processApiPath="/p",
            cmmnApiPath="/c",
        ),
    )
    assert engine.client.verify_tls is False
    assert (engine.process_api_path, engine.cmmn_api_path) == ("/p", "/c")
    assert engine.client.read_retries == 1
