"""Turning Flowable's error answers and httpx's failures into the client's error hierarchy.

Flowable's error body is `{"message": ..., "exception": ...}`, but a 401 from Spring Security has
an empty body and a proxy in front may answer with HTML: the mapping must never fail on the body.
A 403 is only a lost lock when Flowable says so; a 403 from an authorisation layer stays a plain
`ForbiddenError`, because the worker reacts to the two very differently.

Every URL put into an error is redacted (`user:password@` -> `***@`): errors are logged, and a
base URL may carry Basic credentials.
"""

from __future__ import annotations

import json
import ssl

import httpx

from flowable_worker.client.errors import (
    BadRequestError,
    FlowableHTTPError,
    FlowableTimeoutError,
    FlowableTransportError,
    ForbiddenError,
    JobNotFoundError,
    LockNotHeldError,
    ServerError,
    UnauthorizedError,
)
from flowable_worker.redaction import redact

_LOCK_NOT_HELD_MARKER = "does not hold a lock"

_BY_STATUS: dict[int, type[FlowableHTTPError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: JobNotFoundError,
}


def _error_body(text: str) -> tuple[str | None, str | None]:
    """Flowable's `message` and `exception`, or (None, None) when the body is not that shape."""
    if not text.strip():
        return None, None
    try:
        parsed = json.loads(text)
    except ValueError:
        return None, None
    if not isinstance(parsed, dict):
        return None, None
    message = parsed.get("message")
    exception = parsed.get("exception")
    return (
        message if isinstance(message, str) else None,
        exception if isinstance(exception, str) else None,
    )


def error_for_response(response: httpx.Response) -> FlowableHTTPError:
    """The error a non-2xx answer stands for; the response body must already be read."""
    try:
        text = response.text
    except (httpx.ResponseNotRead, UnicodeDecodeError):  # pragma: no cover - defensive
        text = ""
    message, exception = _error_body(text)
    status = response.status_code
    cls: type[FlowableHTTPError]
    if status >= 500:
        cls = ServerError
    elif status == 403 and _LOCK_NOT_HELD_MARKER in (exception or message or ""):
        cls = LockNotHeldError
    else:
        cls = _BY_STATUS.get(status, FlowableHTTPError)
    return cls(
        status=status,
        message=message,
        exception=exception,
        body=text,
        method=response.request.method,
        url=redact(str(response.request.url)),
    )


def error_for_transport_failure(
    exc: httpx.RequestError | ssl.SSLError, *, method: str, url: str
) -> FlowableTransportError:
    """The client error for an httpx (or TLS) failure that produced no answer at all."""
    where = f"{method} {url}"
    if isinstance(exc, httpx.TimeoutException):
        return FlowableTimeoutError(redact(f"timed out: {where}: {type(exc).__name__}: {exc}"))
    return FlowableTransportError(
        redact(f"transport failure: {where}: {type(exc).__name__}: {exc}")
    )
