"""Telling Flowable what became of a job, without ever reporting one twice.

The client never retries a POST, because only the caller knows whether a lost answer means "done".
Here is that decision: a complete (or fail, bpmnError, cmmnTerminate) whose request got no usable
answer (connection reset, timeout, 5xx) is sent again a bounded number of times while the lock
still holds, and on a repeat a 404 means "the earlier attempt landed" (the job no longer exists),
which counts as success. A 404 or 403 on the first attempt means the job is not ours any more
(another worker took it after our lock expired): nothing to report, the other worker finishes it.
So a result is applied at most once by Flowable, and at least once unless the lock runs out.

A 400 on complete/bpmnError/cmmnTerminate (unsupported variable, a BPMN error on a CMMN job)
would otherwise leave the job locked until it expires and then loop forever; it is turned into a
failed attempt with Flowable's message, so it shows up as an incident instead. That fail follows the
configured retry policy (`--fail-retries`, `--fail-retry-timeout`) like any handler failure: a job
whose result can never be stored is as broken as one whose handler raises, and with
`--fail-retries 0` it must reach the dead letters after one attempt, not after Flowable's default.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from flowable_worker.client import (
    BadRequestError,
    FlowableClient,
    FlowableError,
    FlowableHTTPError,
    ForbiddenError,
    JobNotFoundError,
    UnauthorizedError,
)
from flowable_worker.client.backoff import Backoff
from flowable_worker.job import Job
from flowable_worker.metrics import TopicMetrics, error_reason
from flowable_worker.results import Fail, Outcome

log = logging.getLogger("flowable_worker.reporting")

Reported = Literal["done", "lost", "gave_up"]


@dataclass(frozen=True)
class ReportPolicy:
    """How hard to try: waits doubling from `backoff_initial` to the max, until the job's lock ends.

    A result is worth keeping while the lock is ours: a Flowable restart or a rolling update of
    the engine takes tens of seconds, and a worker that gives up before it comes back leaves the
    job locked for the rest of its lock and runs the handler again later (a real Flowable restart
    in tests/worker/test_faults_real.py lost 4 of 60 results for 5 minutes after a fixed 8
    attempts). So by default retries go on until the lock's end; `attempts` caps them when no
    lock deadline is known, or everywhere when set.
    """

    attempts: int | None = None
    attempts_without_deadline: int = 8
    backoff_initial: float = 0.2
    backoff_max: float = 5.0


class Reporter:
    """Sends outcomes for one worker id through the shared client."""

    def __init__(
        self,
        client: FlowableClient,
        *,
        worker_id: str,
        policy: ReportPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        fail_retries: int | None = None,
        fail_retry_timeout: timedelta | str | None = None,
    ) -> None:
        self._client = client
        # The worker's retry policy, for the fail that replaces a result Flowable refused.
        self._fail_retries = fail_retries
        self._fail_retry_timeout = fail_retry_timeout
        self._worker_id = worker_id
        self._policy = policy or ReportPolicy()
        self._sleep = sleep
        self._clock = clock

    async def report(
        self,
        job: Job,
        outcome: Outcome,
        metrics: TopicMetrics,
        *,
        lock_deadline: float | None = None,
    ) -> Reported:
        """Send `outcome` for `job`; retries stop at `lock_deadline` (clock time): lock's end."""
        try:
            result = await self._send_with_retries(job, outcome, metrics, lock_deadline)
        except (TypeError, ValueError) as error:
            # Variables the client cannot convert (raised before anything is sent).
            if isinstance(outcome, Fail):
                raise
            return await self.report(
                job,
                Fail(
                    message=f"handler returned variables Flowable cannot store: {error}",
                    retries=self._fail_retries,
                    retry_timeout=self._fail_retry_timeout,
                    reason="rejected",
                ),
                metrics,
                lock_deadline=lock_deadline,
            )
        except BadRequestError as error:
            if isinstance(outcome, Fail):
                log.error(
                    "Flowable refused to fail job %s: %s", job.id, error,
                    extra={"job_id": job.id, "topic": job.topic},
                )
                return "gave_up"
            log.warning(
                "Flowable refused the %s for job %s (%s); failing it instead",
                outcome.call, job.id, error,
                extra={"job_id": job.id, "topic": job.topic},
            )
            return await self.report(
                job,
                Fail(
                    message=(
                        f"Flowable refused the {outcome.call}: {error.exception or error}"
                    ),
                    details=error.body or None,
                    retries=self._fail_retries,
                    retry_timeout=self._fail_retry_timeout,
                    reason="rejected",
                ),
                metrics,
                lock_deadline=lock_deadline,
            )
        if result == "done":
            outcome.count(metrics)
        return result

    async def _send_with_retries(
        self, job: Job, outcome: Outcome, metrics: TopicMetrics, lock_deadline: float | None
    ) -> Reported:
        call = outcome.call
        backoff = Backoff(
            initial=self._policy.backoff_initial, maximum=self._policy.backoff_max,
            jitter="equal",
        )
        cap = self._policy.attempts
        if cap is None:
            cap = self._policy.attempts_without_deadline if lock_deadline is None else sys.maxsize
        for attempt in range(cap):
            try:
                await outcome.send(self._client, job.id, self._worker_id)
                return "done"
            except JobNotFoundError:
                if attempt > 0:
                    log.info(
                        "job %s: earlier %s landed although its answer was lost", job.id, call,
                        extra={"job_id": job.id, "topic": job.topic},
                    )
                    return "done"
                metrics.report_error(call, "not_found")
                metrics.lost.inc()
                log.warning(
                    "job %s no longer exists; %s not applied", job.id, call,
                    extra={"job_id": job.id, "topic": job.topic},
                )
                return "lost"
            except ForbiddenError as error:
                if attempt > 0 and isinstance(outcome, Fail):
                    # A fail with a retryTimeout keeps the job locked without an owner: 403 on a
                    # repeat means the earlier attempt landed.
                    return "done"
                metrics.report_error(call, "forbidden")
                metrics.lost.inc()
                log.warning(
                    "job %s: lock lost before the %s (%s); another worker will take it",
                    job.id, call, error,
                    extra={"job_id": job.id, "topic": job.topic},
                )
                return "lost"
            except BadRequestError:
                metrics.report_error(call, "http_4xx")
                raise
            except FlowableError as error:
                if isinstance(error, FlowableHTTPError) and 400 <= error.status < 500 and not (
                    isinstance(error, UnauthorizedError) or error.status in (408, 429)
                ):
                    metrics.report_error(call, error_reason(error))
                    log.error(
                        "job %s: %s refused: %s", job.id, call, error,
                        extra={"job_id": job.id, "topic": job.topic},
                    )
                    return "gave_up"
                metrics.report_error(call, error_reason(error))
                delay = backoff.next_delay()
                last = attempt + 1 >= cap
                if not last and lock_deadline is not None:
                    last = self._clock() + delay >= lock_deadline
                if last:
                    log.error(
                        "job %s: giving up the %s after %d attempts (%s); the job returns to "
                        "Flowable when its lock expires",
                        job.id, call, attempt + 1, error,
                        extra={"job_id": job.id, "topic": job.topic},
                    )
                    return "gave_up"
                log.warning(
                    "job %s: %s failed (%s); retrying in %.2fs", job.id, call, error, delay,
                    extra={"job_id": job.id, "topic": job.topic},
                )
                await self._sleep(delay)
        return "gave_up"  # pragma: no cover - the loop always returns
