"""Worker configuration: one immutable `WorkerSettings`, read from flags and environment variables.

Every option has a flag and an environment variable (flags win), declared once in `OPTIONS`, from
which both the `--help` text and the parser are built (`options`, the mechanism the operator's
configuration uses too). A bad configuration raises `ConfigError`
with one line naming the option, where its value came from and what is wrong; the CLI turns that
into exit code 2. Cross-field rules (handler timeout shorter than the lock) live in the model, so a
programmatic `Worker(settings)` is checked the same way.

Everything that would otherwise fail later, in the middle of serving and as a traceback, is checked
here: URLs are parsed the way the HTTP client will parse them (host present, port in range),
durations are not negative, the CA bundle and the client certificate (mutual TLS) are loaded once,
the metrics port's TLS certificate and bearer-token file too, and credentials are cleaned. A
credential from a Kubernetes Secret often ends in a newline (`kubectl create secret --from-file`
keeps the file's last one): the operator strips surrounding whitespace from Secret values, so the
worker does the same, or the operator's probe would work while every worker got 401. A control
character left inside a credential can't be sent in a header at all and is refused, without
echoing the value. No error message shows a URL's `user:password@` part (`redaction.py`).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import socket
import ssl
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Literal
from urllib.parse import urlsplit

import httpx
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from flowable_worker.client import ClientSettings
from flowable_worker.client.durations import parse_duration
from flowable_worker.client.tls import check_readable, load_client_certificate
from flowable_worker.metrics_access import read_token, server_tls_context
from flowable_worker.options import ConfigError as ConfigError
from flowable_worker.options import (
    Option,
    parse_bool,
    parse_int,
    parse_list,
    parse_lower,
    parse_optional_int,
    parse_upper,
    read_options,
)
from flowable_worker.options import build_parser as build_options_parser
from flowable_worker.redaction import redact

DEFAULT_CONCURRENCY = 16
DEFAULT_LOCK_DURATION = timedelta(minutes=5)
# Share of the lock a handler may use when no timeout is given: the rest is left for reporting.
DEFAULT_HANDLER_TIMEOUT_SHARE = 0.9


def default_worker_id() -> str:
    """The pod name (`HOSTNAME`, unique per replica in Kubernetes); else host name plus pid."""
    hostname = os.environ.get("HOSTNAME", "").strip()
    if hostname:
        return hostname
    return f"{socket.gethostname()}-{os.getpid()}"


class WorkerSettings(BaseModel):
    """Everything one worker process needs; see docs/worker.md for each option."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    flowable_url: str
    external_job_api_path: str = "/external-job-api"
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    token: str | None = Field(default=None, repr=False)
    ca_bundle: str | None = None
    verify_tls: bool = True
    client_cert: str | None = None
    client_key: str | None = None
    request_timeout: timedelta = timedelta(seconds=10)
    max_connections: int | None = Field(default=None, ge=1)
    http_client: Literal["lean", "httpx"] = "lean"

    topics: tuple[str, ...] = ()
    scope_type: Literal["bpmn", "cmmn"] | None = None
    worker_id: str = Field(default_factory=default_worker_id, min_length=1)

    handler: str | None = None
    handler_url: str | None = None
    handler_command: tuple[str, ...] | None = None

    concurrency: int = Field(default=DEFAULT_CONCURRENCY, ge=1, le=10_000)
    batch_size: int | None = Field(default=None, ge=1)
    lock_duration: timedelta = DEFAULT_LOCK_DURATION
    handler_timeout: timedelta | None = None
    fail_retries: int | None = Field(default=None, ge=0)
    fail_retry_timeout: timedelta | None = None

    poll_interval_min: timedelta = timedelta(milliseconds=100)
    poll_interval_max: timedelta = timedelta(seconds=5)
    error_backoff_max: timedelta = timedelta(seconds=30)
    grace_period: timedelta = timedelta(seconds=25)

    metrics_host: str = "0.0.0.0"
    metrics_port: int = Field(default=9464, ge=0, le=65535)
    metrics_tls_cert: str | None = None
    metrics_tls_key: str | None = None
    metrics_auth_token_file: str | None = None
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("flowable_url")
    @classmethod
    def _url_is_http(cls, value: str) -> str:
        # Stripped like a credential: a URL kept in a Secret or a file may end in a newline.
        return check_http_url(value.strip()).rstrip("/")

    @field_validator("handler_url")
    @classmethod
    def _handler_url_is_http(cls, value: str | None) -> str | None:
        return None if value is None else check_http_url(value.strip())

    @field_validator("username", "password", "token")
    @classmethod
    def _clean_credential(cls, value: str | None) -> str | None:
        return None if value is None else clean_credential(value)

    @field_validator("request_timeout")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError(f"must be positive (got {value.total_seconds():g}s)")
        return value

    @field_validator(
        "grace_period", "poll_interval_min", "poll_interval_max", "error_backoff_max",
        "fail_retry_timeout",
    )
    @classmethod
    def _not_negative(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value < timedelta(0):
            raise ValueError(f"must not be negative (got {value.total_seconds():g}s)")
        return value

    @field_validator("ca_bundle")
    @classmethod
    def _ca_bundle_loads(cls, value: str | None) -> str | None:
        # Loaded once here so that a missing or broken file is a one-line configuration error
        # naming the file, instead of an OSError without a file name when the client starts.
        if value is not None:
            try:
                ssl.create_default_context(cafile=value)
            except (OSError, ssl.SSLError) as error:
                reason = error.strerror if isinstance(error, OSError) and error.strerror else error
                raise ValueError(f"cannot load CA bundle {value!r}: {reason}") from None
        return value

    @field_validator("client_cert", "client_key")
    @classmethod
    def _client_file_readable(cls, value: str | None, info: ValidationInfo) -> str | None:
        # Each file named on its own first; whether they fit together is checked in `_consistent`.
        if value is not None:
            what = "client certificate" if info.field_name == "client_cert" else "client key"
            check_readable(value, what)
        return value

    @field_validator("metrics_auth_token_file")
    @classmethod
    def _token_file_reads(cls, value: str | None) -> str | None:
        if value is not None:
            read_token(value)
        return value

    @field_validator("topics")
    @classmethod
    def _topics_are_named(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = tuple(dict.fromkeys(t.strip() for t in value if t.strip()))
        return cleaned

    @model_validator(mode="after")
    def _consistent(self) -> WorkerSettings:
        if self.lock_duration < timedelta(seconds=1):
            raise ValueError("lock_duration must be at least 1s")
        timeout = self.effective_handler_timeout
        if timeout <= timedelta(0):
            raise ValueError("handler_timeout must be positive")
        if timeout >= self.lock_duration:
            raise ValueError(
                f"handler_timeout ({timeout.total_seconds():g}s) must be shorter than "
                f"lock_duration ({self.lock_duration.total_seconds():g}s): a job still running "
                "when its lock expires can be handed to another worker"
            )
        handlers = [self.handler, self.handler_url, self.handler_command]
        if sum(h is not None for h in handlers) > 1:
            raise ValueError("give only one of handler, handler_url, handler_command")
        if self.handler_command is not None and not self.handler_command:
            raise ValueError("handler_command is empty")
        if self.poll_interval_min > self.poll_interval_max:
            raise ValueError("poll_interval_min must not exceed poll_interval_max")
        if self.token is not None and self.username is not None:
            raise ValueError("use either username/password or token, not both")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password must be given together")
        self._tls_files_fit()
        return self

    def _tls_files_fit(self) -> None:
        """The client certificate and the metrics certificate load with their keys."""
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("client_key needs client_cert (the certificate it belongs to)")
        if self.client_cert is not None:
            load_client_certificate(ssl.create_default_context(), self.client_cert, self.client_key)
        if self.metrics_tls_key is not None and self.metrics_tls_cert is None:
            raise ValueError("metrics_tls_key needs metrics_tls_cert")
        if self.metrics_tls_cert is not None:
            server_tls_context(self.metrics_tls_cert, self.metrics_tls_key)

    @property
    def effective_handler_timeout(self) -> timedelta:
        """The explicit handler timeout, or 90% of the lock duration."""
        if self.handler_timeout is not None:
            return self.handler_timeout
        return self.lock_duration * DEFAULT_HANDLER_TIMEOUT_SHARE

    @property
    def effective_batch_size(self) -> int:
        """Most jobs asked for in one acquire: the batch size, by default the concurrency."""
        return self.batch_size if self.batch_size is not None else self.concurrency

    @property
    def effective_max_connections(self) -> int:
        """Connections to Flowable: explicit, or min(concurrency, 10) plus one per topic.

        More is not faster: a Flowable server answers with a handful of cores, and httpcore
        checks every pooled connection on each request, so a big idle pool costs CPU per job.
        """
        if self.max_connections is not None:
            return self.max_connections
        return min(self.concurrency, 10) + len(self.topics)

    def client_settings(self) -> ClientSettings:
        """Settings for the one `FlowableClient` of this process."""
        return ClientSettings(
            base_url=self.flowable_url,
            external_job_api_path=self.external_job_api_path,
            username=self.username,
            password=self.password,
            token=self.token,
            ca_bundle=self.ca_bundle,
            verify_tls=self.verify_tls,
            client_cert=self.client_cert,
            client_key=self.client_key,
            timeout_seconds=self.request_timeout.total_seconds(),
            max_connections=self.effective_max_connections,
        )


def check_http_url(value: str) -> str:
    """`value` if it is an http(s) URL with a host and a valid port; ValueError saying why not.

    Parsed both as the standard library and as httpx parse it, so that nothing the client would
    choke on at the first request (an unclosed IPv6 bracket, port 99999) passes. Messages show
    the URL with any `user:password@` redacted.
    """
    shown = redact(value)
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"must start with http:// or https:// (got {shown!r})")
    try:
        parts = urlsplit(value)
        port = parts.port  # raises for a port out of range or not a number
        httpx.URL(value)
    except (ValueError, httpx.InvalidURL) as error:
        raise ValueError(f"is not a valid URL ({shown!r}): {redact(str(error))}") from None
    if not parts.hostname:
        raise ValueError(f"has no host (got {shown!r})")
    if port == 0:
        raise ValueError(f"has port 0 (got {shown!r})")
    return value


def clean_credential(value: str) -> str:
    """A user name, password or token as the operator reads it: surrounding whitespace removed.

    A control character that remains inside would end up raw in the Authorization header (a
    newline there splits the request): refused, and the message never shows the value.
    """
    cleaned = value.strip()
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in cleaned):
        raise ValueError("contains a control character (value not shown)")
    return cleaned


