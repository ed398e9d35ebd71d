"""flowable_worker: the worker runtime for Flowable external-worker jobs, and its REST client.

The package's one public face: import from here, not from the modules behind it. Keep this file a
plain list of re-exports.
"""

from flowable_worker.client import (
    AcquiredJob,
    BadRequestError,
    ClientSettings,
    ExternalWorkerJob,
    FlowableClient,
    FlowableError,
    FlowableHTTPError,
    FlowableTimeoutError,
    FlowableTransportError,
    ForbiddenError,
    InvalidResponseError,
    JobFilters,
    JobNotFoundError,
    LockNotHeldError,
    Page,
    ServerError,
    TypedValue,
    UnauthorizedError,
    Variable,
    from_rest_variables,
    to_rest_variables,
)

__all__ = [
    "AcquiredJob",
    "BadRequestError",
    "ClientSettings",
    "ExternalWorkerJob",
    "FlowableClient",
    "FlowableError",
    "FlowableHTTPError",
    "FlowableTimeoutError",
    "FlowableTransportError",
    "ForbiddenError",
    "InvalidResponseError",
    "JobFilters",
    "JobNotFoundError",
    "LockNotHeldError",
    "Page",
    "ServerError",
    "TypedValue",
    "UnauthorizedError",
    "Variable",
    "from_rest_variables",
    "to_rest_variables",
]
