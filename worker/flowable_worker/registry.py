"""What a worker is told before it runs: which function handles which topic, with which options
and hooks.

`Worker` (runtime.py) is a `Registry` that can also be configured and served; a `Registry` alone is
what `--handler module:worker` and `flowable-worker run-once` look for in a handler module, so
neither needs the serving side.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from flowable_worker.handlers import Handler
from flowable_worker.handlers.base import ErrorHook
from flowable_worker.handlers.python import HandlerFunction
from flowable_worker.hooks import Hook
from flowable_worker.topic_options import Duration, TopicOptions

F = TypeVar("F", bound=Callable[..., Any])
H = TypeVar("H", bound=Hook)
E = TypeVar("E", bound=ErrorHook)


class Registry:
    """Handlers per topic, per-topic options, the error hook and the startup and shutdown hooks."""

    def __init__(self) -> None:
        self._registered: dict[str, HandlerFunction | Handler] = {}
        self._options: dict[str, TopicOptions] = {}
        self._on_error: ErrorHook | None = None
        self._startup_hooks: list[Hook] = []
        self._shutdown_hooks: list[Hook] = []
        self._adopted: list[Registry] = []

    def topic(
        self,
        name: str,
        *,
        lock_duration: Duration | None = None,
        handler_timeout: Duration | None = None,
        fail_retries: int | None = None,
        fail_retry_timeout: Duration | None = None,
        concurrency: int | None = None,
        on_error: ErrorHook | None = None,
    ) -> Callable[[F], F]:
        """Decorator: run the decorated function (sync or async) for jobs of topic `name`.

        The keyword options override the worker's settings for this topic alone
        (`topic_options.py`); `concurrency` gives the topic slots of its own, outside the
        worker's `--concurrency`; `on_error(job, error)` decides what a handler exception becomes.
        """
        options = TopicOptions(
            lock_duration=lock_duration,
            handler_timeout=handler_timeout,
            fail_retries=fail_retries,
            fail_retry_timeout=fail_retry_timeout,
            concurrency=concurrency,
            on_error=on_error,
        )

        def register(function: F) -> F:
            self.add_handler(name, function, options=options)
            return function

        return register

    def add_handler(
        self,
        topic: str,
        handler: HandlerFunction | Handler,
        *,
        options: TopicOptions | None = None,
    ) -> None:
        """Handle `topic` with a Python function or any object with `async handle(job)`."""
        if not topic:
            raise ValueError("topic must not be empty")
        if topic in self._registered:
            raise ValueError(f"topic {topic!r} already has a handler")
        self._registered[topic] = handler
        if options is not None:
            self._options[topic] = options

    def on_error(self, hook: E) -> E:
        """Decorator: the error hook of every topic that has none of its own (see `ErrorHook`)."""
        self._on_error = hook
        return hook

    def on_startup(self, hook: H) -> H:
        """Decorator: run `hook()` (sync or async) once before the first acquire, e.g. to open a
        database pool. If it raises, the worker does not start."""
        self._startup_hooks.append(hook)
        return hook

    def on_shutdown(self, hook: H) -> H:
        """Decorator: run `hook()` (sync or async) once after the last job was reported or given
        back, e.g. to close what `on_startup` opened. Errors are logged, never raised."""
        self._shutdown_hooks.append(hook)
        return hook

    def topic_options(self, topic: str) -> TopicOptions:
        """The options registered for `topic` (empty ones when none were given)."""
        options = self._options.get(topic, TopicOptions())
        if options.on_error is None and self._on_error is not None:
            options = replace(options, on_error=self._on_error)
        return options

    @property
    def registered_topics(self) -> tuple[str, ...]:
        """Topics with a registered handler."""
        return tuple(self._registered)
    def handler_of(self, topic: str) -> HandlerFunction | Handler:
        """The handler registered for `topic`; KeyError when there is none."""
        return self._registered[topic]

    @property
    def startup_hooks(self) -> list[Hook]:
        """The `on_startup` hooks, in the order they run."""
        return list(self._startup_hooks)

    @property
    def shutdown_hooks(self) -> list[Hook]:
        """The `on_shutdown` hooks, in the order they run."""
        return list(self._shutdown_hooks)

    def adopt(self, other: Registry) -> None:
        """Take what `other` registered (a `--handler module:worker` target), once; this
        registry's own handlers, options and error hook win."""
        if any(other is adopted for adopted in self._adopted):
            return
        self._adopted.append(other)
        for topic, handler in other._registered.items():
            self._registered.setdefault(topic, handler)
        for topic in other._registered:
            if topic not in self._options:
                self._options[topic] = other.topic_options(topic)
        self._on_error = self._on_error or other._on_error
        self._startup_hooks = [*other._startup_hooks, *self._startup_hooks]
        self._shutdown_hooks = [*self._shutdown_hooks, *other._shutdown_hooks]