# Environment variables that hold credentials, and ones holding URLs that may carry them in their
# `user:password@` part: a handler command's child process must not inherit their secrets.
CREDENTIAL_FIELDS = ("username", "password", "token")
URL_FIELDS = ("flowable_url", "handler_url")


# --- flags and environment variables ------------------------------------------------------------


def _command(text: str) -> tuple[str, ...]:
    return tuple(shlex.split(text))


OPTIONS: tuple[Option, ...] = (
    Option("flowable_url", "--flowable-url", "FLOWABLE_URL",
           "Flowable base URL, e.g. http://flowable:8080 or http://host/flowable-rest (required)",
           metavar="URL"),
    Option("topics", "--topic", "FLOWABLE_TOPIC",
           "topic to work; repeat the flag or give a comma-separated list (required)",
           parse_list, repeat=True, metavar="TOPIC"),
    Option("handler", "--handler", "FLOWABLE_WORKER_HANDLER",
           "Python handler as package.module:function, or module:worker for a Worker whose "
           "topics were registered with @worker.topic",
           metavar="MODULE:FUNC"),
    Option("handler_url", "--handler-url", "FLOWABLE_WORKER_HANDLER_URL",
           "HTTP handler: POST each job as JSON to this URL", metavar="URL"),
    Option("handler_command", "--handler-command", "FLOWABLE_WORKER_HANDLER_COMMAND",
           "command handler: job JSON on stdin, result JSON on stdout (shell-style quoting)",
           _command, metavar="CMD"),
    Option("worker_id", "--worker-id", "FLOWABLE_WORKER_ID",
           "lock owner name, unique per replica (default: $HOSTNAME, the pod name)", metavar="ID"),
    Option("concurrency", "--concurrency", "FLOWABLE_WORKER_CONCURRENCY",
           f"jobs handled at once (default {DEFAULT_CONCURRENCY})", parse_int, metavar="N"),
    Option("batch_size", "--batch-size", "FLOWABLE_WORKER_BATCH_SIZE",
           "most jobs asked for per acquire (default: the concurrency)", parse_int, metavar="N"),
    Option("lock_duration", "--lock-duration", "FLOWABLE_WORKER_LOCK_DURATION",
           "how long an acquired job stays ours (default PT5M)", parse_duration,
           metavar="DURATION"),
    Option("handler_timeout", "--handler-timeout", "FLOWABLE_WORKER_HANDLER_TIMEOUT",
           "give up on a handler after this long and fail the job; must be shorter than the lock "
           "(default: 90%% of the lock duration)", parse_duration, metavar="DURATION"),
    Option("fail_retries", "--fail-retries", "FLOWABLE_WORKER_FAIL_RETRIES",
           "retries left after a handler error or a result Flowable refuses (default: Flowable "
           "decrements by one)",
           parse_optional_int, metavar="N"),
    Option("fail_retry_timeout", "--fail-retry-timeout", "FLOWABLE_WORKER_FAIL_RETRY_TIMEOUT",
           "wait before a failed job may be retried (default: at once)", parse_duration,
           metavar="DURATION"),
    Option("scope_type", "--scope-type", "FLOWABLE_SCOPE_TYPE",
           "only acquire jobs of this scope: bpmn or cmmn (default: both)", parse_lower,
           metavar="TYPE"),
    Option("username", "--username", "FLOWABLE_USERNAME", "HTTP Basic user", metavar="USER"),
    Option("password", "--password", "FLOWABLE_PASSWORD",
           "HTTP Basic password (prefer the environment variable)", metavar="PASSWORD"),
    Option("token", "--token", "FLOWABLE_TOKEN",
           "Bearer token (prefer the environment variable)", metavar="TOKEN"),
    Option("ca_bundle", "--ca-bundle", "FLOWABLE_CA_BUNDLE",
           "PEM file to verify Flowable's TLS certificate", metavar="FILE"),
    Option("client_cert", "--client-cert", "FLOWABLE_CLIENT_CERT",
           "PEM client certificate shown to Flowable (mutual TLS); may also hold the key",
           metavar="FILE"),
    Option("client_key", "--client-key", "FLOWABLE_CLIENT_KEY",
           "PEM private key of --client-cert, unencrypted (default: read from --client-cert)",
           metavar="FILE"),
    Option("verify_tls", "--verify-tls", "FLOWABLE_VERIFY_TLS",
           "verify TLS certificates: true or false (default true)", parse_bool, metavar="BOOL"),
    Option("external_job_api_path", "--external-job-api-path", "FLOWABLE_EXTERNAL_JOB_API_PATH",
           "path of the external-worker API under the base URL (default /external-job-api)",
           metavar="PATH"),
    Option("request_timeout", "--request-timeout", "FLOWABLE_REQUEST_TIMEOUT",
           "timeout of each request to Flowable (default 10s)", parse_duration,
           metavar="DURATION"),
    Option("max_connections", "--max-connections", "FLOWABLE_WORKER_MAX_CONNECTIONS",
           "connections to Flowable (default: min(concurrency, 10) + number of topics)", parse_int,
           metavar="N"),
    Option("http_client", "--http-client", "FLOWABLE_WORKER_HTTP_CLIENT",
           "lean (default: HTTP/1.1 keep-alive on asyncio, least CPU) or httpx (its own "
           "transport); httpx is used anyway when HTTP_PROXY/HTTPS_PROXY/ALL_PROXY applies to "
           "the Flowable URL", parse_lower, metavar="KIND"),
    Option("poll_interval_min", "--poll-interval-min", "FLOWABLE_WORKER_POLL_INTERVAL_MIN",
           "first wait after an empty poll (default 100ms); doubles with jitter",
           parse_duration, metavar="DURATION"),
    Option("poll_interval_max", "--poll-interval-max", "FLOWABLE_WORKER_POLL_INTERVAL_MAX",
           "longest wait between polls while idle (default 5s)", parse_duration,
           metavar="DURATION"),
    Option("error_backoff_max", "--error-backoff-max", "FLOWABLE_WORKER_ERROR_BACKOFF_MAX",
           "longest wait after failed acquires (default 30s)", parse_duration,
           metavar="DURATION"),
    Option("grace_period", "--grace-period", "FLOWABLE_WORKER_GRACE_PERIOD",
           "on SIGTERM, how long running handlers may finish (default 25s, under Kubernetes' 30s)",
           parse_duration, metavar="DURATION"),
    Option("metrics_host", "--metrics-host", "FLOWABLE_WORKER_METRICS_HOST",
           "address of the /metrics, /healthz, /readyz server (default 0.0.0.0)", metavar="HOST"),
    Option("metrics_port", "--metrics-port", "FLOWABLE_WORKER_METRICS_PORT",
           "port of the /metrics, /healthz, /readyz server; 0 turns it off (default 9464)",
           parse_int, metavar="PORT"),
    Option("metrics_tls_cert", "--metrics-tls-cert", "FLOWABLE_WORKER_METRICS_TLS_CERT",
           "serve the metrics port over HTTPS with this PEM certificate (may also hold the key)",
           metavar="FILE"),
    Option("metrics_tls_key", "--metrics-tls-key", "FLOWABLE_WORKER_METRICS_TLS_KEY",
           "PEM private key of --metrics-tls-cert (default: read from --metrics-tls-cert)",
           metavar="FILE"),
    Option("metrics_auth_token_file", "--metrics-auth-token-file",
           "FLOWABLE_WORKER_METRICS_AUTH_TOKEN_FILE",
           "/metrics answers 401 unless the request carries 'Authorization: Bearer <token in "
           "this file>'; /healthz and /readyz stay open for the kubelet", metavar="FILE"),
    Option("log_format", "--log-format", "FLOWABLE_WORKER_LOG_FORMAT",
           "json (default) or text", parse_lower, metavar="FORMAT"),
    Option("log_level", "--log-level", "FLOWABLE_WORKER_LOG_LEVEL",
           "DEBUG, INFO (default), WARNING or ERROR", parse_upper, metavar="LEVEL"),
)

