"""Job models read Flowable's camelCase JSON into typed, snake_case attributes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from flowable_worker import AcquiredJob, ExternalWorkerJob, Page
from tests.unit.client.conftest import job_json, page_json


def test_every_job_field_is_read_from_its_camel_case_name() -> None:
    job = ExternalWorkerJob.model_validate(
        job_json(scopeId="s", subScopeId="ss", scopeDefinitionId="sd", scopeType="cmmn",
                 exceptionMessage="boom", dueDate="2020-05-08T10:00:00Z")
    )  # fmt: skip

    assert job.model_dump() == {
        "id": "job-1",
        "url": "http://flowable.test/external-job-api/jobs/job-1",
        "correlation_id": "corr-1",
        "process_instance_id": "pi-1",
        "process_definition_id": "invoice:1:4",
        "execution_id": "ex-1",
        "scope_id": "s",
        "sub_scope_id": "ss",
        "scope_definition_id": "sd",
        "scope_type": "cmmn",
        "element_id": "checkTask",
        "element_name": "Check",
        "retries": 3,
        "exception_message": "boom",
        "due_date": datetime(2020, 5, 8, 10, 0, tzinfo=UTC),
        "create_time": datetime(2020, 5, 8, 9, 35, 45, 583000, tzinfo=UTC),
        "tenant_id": "",
        "lock_owner": "w1",
        "lock_expiration_time": datetime(2020, 5, 8, 9, 40, 45, tzinfo=UTC),
    }


@pytest.mark.parametrize(
    "text",
    [
        "2020-05-08T09:35:45.583Z",
        "2020-05-08T09:35:45.583+00:00",
        "2020-05-08T09:35:45.583+0000",
        "2020-05-08T11:35:45.583+02:00",
        "2020-05-08T09:35:45.583000000Z",
    ],
)
def test_job_dates_are_aware_utc_whatever_the_iso_spelling(text: str) -> None:
    job = ExternalWorkerJob.model_validate(job_json(createTime=text))

    assert job.create_time == datetime(2020, 5, 8, 9, 35, 45, 583000, tzinfo=UTC)
    assert job.create_time is not None
    assert job.create_time.tzinfo is UTC


def test_job_dates_without_millis_are_read() -> None:
    job = ExternalWorkerJob.model_validate(job_json(lockExpirationTime="2020-05-08T09:40:45Z"))

    assert job.lock_expiration_time == datetime(2020, 5, 8, 9, 40, 45, tzinfo=UTC)


def test_unknown_job_fields_from_a_newer_server_are_ignored() -> None:
    job = ExternalWorkerJob.model_validate(job_json(brandNewField=1))

    assert job.id == "job-1"


def test_an_acquired_job_without_variables_has_empty_ones() -> None:
    job = AcquiredJob.model_validate(job_json(variables=None))

    assert (job.variables, job.raw_variables) == ({}, [])


def test_an_acquired_job_keeps_wire_variables_raw_and_converts_them() -> None:
    job = AcquiredJob.model_validate(
        job_json(variables=[{"name": "due", "type": "localDate", "value": "2020-05-08"}])
    )

    assert job.raw_variables[0].value == "2020-05-08"
    assert job.variables["due"].isoformat() == "2020-05-08"


def test_a_page_reads_paging_fields() -> None:
    page = Page[ExternalWorkerJob].model_validate(page_json(job_json(), total=9))

    assert (page.total, page.start, page.size, page.sort, page.order) == (9, 0, 1, "id", "asc")
    assert isinstance(page.data[0], ExternalWorkerJob)
