"""flowable_worker: the worker runtime for Flowable external-worker jobs, and its REST client.

The package's one public face: import from here, not from the modules behind it. Keep this file a
plain list of re-exports.
"""

from flowable_worker._version import __version__
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
from flowable_worker.config import ConfigError, WorkerSettings, load_settings
from flowable_worker.context import JobContext, current_job
from flowable_worker.job import Job
from flowable_worker.results import BpmnError, CmmnTerminate, Complete, Fail
from flowable_worker.runtime import Worker

__all__ = [
    "AcquiredJob",
    "BadRequestError",
    "BpmnError",
    "ClientSettings",
    "CmmnTerminate",
    "Complete",
    "ConfigError",
    "ExternalWorkerJob",
    "Fail",
    "FlowableClient",
    "FlowableError",
    "FlowableHTTPError",
    "FlowableTimeoutError",
    "FlowableTransportError",
    "ForbiddenError",
    "InvalidResponseError",
    "Job",
    "JobContext",
    "JobFilters",
    "JobNotFoundError",
    "LockNotHeldError",
    "Page",
    "ServerError",
    "TypedValue",
    "UnauthorizedError",
    "Variable",
    "Worker",
    "WorkerSettings",
    "__version__",
    "current_job",
    "from_rest_variables",
    "load_settings",
    "to_rest_variables",
]