_BY_FIELD = {option.field: option for option in OPTIONS}
CREDENTIAL_ENV = tuple(env for field in CREDENTIAL_FIELDS if (env := _BY_FIELD[field].env))
URL_ENV = tuple(env for field in URL_FIELDS if (env := _BY_FIELD[field].env))


def build_parser() -> argparse.ArgumentParser:
    """The `flowable-worker` command line (also the source of `--help`)."""
    return build_options_parser(
        OPTIONS,
        prog="flowable-worker",
        description=(
            "Work Flowable external-worker jobs: acquire, run a handler, report the result. "
            "Every option can also be set by the environment variable shown in brackets; "
            "flags win over the environment."
        ),
        epilog=(
            "Exactly one of --handler, --handler-url, --handler-command is needed. "
            "Signals: SIGTERM/SIGINT stop acquiring, give back jobs not started, and let running "
            "handlers finish within --grace-period. Exit codes: 0 after a clean stop, 1 when an "
            "on_startup hook failed, 2 for a bad configuration. Try a handler without Flowable: "
            "flowable-worker run-once --job job.json --handler MODULE:FUNC (run-once --help). "
            "Docs: docs/worker.md."
        ),
    )


def load_settings(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    require_handler: bool = True,
    require_topics: bool = True,
) -> WorkerSettings:
    """Read settings from flags (win) and environment variables; raises `ConfigError`."""
    environ = os.environ if environ is None else environ
    namespace = build_parser().parse_args(list(argv) if argv is not None else None)
    values, sources = read_options(OPTIONS, namespace, environ)
    if "flowable_url" not in values:
        raise ConfigError("no Flowable URL: set --flowable-url or FLOWABLE_URL")
    try:
        settings = WorkerSettings(**values)
        # Whatever the client would refuse when the worker starts is refused now, in one line.
        settings.client_settings()
    except ValidationError as error:
        raise ConfigError(_one_line(error, sources)) from None
    if require_topics and not settings.topics:
        raise ConfigError("no topic: set --topic or FLOWABLE_TOPIC (comma-separated for several)")
    if require_handler and not has_handler(settings):
        raise ConfigError(
            "no handler: set one of --handler MODULE:FUNC, --handler-url URL, --handler-command CMD"
        )
    return settings


def has_handler(settings: WorkerSettings) -> bool:
    """True when the settings name a handler (a Worker may also bring registered ones)."""
    handlers = (settings.handler, settings.handler_url, settings.handler_command)
    return any(h is not None for h in handlers)


def _one_line(error: ValidationError, sources: Mapping[str, str]) -> str:
    """The first validation problem as `--flag (ENV): message`, on one line, URLs redacted."""
    first = error.errors()[0]
    location = first.get("loc", ())
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    message = redact(" ".join(message.split()))
    if location:
        field = str(location[0])
        option = _BY_FIELD.get(field)
        where = sources.get(field) or (f"{option.flag}/{option.env}" if option else field)
        return f"{where}: {message}"
    # A rule across fields: name the flags, which is what the user typed (or their env names).
    for field, option in _BY_FIELD.items():
        message = re.sub(rf"\b{field}\b", option.flag, message)
    return message
