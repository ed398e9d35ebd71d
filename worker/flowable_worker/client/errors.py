"""The client's one error hierarchy: callers catch at the level they care about.

`FlowableHTTPError` and its subclasses mean the server answered with a status we treat as failure;
`FlowableTransportError` means no usable answer arrived at all (for a POST the server may or may not
have acted); `InvalidResponseError` means a 2xx answer that is not what the API promises. No raw
httpx, pydantic or json exception escapes the client.
"""

from __future__ import annotations

from typing import Any


class FlowableError(Exception):
    """Base of every error raised by `flowable_worker.client`."""


class FlowableHTTPError(FlowableError):
    """Flowable answered with an error status; `message`/`exception` come from its error body."""

    def __init__(
        self,
        *,
        status: int,
        message: str | None = None,
        exception: str | None = None,
        body: str = "",
        method: str = "",
        url: str = "",
    ) -> None:
        self.status = status
        self.message = message
        self.exception = exception
        self.body = body
        self.method = method
        self.url = url
        detail = exception or message or (body[:200] if body else "no body")
        where = f" {method} {url}" if method else ""
        super().__init__(f"HTTP {status}{where}: {detail}")


class BadRequestError(FlowableHTTPError):
    """400: the request was invalid (missing workerId, wrong job kind for bpmnError...)."""


class UnauthorizedError(FlowableHTTPError):
    """401: credentials missing or wrong (Flowable sends an empty body)."""


class ForbiddenError(FlowableHTTPError):
    """403: not allowed, for a reason other than a lock held by someone else."""


class LockNotHeldError(ForbiddenError):
    """403: this worker no longer holds the job's lock (expired and reset, or taken by another)."""


class JobNotFoundError(FlowableHTTPError):
    """404: the job does not exist (already completed, moved to dead letters, or never existed)."""


class ServerError(FlowableHTTPError):
    """5xx: the server failed; optimistic-lock conflicts arrive as 500."""


class FlowableTransportError(FlowableError):
    """No HTTP answer: connection refused or reset, TLS failure, protocol error."""


class FlowableTimeoutError(FlowableTransportError):
    """Any timeout (connect, read, write, pool): the server may still have acted on a POST."""


class InvalidResponseError(FlowableError):
    """A 2xx answer whose body is not the JSON the API promises."""

    def __init__(self, reason: str, *, body: Any = None) -> None:
        self.reason = reason
        self.body = body
        super().__init__(reason)
