"""The serving loop behind `Worker.serve`: acquire -> handle -> report, per topic, until stopped.

Shape of one process: one `FlowableClient` (one pooled connection set), one poller task per
topic (`poller.Poller`), one task per job, a shared pool of `concurrency` slots. Here: the start
(handlers, hooks, probes), the heartbeat, watching the pollers, and the stop.

Stopping (`stop()`, wired to SIGTERM/SIGINT by `shutdown`): pollers stop acquiring; an acquire
already in flight is allowed to finish (cancelling it would leave its jobs locked to us until the
lock expires) and what it returns is given back at once; running handlers get the grace period to
finish and report; whatever still runs then is cancelled and its job given back (no retry spent:
abandoning is not the job's fault). Finally, with nothing running, jobs still locked to us that we
never heard of (a lost acquire answer) are looked up and given back too (`give_back`).

A `Loop` serves once; the public `Worker` (runtime.py) builds one per `serve()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

from flowable_worker.client import FlowableClient
from flowable_worker.config import WorkerSettings
from flowable_worker.give_back import GiveBack
from flowable_worker.handler_threads import HandlerThreads
from flowable_worker.health import HealthState, ProbeServer
from flowable_worker.hooks import Hook, run_hooks
from flowable_worker.metrics import WorkerMetrics
from flowable_worker.metrics_access import read_token, server_tls_context
from flowable_worker.poller import Poller, Running
from flowable_worker.redaction import redact
from flowable_worker.reporting import ReportPolicy
from flowable_worker.resolution import TopicPlan
from flowable_worker.slots import Slots
from flowable_worker.topic_runtime import TopicRuntime, build_topics, client_for
from flowable_worker.transport import choose_transport

log = logging.getLogger("flowable_worker.runtime")

_HEARTBEAT_SECONDS = 1.0


@dataclass(eq=False)
class Loop:
    """Serves the planned topics once: start, poll and work until `stop()`, then drain."""

    settings: WorkerSettings
    plans: tuple[TopicPlan, ...]
    _: KW_ONLY
    metrics: WorkerMetrics
    client: FlowableClient | None
    report_policy: ReportPolicy | None
    startup_hooks: list[Hook]
    shutdown_hooks: list[Hook]
    health: HealthState = field(init=False)
    probe_port: int | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._stop_requested = asyncio.Event()
        self._force = asyncio.Event()
        self._running: dict[str, Running] = {}
        self._slots = Slots(self.settings.concurrency)
        self._threads: HandlerThreads | None = None
        self.health = HealthState(
            alive_within=10.0,
            ready_within=max(30.0, 3 * self.settings.poll_interval_max.total_seconds()),
        )

    @property
    def stopping(self) -> bool:
        """True once stop was requested."""
        return self._stop_requested.is_set()

    def stop(self) -> None:
        """Stop gracefully; a second call stops without waiting for handlers."""
        if self._stop_requested.is_set():
            log.warning("second stop request: abandoning running handlers now")
            self._force.set()
        else:
            log.info("stop requested: no more acquiring; draining")
        self._stop_requested.set()
        self.health.stopping = True

    async def run(self, ready: Callable[[], None] | None) -> None:
        """Work jobs until `stop()`, then shut down; returns once everything is handed back."""
        settings = self.settings
        threads = HandlerThreads()
        self._threads = threads
        owns_client = self.client is None
        client = self.client or client_for(settings)
        try:
            topics = build_topics(
                self.plans, settings, threads=threads, slots=self._slots,
                metrics=self.metrics, client=client, report_policy=self.report_policy,
            )
            capacity = settings.concurrency + sum(
                t.slots.capacity for t in topics if t.slots is not self._slots
            )
            self.metrics.capacity.set(capacity)
            self.health.hung_limit = capacity
            await run_hooks(self.startup_hooks, "startup", raise_errors=True)
        except BaseException:
            threads.shutdown()
            if owns_client:
                await client.aclose()
            raise
        probes = self._start_probes(settings)
        heartbeat = asyncio.create_task(self._heartbeat(), name="heartbeat")
        pollers = [self._start_poller(client, t) for t in topics]
        log.info(
            "worker %s started: flowable %s, transport %s, topics %s, concurrency %d, batch %d, "
            "lock %ss, handler timeout %ss",
            settings.worker_id,
            redact(settings.flowable_url),
            choose_transport(settings.http_client, settings.flowable_url)
            if owns_client else "of the given client",
            ",".join(t.topic for t in topics),
            settings.concurrency,
            settings.effective_batch_size,
            settings.lock_duration.total_seconds(),
            settings.effective_handler_timeout.total_seconds(),
            extra={"worker_id": settings.worker_id},
        )
        if ready is not None:
            ready()
        try:
            await self._stop_requested.wait()
            await self._drain(client, pollers, settings)
        finally:
            heartbeat.cancel()
            for task in pollers:
                task.cancel()
            await asyncio.gather(heartbeat, *pollers, return_exceptions=True)
            await run_hooks(self.shutdown_hooks, "shutdown", raise_errors=False)
            for t in topics:
                with contextlib.suppress(Exception):
                    await t.handler.aclose()
            threads.shutdown()
            if owns_client:
                await client.aclose()
            if probes is not None:
                probes.stop()
            log.info("worker %s stopped", settings.worker_id)

    def _start_probes(self, settings: WorkerSettings) -> ProbeServer | None:
        if settings.metrics_port == 0:
            return None
        tls = None
        if settings.metrics_tls_cert is not None:
            tls = server_tls_context(settings.metrics_tls_cert, settings.metrics_tls_key)
        token = None
        if settings.metrics_auth_token_file is not None:
            token = read_token(settings.metrics_auth_token_file)
        probes = ProbeServer(
            host=settings.metrics_host,
            port=settings.metrics_port,
            registry=self.metrics.registry,
            state=self.health,
            tls=tls,
            token=token,
        )
        probes.start()
        self.probe_port = probes.port
        return probes

    async def _heartbeat(self) -> None:
        while True:
            self.health.beat()
            hung = self._threads.hung if self._threads is not None else 0
            self.health.hung_handlers = hung
            self.metrics.handlers_hung.set(hung)
            await asyncio.sleep(_HEARTBEAT_SECONDS)

    def _start_poller(self, client: FlowableClient, topic: TopicRuntime) -> asyncio.Task[None]:
        """Start a topic's poller, watched: one that ends before stop is a bug made visible."""
        poller = Poller(
            topic, client, settings=self.settings, metrics=self.metrics, health=self.health,
            stop_requested=self._stop_requested, running=self._running,
        )
        task = asyncio.create_task(poller.run(), name=f"poll:{topic.topic}")
        self.metrics.pollers.inc()

        def ended(finished: asyncio.Task[None]) -> None:
            self.metrics.pollers.dec()
            if self.stopping:
                return
            cause = "cancelled" if finished.cancelled() else repr(finished.exception())
            self.health.poller_ended(topic.topic, cause)
            log.error(
                "the poller for topic %s ended while the worker runs (%s): this topic gets no "
                "more jobs from this process; /readyz now fails",
                topic.topic, cause, extra={"topic": topic.topic},
            )

        task.add_done_callback(ended)
        return task

    # -- shutdown ---------------------------------------------------------------------------

    @staticmethod
    async def _wait_until(
        tasks: set[asyncio.Task[None]], deadline: float, force: asyncio.Future[Any]
    ) -> None:
        """Wait until `tasks` are done, the deadline passes, or `force` fires."""
        pending = {t for t in tasks if not t.done()}
        while pending and not force.done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            await asyncio.wait({*pending, force}, timeout=remaining,
                               return_when=asyncio.FIRST_COMPLETED)
            pending = {t for t in pending if not t.done()}

    async def _drain(
        self, client: FlowableClient, pollers: list[asyncio.Task[None]], settings: WorkerSettings
    ) -> None:
        deadline = time.monotonic() + settings.grace_period.total_seconds()
        force = asyncio.ensure_future(self._force.wait())
        try:
            # Pollers finish an acquire in flight (bounded by the request timeout) and give
            # back what it returns; running jobs keep going meanwhile.
            await self._wait_until(set(pollers), deadline, force)
            while self._running and not self._force.is_set() and time.monotonic() < deadline:
                tasks = {r.task for r in self._running.values() if r.task is not None}
                log.info(
                    "waiting up to %.1fs for %d running jobs",
                    deadline - time.monotonic(),
                    len(tasks),
                )
                await self._wait_until(tasks, deadline, force)
        finally:
            force.cancel()
        for task in pollers:
            task.cancel()
        await asyncio.gather(*pollers, return_exceptions=True)
        abandoned = list(self._running.values())
        if abandoned:
            log.warning(
                "grace period over: abandoning %d jobs and giving them back", len(abandoned)
            )
        for running in abandoned:
            if running.task is not None:
                running.task.cancel()
        await asyncio.gather(
            *(r.task for r in abandoned if r.task is not None), return_exceptions=True
        )
        give_back = GiveBack(client, settings.worker_id)
        await asyncio.gather(*(
            give_back.job(r.job.id, r.job.scope_type, r.job.retries, r.metrics)
            for r in abandoned
        ))
        await give_back.strays(self.metrics)
