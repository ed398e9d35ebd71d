"""`flowable_worker.client`: a typed async client for Flowable's external-worker REST API.

The public face of the client subpackage: the modules behind it may change, these names don't.
The interface is documented in docs/client.md.
"""

from flowable_worker.client._client import FlowableClient
from flowable_worker.client.errors import (
    BadRequestError,
    FlowableError,
    FlowableHTTPError,
    FlowableTimeoutError,
    FlowableTransportError,
    ForbiddenError,
    InvalidResponseError,
    JobNotFoundError,
    LockNotHeldError,
    ServerError,
    UnauthorizedError,
)
from flowable_worker.client.models import AcquiredJob, ExternalWorkerJob, Page
from flowable_worker.client.queries import JobFilters
from flowable_worker.client.settings import ClientSettings
from flowable_worker.client.variables import (
    VARIABLE_TYPES,
    TypedValue,
    Variable,
    from_rest_variables,
    to_rest_variables,
)

__all__ = [
    "VARIABLE_TYPES",
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
