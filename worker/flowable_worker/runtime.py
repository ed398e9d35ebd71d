"""The public `Worker`: register handlers per topic, configure, then `run()` or `await serve()`.

The registration half (`topic`, `add_handler`, hooks, per-topic options) is `registry.Registry`;
this module adds the settings and the run: `configure` resolves every topic's handler once
(`resolution`), `serve` hands that plan to the loop that does the work (`loop.Loop`: acquire ->
handle -> report until stopped), `run` is the command line around `serve` (`command`).
"""

from __future__ import annotations

from collections.abc import Callable

from flowable_worker.client import FlowableClient
from flowable_worker.command import run_command
from flowable_worker.config import WorkerSettings
from flowable_worker.health import HealthState
from flowable_worker.hooks import Hook, WorkerStartupError
from flowable_worker.loop import Loop
from flowable_worker.metrics import WorkerMetrics
from flowable_worker.registry import Registry
from flowable_worker.reporting import ReportPolicy
from flowable_worker.resolution import TopicPlan, resolve

__all__ = ["Hook", "Worker", "WorkerStartupError"]


class Worker(Registry):
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
        super().__init__()
        self._settings = settings
        self._client = client
        self.metrics = metrics or WorkerMetrics()
        self._report_policy = report_policy
        self._plans: tuple[TopicPlan, ...] | None = None
        self._loop: Loop | None = None
        self._idle_health = HealthState(alive_within=10.0, ready_within=30.0)

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
        if self._loop is not None:
            raise RuntimeError("cannot reconfigure a running worker")
        self._plans = resolve(settings, self)
        self._settings = settings.model_copy(
            update={"topics": tuple(plan.topic for plan in self._plans)}
        )

    # -- running ----------------------------------------------------------------------------

    def run(self, argv: list[str] | None = None) -> int:
        """Read flags and environment, serve until SIGTERM/SIGINT; returns the exit code.

        For scripts that register handlers with `@worker.topic` and end with
        `raise SystemExit(worker.run())`.
        """
        return run_command(argv, self)

    async def serve(self, *, ready: Callable[[], None] | None = None) -> None:
        """Work jobs until `stop()`, then shut down; returns once everything is handed back.

        Raises `ConfigError` when a topic has no handler (see `configure`) and
        `WorkerStartupError` when an `on_startup` hook fails. `ready` is called once pollers have
        started (tests use it to know when to send signals).
        """
        settings = self.settings
        if self._loop is not None:
            raise RuntimeError("a Worker serves once")
        plans = self._plans if self._plans is not None else resolve(settings, self)
        self._loop = Loop(
            settings,
            plans,
            metrics=self.metrics,
            client=self._client,
            report_policy=self._report_policy,
            startup_hooks=self.startup_hooks,
            shutdown_hooks=self.shutdown_hooks,
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
