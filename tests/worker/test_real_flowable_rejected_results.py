"""On a real Flowable 7.2: a result that cannot be stored is failed under the retry policy.

Issue 9: with `--fail-retries 0` a job whose variables Flowable could not store was still handed
out three times (the replacing fail let Flowable decrement from its default of 3). Here each job
must be handled exactly once and then sit in the dead letters, for both ways a result is refused:
variables the client can't convert (never sent), and a call Flowable answers with 400 (a BPMN
error on a CMMN job).
"""

from __future__ import annotations

from collections import Counter

import pytest

from flowable_worker.job import Job
from flowable_worker.results import BpmnError
from flowable_worker.runtime import Worker
from tests.support.real_flowable import RealFlowable

from .conftest import eventually, serving, worker_settings

pytestmark = pytest.mark.real_flowable


async def test_fail_retries_zero_dead_letters_a_refused_result_after_one_attempt(
    real_flowable: RealFlowable, topic: str
) -> None:
    unstorable = await real_flowable.create_jobs(topic, 2, variables={"kind": "set"})
    misdirected = await real_flowable.create_jobs(
        topic, 1, variables={"kind": "bpmnError"}, scope_type="cmmn"
    )
    handled: Counter[str] = Counter()

    def handler(job: Job) -> dict[str, object]:
        handled[job.id] += 1
        if job.variables["kind"] == "bpmnError":
            raise BpmnError("NOT_HERE")  # Flowable: 400, only BPMN jobs take a BPMN error
        return {"tags": {"a", "b"}}  # a set has no Flowable type: the client refuses it

    worker = Worker(worker_settings(real_flowable.base_url, topics=(topic,), fail_retries=0))
    worker.add_handler(topic, handler)
    created = [*unstorable, *misdirected]
    async with serving(worker):
        async def all_dead() -> bool:
            return len(await real_flowable.dead_letter_job_ids(created)) == len(created)

        await eventually(all_dead, within=30)
    assert sorted(handled.values()) == [1, 1, 1], handled
    async with real_flowable.api() as api:
        messages = [
            row["exceptionMessage"]
            for job in created
            for row in await api.dead_letter_jobs(job.instance_id, scope_type=job.scope_type)
        ]
    assert len(messages) == 3
    assert messages[0].startswith("handler returned variables Flowable cannot store")
    assert messages[2].startswith("Flowable refused the bpmnError")
