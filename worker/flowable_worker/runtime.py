"""The public `Worker`: register handlers per topic, configure, then `run()` or `await serve()`.

This is the registration and configuration face of a worker and nothing else: which function
handles which topic (`topic`, `add_handler`), with which per-topic options, error hook and startup
and shutdown hooks, under which settings. `serve()` resolves all of that once (`resolution`) and
hands it to the loop that does the work (`loop.Loop`: acquire -> handle -> report until stopped).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from flowable_worker.client import FlowableClient
from flowable_worker.config import WorkerSettings
from flowable_worker.handlers import Handler
from flowable_worker.handlers.base import ErrorHook
from flowable_worker.handlers.python import HandlerFunction
from flowable_worker.health import HealthState
from flowable_worker.hooks import Hook, WorkerStartupError
from flowable_worker.loop import Loop
from flowable_worker.metrics import WorkerMetrics
from flowable_worker.reporting import ReportPolicy
from flowable_worker.resolution import TopicPlan, import_target, not_a_handler, plan_topics
from flowable_worker.topic_options import Duration, TopicOptions

__all__ = ["Hook", "Worker", "WorkerStartupError"]

F = TypeVar("F", bound=Callable[..., Any])
H = TypeVar("H", bound=Hook)
E = TypeVar("E", bound=ErrorHook)


class Worker:
    """A Flowable external worker: register handlers per topic, then `run()` or `await serve()`.

    ```python
    worker = Worker()

    @worker.topic("invoice-check")
    def check(job: Job) -> dict[str, object]:
        return {"approved": job.variables["amount"] < 1000}
    ```
    """

    def __init__(
        self,
        settings: WorkerSettings | None = None,
        *,
        client: FlowableClient | None = None,
        metrics: WorkerMetrics | None = None,
        report_policy: ReportPolicy | None = None,
    ) -> None:
        self._settings = settings
        self._client = client
        self.metrics = metrics or WorkerMetrics()
        self._report_policy = report_policy
        self._registered: dict[str, HandlerFunction | Handler] = {}
        self._options: dict[str, TopicOptions] = {}
        self._on_error: ErrorHook | None = None
        self._startup_hooks: list[Hook] = []
        self._shutdown_hooks: list[Hook] = []
        self._adopted: list[Worker] = []
        self._plans: tuple[TopicPlan, ...] | None = None
        self._loop: Loop | None = None
        self._idle_health = HealthState(alive_within=10.0, ready_within=30.0)

    # -- registration -----------------------------------------------------------------------
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

    # -- configuration ----------------------------------------------------------------------

    @property
    def settings(self) -> WorkerSettings:
        """The settings in force (set at construction or by `configure`)."""
        if self._settings is None:
            raise RuntimeError("the worker has no settings yet: pass them or call configure()")
        return self._settings

    def configure(self, settings: WorkerSettings) -> None:
        """Set the settings before serving, and resolve every topic's handler now.

        The CLI reads the settings after handlers registered and calls this before anything
        connects: a handler that cannot be imported, a topic without a handler or a per-topic
        option that cannot work is a `ConfigError` here. `settings.topics` becomes the topics that
        will be worked (`--topic`, else every registered one).
        """
        if self._started:
            raise RuntimeError("cannot reconfigure a running worker")
        self._plans = self._resolve(settings)
        self._settings = settings.model_copy(
            update={"topics": tuple(plan.topic for plan in self._plans)}
        )

    def _resolve(self, settings: WorkerSettings) -> tuple[TopicPlan, ...]:
        """Who handles each topic under `settings`; ConfigError when some topic has no one.

        `--handler module:worker` adds that `Worker`'s registrations to this one's (this one's
        own win); `--handler module:function` handles every topic without a handler of its own.
        """
        function: HandlerFunction | None = None
        if settings.handler is not None:
            target = import_target(settings.handler)
            if isinstance(target, Worker):
                self._adopt(target)
            elif callable(target):
                function = target
            else:
                raise not_a_handler(settings.handler)
        return plan_topics(settings, self._registered, self.topic_options, function)

    def _adopt(self, other: Worker) -> None:
        """Take what `other` registered (the CLI's `--handler module:worker` target), once."""
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

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def _started(self) -> bool:
        return self._loop is not None

    def run(self, argv: list[str] | None = None) -> int:
        """Read flags and environment, serve until SIGTERM/SIGINT; returns the exit code.

        For scripts that register handlers with `@worker.topic` and end with
        `raise SystemExit(worker.run())`.
        """
        from flowable_worker.cli import run

        return run(argv, self)

    async def serve(self, *, ready: Callable[[], None] | None = None) -> None:
        """Work jobs until `stop()`, then shut down; returns once everything is handed back.

        Raises `ConfigError` when a topic has no handler (see `configure`) and
        `WorkerStartupError` when an `on_startup` hook fails. `ready` is called once pollers have
        started (tests use it to know when to send signals).
        """
        settings = self.settings
        if self._started:
            raise RuntimeError("a Worker serves once")
        plans = self._plans if self._plans is not None else self._resolve(settings)
        self._loop = Loop(
            settings,
            plans,
            metrics=self.metrics,
            client=self._client,
            report_policy=self._report_policy,
            startup_hooks=self._startup_hooks,
            shutdown_hooks=self._shutdown_hooks,
        )
        await self._loop.run(ready)

    def stop(self) -> None:
        """Ask the worker to stop gracefully; a second call stops without waiting for handlers."""
        if self._loop is not None:
            self._loop.stop()

    @property
    def stopping(self) -> bool:
        """True once stop was requested."""
        return self._loop is not None and self._loop.stopping

    @property
    def health(self) -> HealthState:
        """What the probes answer: liveness, readiness and why."""
        return self._loop.health if self._loop is not None else self._idle_health

    @property
    def probe_port(self) -> int | None:
        """The port the metrics and probe server listens on, once serving (None without one)."""
        return self._loop.probe_port if self._loop is not None else None

