"""The error answers a Flowable REST API gives, as one exception the HTTP layer renders.

Flowable's `RestExceptionHandlerAdvice` maps engine exceptions to a status and a body
`{"message": <reason phrase>, "exception": <detail>}`; the semantic layer raises `ApiError`
with the same status and detail so the HTTP layer never has to know why a request failed.
"""

from __future__ import annotations

from typing import Any

_REASONS = {
    400: "Bad request",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    500: "Internal server error",
}


class ApiError(Exception):
    """A request the emulated engine refuses; `body()` is what goes on the wire."""

    def __init__(self, status: int, exception: str) -> None:
        super().__init__(f"{status}: {exception}")
        self.status = status
        self.exception = exception

    def body(self) -> dict[str, Any]:
        return {"message": _REASONS.get(self.status, "Error"), "exception": self.exception}


def bad_request(detail: str) -> ApiError:
    """FlowableIllegalArgumentException and unreadable bodies."""
    return ApiError(400, detail)


def forbidden(detail: str) -> ApiError:
    """FlowableForbiddenException: the worker does not own the lock."""
    return ApiError(403, detail)


def job_not_found(job_id: str) -> ApiError:
    """FlowableObjectNotFoundException for an external worker job id."""
    return ApiError(404, f"Could not find external worker job with id '{job_id}'.")


def lock_not_held(worker_id: str) -> ApiError:
    return forbidden(f"{worker_id} does not hold a lock on the requested job")
