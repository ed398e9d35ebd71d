"""Resolving a pool's engine: a settings error names the fields, never the values from Secrets."""

from __future__ import annotations

import base64
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
