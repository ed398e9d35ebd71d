"""One topic's poller: reserve slots, acquire that many jobs, run each as a task, report it.

A poller reserves `min(free slots, batch)` slots, acquires that many jobs, gives back the slots the
server did not fill and starts a task per job at once. After a non-empty answer it polls again
immediately (bounded by free slots); after an empty one or an error it waits with jittered
exponential backoff up to a bound. No HTTP, network or parse failure ends a poller: it logs,
counts and tries again. Jobs acquired while stopping are given back unstarted.

Each job task runs the handler under the topic's handler timeout (a timeout or an exception from a
handler object becomes a `Fail`) and hands the outcome to the topic's `Reporter`. Running jobs are
kept in a table the `Loop` shares, so its drain can wait for them or give them back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import KW_ONLY, dataclass

from flowable_worker.client import FlowableClient, FlowableError
from flowable_worker.config import WorkerSettings
from flowable_worker.context import enter_job
from flowable_worker.give_back import GiveBack
from flowable_worker.health import HealthState
from flowable_worker.job import Job
from flowable_worker.metrics import TopicMetrics, WorkerMetrics, error_reason
from flowable_worker.results import Fail, Outcome
from flowable_worker.slots import Slots
from flowable_worker.topic_runtime import TopicRuntime

log = logging.getLogger("flowable_worker.runtime")

# How long a poller with some free slots waits for half a batch to be free before acquiring
# (see Slots.reserve): long enough to batch fast handlers, short against any real handler.
_GATHER_PATIENCE_SECONDS = 0.05


@dataclass
class Running:
    """One job between acquire and report, and where it is in its life."""

    job: Job
    metrics: TopicMetrics
    task: asyncio.Task[None] | None = None
    phase: str = "pending"  # pending -> handling -> reporting


@dataclass(eq=False)
class Poller:
    """Acquires for one topic until stop is requested, and runs each job it gets.

    What it shares with the loop that made it: the client, the settings and metrics, the health
    it beats, the stop flag it watches and the jobs running (by id) it adds to and removes from.
    """

    topic: TopicRuntime
    client: FlowableClient
    _: KW_ONLY
    settings: WorkerSettings
    metrics: WorkerMetrics
    health: HealthState
    stop_requested: asyncio.Event
    running: dict[str, Running]

    async def run(self) -> None:
        """Acquire for the topic until stopping; never ends before that.

        Nothing Flowable does raises here (`_poll_once` catches it); an exception that escapes
        anyway is a bug of ours: it is logged with its traceback and counted, and polling goes on
        after a backoff, so one bad answer can never silence a topic for the process's lifetime.
        """
        topic = self.topic
        while not self.stop_requested.is_set():
            try:
                await self._poll_once()
            except Exception as error:
                topic.metrics.poller_error()
                log.exception(
                    "unexpected error in the poller for %s; polling on", topic.topic,
                    extra={"topic": topic.topic},
                )
                await self._acquire_failed(error)

    async def _poll_once(self) -> None:
        """Reserve slots, acquire up to that many jobs and start them (or back off)."""
        client, topic = self.client, self.topic
        settings = self.settings
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
            await self._acquire_failed(error)
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
        if self.stop_requested.is_set():
            # Acquired while we were asked to stop: give them back unstarted.
            await self._unacquire_unstarted(jobs)
            return
        for job in jobs:
            self._start_job(job, lock_deadline)

    async def _reserve(self, slots: Slots, batch: int) -> int:
        """Reserve slots, or 0 when stop is requested while waiting for them."""
        gather = max(1, batch // 2)
        if slots.free >= gather:
            return await slots.reserve(batch)
        reserve = asyncio.ensure_future(
            slots.reserve(batch, gather=gather, patience=_GATHER_PATIENCE_SECONDS)
        )
        stop = asyncio.ensure_future(self.stop_requested.wait())
        await asyncio.wait({reserve, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if reserve.done():
            taken = reserve.result()
            if self.stop_requested.is_set():
                slots.release(taken)
                return 0
            return taken
        reserve.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reserve
        if not reserve.cancelled():
            slots.release(reserve.result())
        return 0

    async def _acquire_failed(self, error: BaseException) -> None:
        topic = self.topic
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
            await asyncio.wait_for(self.stop_requested.wait(), seconds)

    def _start_job(self, job: Job, lock_deadline: float) -> None:
        running = Running(job=job, metrics=self.topic.metrics)
        self.running[job.id] = running
        self.metrics.in_flight.inc()
        running.task = asyncio.create_task(
            self._work(running, lock_deadline), name=f"job:{job.id}"
        )

    async def _work(self, running: Running, lock_deadline: float) -> None:
        """Run the handler for one job under its timeout, then report what it decided."""
        topic, job = self.topic, running.job
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
                    reason="handler",
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
            self.running.pop(job.id, None)
            self.metrics.in_flight.dec()
            topic.slots.release(1)

    async def _unacquire_unstarted(self, jobs: list[Job]) -> None:
        """Give back jobs acquired while stop was asked, unstarted."""
        give_back = GiveBack(self.client, self.settings.worker_id)
        for job in jobs:
            await give_back.job(job.id, job.scope_type, job.retries, self.topic.metrics)
        self.topic.slots.release(len(jobs))
