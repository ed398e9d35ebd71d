"""Python callables as handlers: `module:function` or functions registered with `worker.topic(...)`.

Sync functions run on the worker's handler threads (`HandlerThreads`), so a blocking handler never
stalls the event loop that acquires and reports, and one that hangs never holds up the jobs after
it; async functions are awaited on the loop.
A return value of dict or None completes the job; `BpmnError`, `Fail` and `CmmnTerminate` choose
the other outcomes; any other exception fails the job with its message, the traceback as details
and the worker's retry policy.
"""

from __future__ import annotations

import contextvars
import functools
import importlib
import inspect
import traceback
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from flowable_worker.handler_threads import HandlerThreads
from flowable_worker.handlers.base import RetryPolicy
from flowable_worker.job import Job
from flowable_worker.results import (
    Complete,
    FailJob,
    HandlerSignal,
    Outcome,
    outcome_of_signal,
)

HandlerFunction = Callable[[Job], Any]

# Flowable stores errorDetails in a CLOB, but a megabyte traceback helps nobody: keep the end.
_MAX_DETAILS = 32_000


def is_async_callable(function: object) -> bool:
    """True for `async def` functions, partials of them and objects with an async `__call__`."""
    while isinstance(function, functools.partial):
        function = function.func
    if inspect.iscoroutinefunction(function):
        return True
    call = getattr(function, "__call__", None)  # noqa: B004 - we want the bound __call__
    return inspect.iscoroutinefunction(call)


def import_callable(spec: str) -> object:
    """Import `package.module:attribute` (attribute may be dotted); ValueError if it can't."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"handler {spec!r} must look like package.module:function")
    try:
        target: object = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"cannot import handler module {module_name!r}: {error}") from error
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ValueError(f"module {module_name!r} has no attribute {attribute!r}") from None
    return target


class PythonHandler:
    """Runs one Python function per job and maps what it does to an outcome."""

    def __init__(
        self,
        function: HandlerFunction,
        *,
        threads: HandlerThreads,
        fail_retries: int | None = None,
        fail_retry_timeout: timedelta | str | None = None,
    ) -> None:
        if not callable(function):
            raise TypeError(f"handler {function!r} is not callable")
        self._function = function
        self._is_async = is_async_callable(function)
        self._threads = threads
        self._policy = RetryPolicy(retries=fail_retries, retry_timeout=fail_retry_timeout)

    @property
    def name(self) -> str:
        """How logs name this handler."""
        module = getattr(self._function, "__module__", "?")
        qualname = getattr(self._function, "__qualname__", repr(self._function))
        return f"{module}:{qualname}"

    async def handle(self, job: Job) -> Outcome:
        """Call the function; never raises except for cancellation."""
        try:
            if self._is_async:
                returned = await self._function(job)
            else:
                context = contextvars.copy_context()
                returned = await self._threads.run(
                    functools.partial(context.run, self._function, job)
                )
                if inspect.isawaitable(returned):
                    # A sync-looking callable (e.g. a lambda) that returns a coroutine.
                    returned = await returned
        except HandlerSignal as signal:
            return outcome_of_signal(signal)
        except Exception as error:
            return self.failure(error)
        return self._completion(returned)

    def failure(self, error: BaseException) -> FailJob:
        """Fail with the exception's message, its traceback as details, and the retry policy."""
        message = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        details = "".join(traceback.format_exception(error))
        return self._policy.fail(message[:4000], details=details[-_MAX_DETAILS:])

    def _completion(self, returned: object) -> Outcome:
        if returned is None:
            return Complete()
        if isinstance(returned, Mapping):
            return Complete(variables={str(k): v for k, v in returned.items()})
        return self._policy.fail(
            f"handler {self.name} returned {type(returned).__name__}; "
            "expected a dict of variables or None"
        )

    async def aclose(self) -> None:
        """Nothing to release: the handler threads belong to the worker."""
