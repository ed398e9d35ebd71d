"""The serving loop behind `Worker.serve`: acquire -> handle -> report, per topic, until stopped.

Shape of one process: one `FlowableClient` (one pooled connection set), one poller task per
topic, one task per job, a shared pool of `concurrency` slots. A poller reserves
`min(free slots, batch)` slots, acquires that many jobs, gives back the slots the server did not
fill and starts a task per job at once. After a non-empty answer it polls again immediately
(bounded by free slots); after an empty one or an error it waits with jittered exponential backoff
up to a bound. No HTTP, network or parse failure ends a poller: it logs, counts and tries again.

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
from dataclasses import dataclass
from typing import Any

from flowable_worker.client import FlowableClient, FlowableError
from flowable_worker.config import WorkerSettings
from flowable_worker.context import enter_job
from flowable_worker.give_back import GiveBack
from flowable_worker.handler_threads import HandlerThreads
from flowable_worker.health import HealthState, ProbeServer
from flowable_worker.hooks import Hook, run_hooks
from flowable_worker.job import Job
from flowable_worker.metrics import TopicMetrics, WorkerMetrics, error_reason
from flowable_worker.metrics_access import read_token, server_tls_context
from flowable_worker.redaction import redact
from flowable_worker.reporting import ReportPolicy
from flowable_worker.resolution import TopicPlan
from flowable_worker.results import Fail, Outcome
from flowable_worker.slots import Slots
from flowable_worker.topic_runtime import TopicRuntime, build_topics, client_for
from flowable_worker.transport import choose_transport

log = logging.getLogger("flowable_worker.runtime")

_HEARTBEAT_SECONDS = 1.0
# How long a poller with some free slots waits for half a batch to be free before acquiring
# (see Slots.reserve): long enough to batch fast handlers, short against any real handler.
_GATHER_PATIENCE_SECONDS = 0.05


@dataclass
class _Running:
    """One job between acquire and report, and where it is in its life."""

    job: Job
    metrics: TopicMetrics
    task: asyncio.Task[None] | None = None
    phase: str = "pending"  # pending -> handling -> reporting


class Loop:
    """Serves the planned topics once: start, poll and work until `stop()`, then drain."""

    def __init__(
        self,
        settings: WorkerSettings,
        plans: tuple[TopicPlan, ...],
        *,
        metrics: WorkerMetrics,
        client: FlowableClient | None,
        report_policy: ReportPolicy | None,
        startup_hooks: list[Hook],
        shutdown_hooks: list[Hook],
    ) -> None:
        self._settings = settings
        self._plans = plans
        self._metrics = metrics
        self._client = client
        self._report_policy = report_policy
        self._startup_hooks = startup_hooks
        self._shutdown_hooks = shutdown_hooks
        self._stop_requested = asyncio.Event()
        self._force = asyncio.Event()
        self._running: dict[str, _Running] = {}
        self._slots = Slots(settings.concurrency)
        self._threads: HandlerThreads | None = None
        self.health = HealthState(
            alive_within=10.0,
            ready_within=max(30.0, 3 * settings.poll_interval_max.total_seconds()),
        )
        self.probe_port: int | None = None

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
        settings = self._settings
        threads = HandlerThreads()
        self._threads = threads
        owns_client = self._client is None
        client = self._client or client_for(settings)
        try:
            topics = build_topics(
                self._plans, settings, threads=threads, slots=self._slots,
                metrics=self._metrics, client=client, report_policy=self._report_policy,
            )
            capacity = settings.concurrency + sum(
                t.slots.capacity for t in topics if t.slots is not self._slots
            )
            self._metrics.capacity.set(capacity)
            self.health.hung_limit = capacity
            await run_hooks(self._startup_hooks, "startup", raise_errors=True)
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
            await run_hooks(self._shutdown_hooks, "shutdown", raise_errors=False)
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
            registry=self._metrics.registry,
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
            self._metrics.handlers_hung.set(hung)
            await asyncio.sleep(_HEARTBEAT_SECONDS)

    # -- polling ----------------------------------------------------------------------------
    def _start_poller(self, client: FlowableClient, topic: TopicRuntime) -> asyncio.Task[None]:
        """Start a topic's poller, watched: one that ends before stop is a bug made visible."""
        task = asyncio.create_task(self._poll(client, topic), name=f"poll:{topic.topic}")
        self._metrics.pollers.inc()

        def ended(finished: asyncio.Task[None]) -> None:
            self._metrics.pollers.dec()
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

    async def _poll(self, client: FlowableClient, topic: TopicRuntime) -> None:
        """Acquire for one topic until stopping; never ends before that.

        Nothing Flowable does raises here (`_poll_once` catches it); an exception that escapes
        anyway is a bug of ours: it is logged with its traceback and counted, and polling goes on
        after a backoff, so one bad answer can never silence a topic for the process's lifetime.
        """
        while not self._stop_requested.is_set():
            try:
                await self._poll_once(client, topic)
            except Exception as error:
                topic.metrics.poller_error()
                log.exception(
                    "unexpected error in the poller for %s; polling on", topic.topic,
                    extra={"topic": topic.topic},
                )
                await self._acquire_failed(topic, error)

    async def _poll_once(self, client: FlowableClient, topic: TopicRuntime) -> None:
        """Reserve slots, acquire up to that many jobs and start them (or back off)."""
        settings = self._settings
        slots = topic.slots
        batch = min(settings.effective_batch_size, slots.capacity)
        lock_seconds = topic.options.lock_duration.total_seconds()
        reserved = await self._reserve(slots, batch)
        if reserved == 0:  # only when stop was requested while waiting
            return
        topic.metrics.acquire_requests.inc()
        started = time.monotonic()
        try:
            acquired = await client.acquire_jobs(
                topic=topic.topic,
                worker_id=settings.worker_id,
                lock_duration=topic.options.lock_duration,
                number_of_tasks=reserved,
                scope_type=settings.scope_type,
            )
        except FlowableError as error:
            slots.release(reserved)
            await self._acquire_failed(topic, error)
            return
        except BaseException:
            # Anything else (a bug, or cancellation): the slots go back before it propagates.
            slots.release(reserved)
            raise
        lock_deadline = started + lock_seconds
        topic.metrics.acquire_latency.observe(time.monotonic() - started)
        self.health.flowable_answered()
        topic.error_backoff.reset()
        if topic.last_error is not None:
            log.info("acquiring for %s works again", topic.topic)
            topic.last_error = None
        if len(acquired) > reserved:
            log.warning(
                "Flowable returned %d jobs for %d asked; handling them all",
                len(acquired), reserved,
            )
        else:
            slots.release(reserved - len(acquired))
        if not acquired:
            topic.metrics.empty_polls.inc()
            await self._pause(topic.empty_backoff.next_delay())
            return
        topic.empty_backoff.reset()
        topic.metrics.acquired.inc(len(acquired))
        try:
            jobs = [
                Job.from_acquired(a, topic=topic.topic, worker_id=settings.worker_id)
                for a in acquired
            ]
        except BaseException:
            slots.release(min(reserved, len(acquired)))
            raise
        if self._stop_requested.is_set():
            # Acquired while we were asked to stop: give them back unstarted.
            await self._unacquire_unstarted(client, topic, jobs)
            return
        for job in jobs:
            self._start_job(topic, job, lock_deadline)

    async def _reserve(self, slots: Slots, batch: int) -> int:
        """Reserve slots, or 0 when stop is requested while waiting for them."""
        gather = max(1, batch // 2)
        if slots.free >= gather:
            return await slots.reserve(batch)
        reserve = asyncio.ensure_future(
            slots.reserve(batch, gather=gather, patience=_GATHER_PATIENCE_SECONDS)
        )
        stop = asyncio.ensure_future(self._stop_requested.wait())
        await asyncio.wait({reserve, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if reserve.done():
            taken = reserve.result()
            if self._stop_requested.is_set():
                slots.release(taken)
                return 0
            return taken
        reserve.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reserve
        if not reserve.cancelled():
            slots.release(reserve.result())
        return 0

    async def _acquire_failed(self, topic: TopicRuntime, error: BaseException) -> None:
        reason = error_reason(error)
        topic.metrics.acquire_error(reason)
        delay = topic.error_backoff.next_delay()
        message = f"{type(error).__name__}: {error}"
        if message != topic.last_error:
            log.warning(
                "acquire for %s failed (%s); retrying in %.2fs", topic.topic, message, delay,
                extra={"topic": topic.topic, "reason": reason},
            )
            topic.last_error = message
        else:
            log.debug("acquire for %s failed again (%s)", topic.topic, reason)
        await self._pause(delay)

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when stop is requested."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_requested.wait(), seconds)

    def _start_job(self, topic: TopicRuntime, job: Job, lock_deadline: float) -> None:
        running = _Running(job=job, metrics=topic.metrics)
        self._running[job.id] = running
        self._metrics.in_flight.inc()
        running.task = asyncio.create_task(
            self._work(topic, running, lock_deadline), name=f"job:{job.id}"
        )

    async def _work(self, topic: TopicRuntime, running: _Running, lock_deadline: float) -> None:
        job = running.job
        options = topic.options
        timeout = options.handler_timeout.total_seconds()
        enter_job(job)  # current_job() for the handler (this task's own context)
        try:
            running.phase = "handling"
            started = time.monotonic()
            outcome: Outcome
            try:
                # asyncio.timeout, not wait_for: no extra task per job.
                async with asyncio.timeout(timeout):
                    outcome = await topic.handler.handle(job)
            except TimeoutError:
                outcome = Fail(
                    message=f"handler timed out after {timeout:g}s",
                    retries=options.fail_retries,
                    retry_timeout=options.fail_retry_timeout,
                    reason="timeout",
                )
                log.warning(
                    "job %s: handler timed out after %gs; failing the job", job.id, timeout,
                    extra={"job_id": job.id, "topic": job.topic},
                )
            except Exception as error:
                outcome = Fail(
                    message=f"{type(error).__name__}: {error}",
                    retries=options.fail_retries,
                    retry_timeout=options.fail_retry_timeout,
                )
            topic.metrics.handled(outcome.label, time.monotonic() - started)
            if isinstance(outcome, Fail) and outcome.reason != "timeout":
                log.info(
                    "job %s failed: %s", job.id, outcome.message,
                    extra={"job_id": job.id, "topic": job.topic, "reason": outcome.reason},
                )
            running.phase = "reporting"
            await topic.reporter.report(job, outcome, topic.metrics, lock_deadline=lock_deadline)
        finally:
            self._running.pop(job.id, None)
            self._metrics.in_flight.dec()
            topic.slots.release(1)

    # -- shutdown ---------------------------------------------------------------------------

    async def _unacquire_unstarted(
        self, client: FlowableClient, topic: TopicRuntime, jobs: list[Job]
    ) -> None:
        give_back = GiveBack(client, self._settings.worker_id)
        for job in jobs:
            await give_back.job(job.id, job.scope_type, job.retries, topic.metrics)
        topic.slots.release(len(jobs))

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
        await give_back.strays(self._metrics)
