"""A scripted Flowable behind `httpx.MockTransport`: answers in order, records every request."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from flowable_worker import ClientSettings, FlowableClient

Answer = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]

BASE_URL = "http://flowable.test"
API = f"{BASE_URL}/external-job-api"


@dataclass
class ScriptedFlowable:
    """Plays back `answers` one per request; an Exception answer is raised as httpx would."""

    answers: list[Answer] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)

    def answer(self, *answers: Answer) -> None:
        self.answers.extend(answers)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self.answers:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer(request)
        return answer

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]

    def last_json(self) -> Any:
        return json.loads(self.last.content)


@dataclass
class SleepRecorder:
    """Stands in for asyncio.sleep so retries take no time and their waits can be checked."""

    waits: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def job_json(**overrides: Any) -> dict[str, Any]:
    """A job as Flowable 7.2 sends it."""
    job: dict[str, Any] = {
        "id": "job-1",
        "url": f"{API}/jobs/job-1",
        "correlationId": "corr-1",
        "processInstanceId": "pi-1",
        "processDefinitionId": "invoice:1:4",
        "executionId": "ex-1",
        "scopeId": None,
        "subScopeId": None,
        "scopeDefinitionId": None,
        "scopeType": None,
        "elementId": "checkTask",
        "elementName": "Check",
        "retries": 3,
        "exceptionMessage": None,
        "dueDate": None,
        "createTime": "2020-05-08T09:35:45.583Z",
        "tenantId": "",
        "lockOwner": "w1",
        "lockExpirationTime": "2020-05-08T09:40:45Z",
    }
    job.update(overrides)
    return job


def page_json(*jobs: dict[str, Any], total: int | None = None) -> dict[str, Any]:
    return {
        "data": list(jobs),
        "total": len(jobs) if total is None else total,
        "start": 0,
        "sort": "id",
        "order": "asc",
        "size": len(jobs),
    }


@pytest.fixture
def flowable() -> ScriptedFlowable:
    return ScriptedFlowable()


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def make_client(flowable: ScriptedFlowable, sleeps: SleepRecorder) -> Callable[..., FlowableClient]:
    """Build a client over the scripted Flowable; keyword arguments override settings."""

    def build(**settings: Any) -> FlowableClient:
        values: dict[str, Any] = {"base_url": BASE_URL, **settings}
        return FlowableClient(
            ClientSettings(**values), transport=httpx.MockTransport(flowable.handle), sleep=sleeps
        )

    return build


@pytest.fixture
async def client(make_client: Callable[..., FlowableClient]) -> AsyncIterator[FlowableClient]:
    async with make_client() as built:
        yield built
