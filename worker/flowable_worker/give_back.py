"""Handing jobs we will not finish back to Flowable, so another worker can take them at once.

Used when stopping: jobs acquired after stop was asked, jobs still running when the grace period
ends, and jobs locked to us that we never heard of (an acquire whose answer was lost).
"""

from __future__ import annotations

import logging

from flowable_worker.client import FlowableClient, FlowableError, ForbiddenError, JobNotFoundError
from flowable_worker.metrics import TopicMetrics, WorkerMetrics, error_reason

log = logging.getLogger("flowable_worker.runtime")

# At shutdown, how many locked jobs to look through for ones still locked to us.
_STRAY_SCAN_LIMIT = 2000
_STRAY_PAGE = 500


class GiveBack:
    """Gives jobs back for one worker id through the worker's client."""

    def __init__(self, client: FlowableClient, worker_id: str) -> None:
        self._client = client
        self._worker_id = worker_id

    async def job(
        self, job_id: str, scope_type: str | None, retries: int | None, metrics: TopicMetrics
    ) -> None:
        """Hand a job we won't finish back to Flowable so another worker can take it at once.

        A BPMN job is failed with its retries unchanged rather than unacquired: external-worker
        tasks are exclusive by default, acquiring one also locks its process instance, and
        unacquire leaves that instance lock in place, so the job could not be acquired again until
        the original lock expires, and every acquire batch that includes it answers `[]`. A fail
        releases the instance lock; with `retries` unchanged it costs the job nothing. CMMN jobs
        have no such lock and are unacquired.
        """
        client, worker_id = self._client, self._worker_id
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

    async def strays(self, metrics: WorkerMetrics) -> None:
        """Give back jobs locked to us that we never heard of (an acquire answer that was lost).

        Flowable can't filter jobs by owner, so this pages through locked jobs (bounded) and
        picks ours; normally there are none.
        """
        worker_id = self._worker_id
        topic_metrics = TopicMetrics(metrics, "unknown")
        found: list[tuple[str, str | None, int | None]] = []
        try:
            for start in range(0, _STRAY_SCAN_LIMIT, _STRAY_PAGE):
                page = await self._client.list_jobs(locked=True, start=start, size=_STRAY_PAGE)
                found += [
                    (j.id, j.scope_type, j.retries) for j in page.data if j.lock_owner == worker_id
                ]
                if start + _STRAY_PAGE >= page.total:
                    break
        except FlowableError as error:
            log.warning("could not look for jobs still locked to %s: %s", worker_id, error)
            return
        for job_id, scope_type, retries in found:
            await self.job(job_id, scope_type, retries, topic_metrics)
