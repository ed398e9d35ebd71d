"""The four outcomes: one name each, the request each sends, and the old names still importable."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

import flowable_worker
from flowable_worker import BpmnError, CmmnTerminate, Complete, Fail
from flowable_worker.metrics import TopicMetrics, WorkerMetrics
from flowable_worker.results import Outcome


class RecordingClient:
    """Stands in for `FlowableClient`: records which call each outcome makes, with what."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        async def call(job_id: str, **kwargs: Any) -> None:
            self.calls.append((name, job_id, kwargs))

        return call


@pytest.mark.parametrize(
    ("outcome", "method", "arguments"),
    [
        (Complete({"a": 1}), "complete_job", {"variables": {"a": 1}}),
        (Complete(), "complete_job", {"variables": None}),
        (BpmnError("E1", {"b": 2}), "bpmn_error", {"error_code": "E1", "variables": {"b": 2}}),
        (CmmnTerminate(), "cmmn_terminate", {"variables": None}),
        (
            Fail("m", "d", retries=0, retry_timeout="PT1M"),
            "fail_job",
            {"error_message": "m", "error_details": "d", "retries": 0, "retry_timeout": "PT1M"},
        ),
    ],
)
async def test_each_outcome_sends_its_own_request(
    outcome: Outcome, method: str, arguments: dict[str, Any]
) -> None:
    client = RecordingClient()
    await outcome.send(client, "job-1", "worker-1")  # type: ignore[arg-type]
    assert client.calls == [(method, "job-1", {"worker_id": "worker-1", **arguments})]


@pytest.mark.parametrize(
    ("outcome", "call", "label", "series"),
    [
        (Complete(), "complete", "complete", ("jobs_completed_total", {})),
        (BpmnError("E1"), "bpmnError", "bpmn_error", ("jobs_bpmn_errors_total", {})),
        (CmmnTerminate(), "cmmnTerminate", "cmmn_terminate", ("jobs_cmmn_terminated_total", {})),
        (Fail("m"), "fail", "fail", ("jobs_failed_total", {"reason": "signal"})),
        (
            Fail("m", reason="timeout"), "fail", "fail",
            ("jobs_failed_total", {"reason": "timeout"}),
        ),
    ],
)
def test_each_outcome_names_its_call_and_label_and_counts_itself(
    outcome: Outcome, call: str, label: str, series: tuple[str, dict[str, str]]
) -> None:
    metrics = WorkerMetrics()
    outcome.count(TopicMetrics(metrics, "t"))
    name, labels = series
    assert (outcome.call, outcome.label) == (call, label)
    assert metrics.registry.get_sample_value(
        "flowable_worker_" + name, {"topic": "t", **labels}
    ) == 1


def test_two_fails_asking_the_same_of_flowable_are_equal_whatever_their_reason() -> None:
    assert Fail("m", retries=1, reason="handler") == Fail("m", retries=1)
    assert Fail("m", retries=1) != Fail("m", retries=2)
    assert BpmnError("E1") != Fail("E1")
    assert hash(Fail("m", reason="handler")) == hash(Fail("m"))


@pytest.mark.parametrize(
    ("old", "current"),
    [("ThrowBpmnError", BpmnError), ("FailJob", Fail), ("Terminate", CmmnTerminate)],
)
def test_the_old_names_still_import_with_a_deprecation_warning(old: str, current: type) -> None:
    results = importlib.import_module("flowable_worker.results")
    with pytest.warns(DeprecationWarning, match=f"results.{old} is deprecated: use "):
        assert getattr(results, old) is current
    assert old not in flowable_worker.__all__
    assert old not in results.__all__


def test_an_unknown_name_is_still_an_attribute_error() -> None:
    results = importlib.import_module("flowable_worker.results")
    with pytest.raises(AttributeError):
        results.Nothing  # noqa: B018


def test_the_package_exports_one_name_per_outcome() -> None:
    outcomes = {"Complete", "BpmnError", "Fail", "CmmnTerminate"}
    assert outcomes <= set(flowable_worker.__all__)
