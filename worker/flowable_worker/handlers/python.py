"""Python callables as handlers: `module:function` or functions registered with `worker.topic(...)`.

Sync functions run on the worker's handler threads (`HandlerThreads`), so a blocking handler never
stalls the event loop that acquires and reports, and one that hangs never holds up the jobs after
it; async functions are awaited on the loop.
A return value of dict, model, dataclass or None completes the job; `BpmnError`, `Fail` and
`CmmnTerminate`, raised or returned, choose the other outcomes (and a returned `Complete` completes
with its variables); any other exception goes to the topic's (or the
worker's) error hook if there is one, and otherwise fails the job with its message, the traceback
as details and the retry policy. A function whose first parameter is a pydantic model or a
dataclass receives the variables validated into it (`handlers/typed.py`).
"""

from __future__ import annotations

import contextvars
import functools
import importlib
import inspect
import logging
import traceback
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from flowable_worker.handler_threads import HandlerThreads
from flowable_worker.handlers.base import ErrorHook, RetryPolicy
from flowable_worker.handlers.typed import as_variables, variables_model
from flowable_worker.job import Job
from flowable_worker.results import (
    BpmnError,
    CmmnTerminate,
    Complete,
    Fail,
    HandlerSignal,
    Outcome,
    as_outcome,
)

HandlerFunction = Callable[..., Any]
"""A function of the `Job`, or of a model of its variables (`handlers/typed.py`)."""

log = logging.getLogger("flowable_worker.handlers.python")

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
        on_error: ErrorHook | None = None,
    ) -> None:
        if not callable(function):
            raise TypeError(f"handler {function!r} is not callable")
        self._function = function
        self._is_async = is_async_callable(function)
        self._threads = threads
        self._policy = RetryPolicy(retries=fail_retries, retry_timeout=fail_retry_timeout)
        self._on_error = on_error
        self._model = variables_model(function)

    @property
    def name(self) -> str:
        """How logs name this handler."""
        module = getattr(self._function, "__module__", "?")
        qualname = getattr(self._function, "__qualname__", repr(self._function))
        return f"{module}:{qualname}"

    async def handle(self, job: Job) -> Outcome:
        """Call the function; never raises except for cancellation."""
        argument: object = job
        if self._model is not None:
            try:
                argument = self._model.validate(job.variables)
            except ValidationError as error:
                return self._policy.fail(self._model.describe(error), details=str(error))
        try:
            returned = await self._call(self._function, argument)
        except (BpmnError, Fail, CmmnTerminate) as signal:
            return _decided(signal)
        except Exception as error:
            decided = await self._decide(job, error)
            return decided if decided is not None else self.failure(error)
        return self._completion(returned)

    async def _call(self, function: Callable[..., Any], *args: object) -> Any:
        """Await an async function; run a sync one on a handler thread, in this task's context."""
        if is_async_callable(function):
            return await function(*args)
        context = contextvars.copy_context()
        returned = await self._threads.run(functools.partial(context.run, function, *args))
        if inspect.isawaitable(returned):
            # A sync-looking callable (e.g. a lambda) that returns a coroutine.
            returned = await returned
        return returned

    async def _decide(self, job: Job, error: Exception) -> Outcome | None:
        """What the error hook makes of `error`: an outcome, or None for the default failure.

        The hook may raise `BpmnError`, `Fail` or `CmmnTerminate`, or return any outcome;
        returning None keeps the default. A hook that fails itself is logged and the default
        applies: an error handler must never turn one failure into a lost job.
        """
        if self._on_error is None:
            return None
        try:
            decided = await self._call(self._on_error, job, error)
        except (BpmnError, Fail, CmmnTerminate) as signal:
            return _decided(signal)
        except Exception:
            log.exception("the error hook of %s failed; failing job %s as usual", self.name, job.id)
            return None
        outcome = as_outcome(decided)
        if outcome is not None:
            return _decided(outcome)
        if decided is not None:
            log.error(
                "the error hook of %s returned %s; expected None, BpmnError, Fail, "
                "CmmnTerminate or Complete: failing job %s as usual",
                self.name, type(decided).__name__, job.id,
            )
        return None

    def failure(self, error: BaseException) -> Fail:
        """Fail with the exception's message, its traceback as details, and the retry policy."""
        message = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        details = "".join(traceback.format_exception(error))
        return self._policy.fail(message[:4000], details=details[-_MAX_DETAILS:])

    def _completion(self, returned: object) -> Outcome:
        outcome = as_outcome(returned)
        if outcome is not None:
            return _decided(outcome)
        if returned is None:
            return Complete()
        if isinstance(returned, Mapping):
            return Complete(variables={str(k): v for k, v in returned.items()})
        variables = as_variables(returned)
        if variables is not None:
            return Complete(variables=variables)
        return self._policy.fail(
            f"handler {self.name} returned {type(returned).__name__}; "
            "expected a dict of variables, a pydantic model, a dataclass, None or an outcome"
        )

    async def aclose(self) -> None:
        """Nothing to release: the handler threads belong to the worker."""


def _decided(outcome: Outcome) -> Outcome:
    """A handler's own outcome, without the traceback a raised one carries.

    The outcome lives until it is reported; its traceback would keep the handler's frames (and
    whatever their locals hold) alive that long.
    """
    if isinstance(outcome, HandlerSignal):
        outcome.__traceback__ = None
    return outcome
