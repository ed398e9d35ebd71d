"""Client settings are checked once, when they are made."""

from __future__ import annotations

import pydantic
import pytest

from flowable_worker import ClientSettings


def test_defaults_match_the_documented_interface() -> None:
    settings = ClientSettings(base_url="http://localhost:8080")

    assert settings.model_dump() == {
        "base_url": "http://localhost:8080",
        "external_job_api_path": "/external-job-api",
        "username": None,
        "password": None,
        "token": None,
        "ca_bundle": None,
        "verify_tls": True,
        "client_cert": None,
        "client_key": None,
        "timeout_seconds": 10,
        "connect_timeout_seconds": 5,
        "max_connections": 100,
        "read_retries": 3,
        "retry_backoff_seconds": 0.2,
        "retry_backoff_max_seconds": 5,
    }


def test_settings_are_immutable() -> None:
    settings = ClientSettings(base_url="http://localhost:8080")

    with pytest.raises(pydantic.ValidationError):
        settings.read_retries = 5  # type: ignore[misc]


def test_basic_and_bearer_auth_are_exclusive() -> None:
    with pytest.raises(pydantic.ValidationError, match="not both"):
        ClientSettings(base_url="http://h", username="u", password="p", token="t")


def test_a_username_needs_a_password() -> None:
    with pytest.raises(pydantic.ValidationError, match="together"):
        ClientSettings(base_url="http://h", username="u")


def test_a_base_url_without_scheme_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="http"):
        ClientSettings(base_url="localhost:8080")


def test_secrets_never_appear_in_the_settings_repr() -> None:
    shown = repr(ClientSettings(base_url="http://h", username="u", password="hunter2"))
    shown_token = str(ClientSettings(base_url="http://h", token="tok-123"))

    assert "hunter2" not in shown
    assert "tok-123" not in shown_token


def test_the_api_url_joins_base_and_path() -> None:
    settings = ClientSettings(base_url="http://h/flowable-rest/", external_job_api_path="x-api")

    assert settings.external_job_api_url == "http://h/flowable-rest/x-api"
