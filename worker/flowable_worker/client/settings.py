"""How to reach one Flowable server: where it is, who we are, and how long we wait.

Settings are immutable values: a client is built from them once and never changes them, so the
worker and the operator can share one settings object across tasks without surprises. Nothing here
opens a connection; `FlowableClient` does that.
"""

from __future__ import annotations

import ssl

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from flowable_worker.client.tls import ssl_context
from flowable_worker.redaction import redact


class ClientSettings(BaseModel):
    """Connection settings for `FlowableClient` (see docs/client.md for each field's meaning)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str
    external_job_api_path: str = "/external-job-api"
    username: str | None = None
    password: str | None = None
    token: str | None = Field(default=None, repr=False)
    ca_bundle: str | None = None
    verify_tls: bool = True
    client_cert: str | None = None
    """PEM certificate shown to Flowable (mutual TLS); None: none is shown."""
    client_key: str | None = None
    """PEM private key of `client_cert`; None: the key is in `client_cert`'s file."""
    timeout_seconds: float = Field(default=10.0, gt=0)
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    max_connections: int = Field(default=100, ge=1)
    read_retries: int = Field(default=3, ge=0)
    retry_backoff_seconds: float = Field(default=0.2, ge=0)
    retry_backoff_max_seconds: float = Field(default=5.0, ge=0)

    @field_validator("base_url")
    @classmethod
    def _base_url_is_http(cls, value: str) -> str:
        # A missing scheme would make httpx treat the host as a relative path: fail early instead.
        if not value.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("external_job_api_path")
    @classmethod
    def _api_path_is_absolute(cls, value: str) -> str:
        stripped = value.strip("/")
        return f"/{stripped}" if stripped else ""

    @model_validator(mode="after")
    def _one_kind_of_auth(self) -> ClientSettings:
        if self.token is not None and (self.username is not None or self.password is not None):
            raise ValueError("use either username/password (Basic) or token (Bearer), not both")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password must be given together")
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("client_key needs client_cert")
        return self

    def tls_verify(self) -> ssl.SSLContext | bool:
        """httpx's `verify=`: off, the system's trust store, or a context (private CA, client
        certificate); a context also carries the client certificate, as httpx 0.28 wants it."""
        if self.ca_bundle is None and self.client_cert is None:
            return self.verify_tls
        return self.ssl_context()

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context these settings describe; ValueError naming an unusable file."""
        return ssl_context(
            verify=self.verify_tls,
            ca_bundle=self.ca_bundle,
            client_cert=self.client_cert,
            client_key=self.client_key,
        )

    def http_auth(self) -> tuple[httpx.Auth | None, dict[str, str]]:
        """httpx's `auth=` and the headers to send: Basic, Bearer, or nothing."""
        if self.username is not None and self.password is not None:
            return httpx.BasicAuth(self.username, self.password), {}
        if self.token is not None:
            return None, {"Authorization": f"Bearer {self.token}"}
        return None, {}

    @property
    def external_job_api_url(self) -> str:
        """The absolute URL under which every external-worker endpoint lives (no trailing slash)."""
        return f"{self.base_url}{self.external_job_api_path}"

    def __repr__(self) -> str:
        # Never print the password (nor one inside the URL): settings end up in logs and errors.
        shown = self.model_dump(exclude={"password", "token"})
        shown["password"] = "***" if self.password is not None else None
        shown["token"] = "***" if self.token is not None else None
        shown["base_url"] = redact(self.base_url)
        fields = ", ".join(f"{k}={v!r}" for k, v in shown.items())
        return f"ClientSettings({fields})"

    __str__ = __repr__
