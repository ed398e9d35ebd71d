"""The worker runtime: acquire -> handle -> report, for several topics, until told to stop.

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
never heard of (a lost acquire answer) are looked up and given back too. "Given back" is a fail
with unchanged retries for BPMN jobs and an unacquire for CMMN jobs (see `_give_back`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from flowable_worker.backoff import Backoff
from flowable_worker.client import (
    FlowableClient,
    FlowableError,
    ForbiddenError,
    JobNotFoundError,
)
from flowable_worker.config import WorkerSettings
from flowable_worker.context import enter_job
from flowable_worker.handler_threads import HandlerThreads
from flowable_worker.handlers import CommandHandler, Handler, HttpHandler, PythonHandler
from flowable_worker.handlers.base import ErrorHook
from flowable_worker.handlers.python import HandlerFunction, import_callable
from flowable_worker.health import HealthState, ProbeServer
from flowable_worker.job import Job
from flowable_worker.metrics import TopicMetrics, WorkerMetrics, error_reason
from flowable_worker.metrics_access import read_token, server_tls_context
from flowable_worker.redaction import redact
from flowable_worker.reporting import Reporter, ReportPolicy
from flowable_worker.results import Fail, Outcome
from flowable_worker.slots import Slots
from flowable_worker.topic_options import Duration, ResolvedTopic, TopicOptions
from flowable_worker.transport import LeanTransport, choose_transport, tls_context

log = logging.getLogger("flowable_worker.runtime")

F = TypeVar("F", bound=Callable[..., Any])
Hook = Callable[[], Any]
"""A startup or shutdown hook: no arguments, sync or async."""
H = TypeVar("H", bound=Hook)
E = TypeVar("E", bound=ErrorHook)

_HEARTBEAT_SECONDS = 1.0
# How long a poller with some free slots waits for half a batch to be free before acquiring
# (see Slots.reserve): long enough to batch fast handlers, short against any real handler.
_GATHER_PATIENCE_SECONDS = 0.05
# At shutdown, how many locked jobs to look through for ones still locked to us.
_STRAY_SCAN_LIMIT = 2000
_STRAY_PAGE = 500


@dataclass
class _Running:
    """One job between acquire and report, and where it is in its life."""

    job: Job
    metrics: TopicMetrics
    task: asyncio.Task[None] | None = None
    phase: str = "pending"  # pending -> handling -> reporting


@dataclass
class _TopicRuntime:
    topic: str
    handler: Handler
    metrics: TopicMetrics
    empty_backoff: Backoff
    error_backoff: Backoff
    options: ResolvedTopic
    slots: Slots
    """The worker's shared slots, or the topic's own when it set a concurrency of its own."""
    reporter: Reporter | None = field(default=None)
    last_error: str | None = field(default=None)


def _client_for(settings: WorkerSettings) -> FlowableClient:
    """The process's one client: the lean transport unless `choose_transport` picks httpx's own.

    httpx's is used when `http_client` asks for it, and when a proxy from the environment
    (HTTP_PROXY/HTTPS_PROXY/ALL_PROXY, NO_PROXY honoured) applies to the Flowable URL: the lean
    transport speaks no proxy protocol and would silently go around the proxy.
    """
    client_settings = settings.client_settings()
    if choose_transport(settings.http_client, settings.flowable_url).kind == "httpx":
        return FlowableClient(client_settings)
    transport = LeanTransport(
        max_connections=client_settings.max_connections,
        ssl_context=tls_context(
            verify=client_settings.verify_tls,
            ca_bundle=client_settings.ca_bundle,
            client_cert=client_settings.client_cert,
            client_key=client_settings.client_key,
        ),
    )
    return FlowableClient(client_settings, transport=transport)


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
        self._stop_requested: asyncio.Event | None = None
        self._force: asyncio.Event | None = None
        self._running: dict[str, _Running] = {}
        self._slots = Slots(1)
        self._threads: HandlerThreads | None = None
        self.health = HealthState(alive_within=10.0, ready_within=30.0)
        self.probe_port: int | None = None
        self._started = False

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

    def _adopt(self, other: Worker) -> None:
        """Take what `other` registered (the CLI's `--handler module:worker` target)."""
        for topic, handler in other._registered.items():
            self._registered.setdefault(topic, handler)
        for topic in other._registered:
            if topic not in self._options:
                self._options[topic] = other.topic_options(topic)
        self._on_error = self._on_error or other._on_error
        self._startup_hooks = [*other._startup_hooks, *self._startup_hooks]
        self._shutdown_hooks = [*self._shutdown_hooks, *other._shutdown_hooks]

    @property
    def registered_topics(self) -> tuple[str, ...]:
        """Topics with a registered handler."""
        return tuple(self._registered)

    @property
    def settings(self) -> WorkerSettings:
        """The settings in force (set at construction or by `configure`)."""
        if self._settings is None:
            raise RuntimeError("the worker has no settings yet: pass them or call configure()")
        return self._settings

    def configure(self, settings: WorkerSettings) -> None:
        """Set the settings before serving (the CLI reads them after handlers registered)."""
        if self._started:
            raise RuntimeError("cannot reconfigure a running worker")
        self._settings = settings

    # -- lifecycle --------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the worker to stop gracefully; a second call stops without waiting for handlers."""
        if self._stop_requested is None or self._force is None:
            return
        if self._stop_requested.is_set():
            log.warning("second stop request: abandoning running handlers now")
            self._force.set()
        else:
            log.info("stop requested: no more acquiring; draining")
        self._stop_requested.set()
        self.health.stopping = True

    def run(self, argv: list[str] | None = None) -> int:
        """Read flags and environment, serve until SIGTERM/SIGINT; returns the exit code.

        For scripts that register handlers with `@worker.topic` and end with
        `raise SystemExit(worker.run())`.
        """
        from flowable_worker.cli import run

        return run(argv, self)

    @property
    def stopping(self) -> bool:
        """True once stop was requested."""
        return self._stop_requested is not None and self._stop_requested.is_set()

    async def serve(self, *, ready: Callable[[], None] | None = None) -> None:
        """Work jobs until `stop()`, then shut down; returns once everything is handed back.

        `ready` is called once pollers have started (tests use it to know when to send signals).
        """
        settings = self.settings
        if self._started:
            raise RuntimeError("a Worker serves once")
        self._started = True
        self._stop_requested = asyncio.Event()
        self._force = asyncio.Event()
        self.health = HealthState(
            alive_within=10.0,
            ready_within=max(30.0, 3 * settings.poll_interval_max.total_seconds()),
        )
        self._slots = Slots(settings.concurrency)
        threads = HandlerThreads()
        self._threads = threads
        try:
            topics = self._build_topics(settings, threads)
        except BaseException:
            threads.shutdown()
            raise
        capacity = settings.concurrency + sum(
            t.slots.capacity for t in topics if t.slots is not self._slots
        )
        self.metrics.capacity.set(capacity)
        self.health.hung_limit = capacity
        owns_client = self._client is None
        client = self._client or _client_for(settings)
        for t in topics:
            t.reporter = Reporter(
                client, worker_id=settings.worker_id, policy=self._report_policy,
                fail_retries=t.options.fail_retries,
                fail_retry_timeout=t.options.fail_retry_timeout,
            )
        try:
            await _run_hooks(self._startup_hooks, "startup", raise_errors=True)
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
            await _run_hooks(self._shutdown_hooks, "shutdown", raise_errors=False)
            for t in topics:
                with contextlib.suppress(Exception):
                    await t.handler.aclose()
            threads.shutdown()
            if owns_client:
                await client.aclose()
            if probes is not None:
                probes.stop()
            log.info("worker %s stopped", settings.worker_id)

    # -- set-up -----------------------------------------------------------------------------

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

    def _build_topics(
        self, settings: WorkerSettings, threads: HandlerThreads
    ) -> list[_TopicRuntime]:
        handlers: dict[str, Handler] = {}
        registered = dict(self._registered)
        if settings.handler is not None:
            target = import_callable(settings.handler)
            if isinstance(target, Worker):
                self._adopt(target)
                registered = dict(self._registered)
            elif callable(target):
                for topic in settings.topics:
                    registered.setdefault(topic, target)
            else:
                raise ValueError(f"handler {settings.handler!r} is neither callable nor a Worker")
        shared: Handler | None = None
        if settings.handler_url is not None:
            shared = HttpHandler(
                settings.handler_url,
                timeout_seconds=settings.effective_handler_timeout.total_seconds(),
                max_connections=settings.concurrency,
                fail_retries=settings.fail_retries,
                fail_retry_timeout=settings.fail_retry_timeout,
            )
        elif settings.handler_command is not None:
            shared = CommandHandler(
                settings.handler_command,
                fail_retries=settings.fail_retries,
                fail_retry_timeout=settings.fail_retry_timeout,
            )
        topics = list(settings.topics) or list(registered)
        resolved = {t: self.topic_options(t).resolve(t, settings) for t in topics}
        for topic in topics:
            given = registered.get(topic)
            if given is None:
                if shared is None:
                    raise ValueError(f"topic {topic!r} has no handler")
                handlers[topic] = shared
            elif not callable(given):
                handlers[topic] = given
            else:
                options = resolved[topic]
                handlers[topic] = PythonHandler(
                    given,
                    threads=threads,
                    fail_retries=options.fail_retries,
                    fail_retry_timeout=options.fail_retry_timeout,
                    on_error=options.on_error,
                )
        if not handlers:
            raise ValueError("no topic to work: give --topic or register handlers")
        result = []
        for topic, handler in handlers.items():
            options = resolved[topic]
            result.append(
                _TopicRuntime(
                    topic=topic,
                    handler=handler,
                    options=options,
                    slots=self._slots if options.concurrency is None
                    else Slots(options.concurrency),
                    metrics=TopicMetrics(self.metrics, topic),
                    empty_backoff=Backoff(
                        initial=settings.poll_interval_min.total_seconds(),
                        maximum=settings.poll_interval_max.total_seconds(),
                    ),
                    error_backoff=Backoff(
                        initial=min(0.5, settings.error_backoff_max.total_seconds()),
                        maximum=settings.error_backoff_max.total_seconds(),
                    ),
                )
            )
        return result

    # -- the loop ---------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        while True:
            self.health.beat()
            hung = self._threads.hung if self._threads is not None else 0
            self.health.hung_handlers = hung
            self.metrics.handlers_hung.set(hung)
            await asyncio.sleep(_HEARTBEAT_SECONDS)

    def _start_poller(self, client: FlowableClient, topic: _TopicRuntime) -> asyncio.Task[None]:
        """Start a topic's poller, watched: one that ends before stop is a bug made visible."""
        task = asyncio.create_task(self._poll(client, topic), name=f"poll:{topic.topic}")
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

    async def _poll(self, client: FlowableClient, topic: _TopicRuntime) -> None:
        """Acquire for one topic until stopping; never ends before that.

        Nothing Flowable does raises here (`_poll_once` catches it); an exception that escapes
        anyway is a bug of ours: it is logged with its traceback and counted, and polling goes on
        after a backoff, so one bad answer can never silence a topic for the process's lifetime.
        """
        assert self._stop_requested is not None
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

    async def _poll_once(self, client: FlowableClient, topic: _TopicRuntime) -> None:
        """Reserve slots, acquire up to that many jobs and start them (or back off)."""
        settings = self.settings
        assert self._stop_requested is not None
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
        assert self._stop_requested is not None
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

    async def _acquire_failed(self, topic: _TopicRuntime, error: BaseException) -> None:
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
        assert self._stop_requested is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_requested.wait(), seconds)

    def _start_job(self, topic: _TopicRuntime, job: Job, lock_deadline: float) -> None:
        running = _Running(job=job, metrics=topic.metrics)
        self._running[job.id] = running
        self.metrics.in_flight.inc()
        running.task = asyncio.create_task(
            self._work(topic, running, lock_deadline), name=f"job:{job.id}"
        )

    async def _work(self, topic: _TopicRuntime, running: _Running, lock_deadline: float) -> None:
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
            assert topic.reporter is not None
            await topic.reporter.report(job, outcome, topic.metrics, lock_deadline=lock_deadline)
        finally:
            self._running.pop(job.id, None)
            self.metrics.in_flight.dec()
            topic.slots.release(1)

    # -- shutdown ---------------------------------------------------------------------------

    async def _unacquire_unstarted(
        self, client: FlowableClient, topic: _TopicRuntime, jobs: list[Job]
    ) -> None:
        for job in jobs:
            await self._give_back(client, job.id, job.scope_type, job.retries, topic.metrics)
        topic.slots.release(len(jobs))

    async def _give_back(
        self,
        client: FlowableClient,
        job_id: str,
        scope_type: str | None,
        retries: int | None,
        metrics: TopicMetrics,
    ) -> None:
        """Hand a job we won't finish back to Flowable so another worker can take it at once.

        A BPMN job is failed with its retries unchanged rather than unacquired: external-worker
        tasks are exclusive by default, acquiring one also locks its process instance, and
        unacquire leaves that instance lock in place, so the job could not be acquired again until
        the original lock expires, and every acquire batch that includes it answers `[]` (see
        docs/flowable-server.md). A fail releases the instance lock; with `retries` unchanged it
        costs the job nothing. CMMN jobs have no such lock and are unacquired.
        """
        worker_id = self.settings.worker_id
        try:
            if scope_type == "cmmn" or retries is None:
                await client.unacquire_job(job_id, worker_id=worker_id)
            else:
                await client.fail_job(
                    job_id,
                    worker_id=worker_id,
                    error_message=f"given back unfinished: worker {worker_id} stopped",
                    retries=retries,
                )
            metrics.unacquired.inc()
            log.info("job %s given back unfinished", job_id, extra={"job_id": job_id})
        except (JobNotFoundError, ForbiddenError):
            # Already done (a report landed as we cancelled) or no longer ours.
            pass
        except FlowableError as error:
            metrics.report_error("unacquire", error_reason(error))
            log.warning(
                "job %s: giving it back failed (%s); it returns when its lock expires",
                job_id, error, extra={"job_id": job_id},
            )

    async def _give_back_strays(self, client: FlowableClient) -> None:
        """Give back jobs locked to us that we never heard of (an acquire answer that was lost).

        Flowable can't filter jobs by owner, so this pages through locked jobs (bounded) and
        picks ours; normally there are none.
        """
        worker_id = self.settings.worker_id
        metrics = TopicMetrics(self.metrics, "unknown")
        found: list[tuple[str, str | None, int | None]] = []
        try:
            for start in range(0, _STRAY_SCAN_LIMIT, _STRAY_PAGE):
                page = await client.list_jobs(locked=True, start=start, size=_STRAY_PAGE)
                found += [
                    (j.id, j.scope_type, j.retries) for j in page.data if j.lock_owner == worker_id
                ]
                if start + _STRAY_PAGE >= page.total:
                    break
        except FlowableError as error:
            log.warning("could not look for jobs still locked to %s: %s", worker_id, error)
            return
        for job_id, scope_type, retries in found:
            await self._give_back(client, job_id, scope_type, retries, metrics)

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
        assert self._force is not None
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
        await asyncio.gather(*(
            self._give_back(client, r.job.id, r.job.scope_type, r.job.retries, r.metrics)
            for r in abandoned
        ))
        await self._give_back_strays(client)


class WorkerStartupError(RuntimeError):
    """An `on_startup` hook failed: the worker did not start (the CLI exits 1 with one line)."""


async def _run_hooks(hooks: list[Hook], stage: str, *, raise_errors: bool) -> None:
    """Run startup or shutdown hooks in order, sync ones on the loop (they run once)."""
    for hook in hooks:
        name = getattr(hook, "__qualname__", repr(hook))
        try:
            returned = hook()
            if inspect.isawaitable(returned):
                await returned
        except Exception as error:
            if raise_errors:
                raise WorkerStartupError(
                    f"{stage} hook {name} failed: {type(error).__name__}: {error}"
                ) from error
            log.exception("%s hook %s failed", stage, name)

