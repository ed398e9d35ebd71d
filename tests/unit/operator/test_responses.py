"""The engine's answers never reach status, conditions or Events, and none is read beyond the limit.

A pool's author picks the URL the operator fetches; whatever answers there must not come back in
the pool's status (readable with `view`). Each test plants a marker in what the "engine" answers
and looks for it in everything the operator would publish.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from flowable_worker import ClientSettings
from flowable_worker.client.errors import (
    FlowableTimeoutError,
    FlowableTransportError,
    InvalidResponseError,
    ServerError,
)
from flowable_worker_operator import metrics
from flowable_worker_operator.backlog import BacklogProber, ProbeError, Selector
from flowable_worker_operator.engines import Engine
from flowable_worker_operator.reconcile import Outcome, PoolState, Reconciler
from flowable_worker_operator.responses import (
    BoundedTransport,
    ResponseRefused,
    describe,
)
from tests.unit.operator.test_reconcile import FakeWorkload, body

MARKER = "INTERNAL-PAGE-7f3a"
ENGINE = Engine(ClientSettings(base_url="http://flowable.test", read_retries=0))
SELECTOR = Selector("check", process_definition_id="invoice:1:7")


def refused(reason: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "flowable_pool_responses_refused_total", {"reason": reason}
    )
    return value or 0.0


class Endless(httpx.AsyncByteStream):
    """A body that never ends, counting what was read of it."""

    def __init__(self, chunk: int = 64 * 1024) -> None:
        self.chunk = chunk
        self.read = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            self.read += self.chunk
            yield MARKER.encode() * (self.chunk // len(MARKER)) + b"x" * (self.chunk % len(MARKER))


def published(outcome: Outcome) -> str:
    """Everything a tick would write where `view` can read it: status and Events."""
    events = [f"{e.type} {e.reason} {e.message}" for e in outcome.events]
    return json.dumps(outcome.status) + "\n".join(events)


async def tick_with(handler: Any, *, spec: dict[str, Any] | None = None) -> Outcome:
    prober = BacklogProber(transport=httpx.MockTransport(handler))
    try:
        reconciler = Reconciler(workload=FakeWorkload(replicas=1), prober=prober)
        return await reconciler.tick(body(spec=spec), PoolState(), datetime.now(UTC))
    finally:
        await prober.aclose()


EXPLICIT = {"backlog": {"selectors": [{"elementId": "check", "processDefinitionId": "p:1:7"}]}}


# -- describe ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ServerError(status=500, message=MARKER, body=MARKER), "HTTP 500 Internal Server Error"),
        (ServerError(status=599, body=MARKER), "HTTP 599 (non-standard status)"),
        (InvalidResponseError(MARKER, body=MARKER), "the answer is not the JSON the API promises"),
        (FlowableTimeoutError(MARKER), "no answer in time (FlowableTimeoutError)"),
        (FlowableTransportError(MARKER), "no answer (FlowableTransportError)"),
        (httpx.ConnectError(MARKER), "no answer (ConnectError)"),
        (ResponseRefused("too_large", "the answer exceeds 4 MiB; not read"), "exceeds 4 MiB"),
        (RuntimeError(MARKER), "failed (RuntimeError)"),
    ],
)
def test_describe_uses_fixed_words_only(error: BaseException, expected: str) -> None:
    text = describe(error)
    assert expected in text
    assert MARKER not in text


def test_a_transport_failure_is_described_by_its_cause() -> None:
    error = FlowableTimeoutError(MARKER)
    error.__cause__ = httpx.ConnectTimeout(MARKER)
    assert describe(error) == "no answer in time (ConnectTimeout)"


# -- no body in status or Events -----------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(500, json={"message": MARKER, "exception": MARKER}),
        httpx.Response(502, text=f"<html>{MARKER}</html>"),
        httpx.Response(200, text=f"<html>{MARKER}</html>"),  # not JSON
        httpx.Response(200, json={"data": MARKER, "total": MARKER}),  # JSON of the wrong shape
        httpx.Response(401, text=MARKER),
    ],
)
async def test_a_counting_answer_never_reaches_status_or_events(answer: httpx.Response) -> None:
    outcome = await tick_with(lambda request: answer, spec=EXPLICIT)

    assert outcome.status["probe"]["lastError"]  # the failure is reported...
    assert MARKER not in published(outcome)  # ...in our words only


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(500, text=f"{MARKER} " * 100),
        httpx.Response(200, json={"rows": [MARKER], "size": MARKER}),
        httpx.Response(200, text=MARKER),
    ],
)
async def test_a_discovery_answer_never_reaches_status_or_events(answer: httpx.Response) -> None:
    outcome = await tick_with(lambda request: answer)  # no selectors: discovery lists definitions

    assert "process-definitions" in outcome.status["probe"]["lastError"]
    assert MARKER not in published(outcome)


async def test_the_status_says_what_failed_with_code_and_reason() -> None:
    outcome = await tick_with(lambda request: httpx.Response(503, text=MARKER), spec=EXPLICIT)
    error = outcome.status["probe"]["lastError"]
    assert "HTTP 503 Service Unavailable" in error
    assert "jobs of element 'check'" in error  # which request failed


async def test_the_body_goes_to_the_debug_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="flowable_worker_operator")
    await tick_with(lambda request: httpx.Response(500, text=MARKER), spec=EXPLICIT)
    assert any(MARKER in r.getMessage() and r.levelname == "DEBUG" for r in caplog.records)
    assert not any(MARKER in r.getMessage() and r.levelname != "DEBUG" for r in caplog.records)


# -- bounded reads --------------------------------------------------------------------------------


async def test_an_endless_body_is_refused_after_the_limit_not_read_to_the_end() -> None:
    body_stream = Endless()
    transport = BoundedTransport(
        httpx.MockTransport(lambda request: httpx.Response(200, stream=body_stream)),
        limit=1024 * 1024,
    )
    before = refused("too_large")
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(ResponseRefused, match="exceeds 1 MiB"):
            await client.get("http://flowable.test/jobs")
    assert body_stream.read <= 1024 * 1024 + body_stream.chunk
    assert refused("too_large") == before + 1


async def test_an_announced_huge_body_is_refused_before_reading_any_of_it() -> None:
    body_stream = Endless()
    headers = {"Content-Length": str(10 * 1024**3)}
    transport = BoundedTransport(
        httpx.MockTransport(
            lambda request: httpx.Response(200, headers=headers, stream=body_stream)
        )
    )
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(ResponseRefused, match="announces more than 4 MiB"):
            await client.get("http://flowable.test/jobs")
    assert body_stream.read == 0


async def test_a_compressed_answer_is_refused_and_identity_is_asked() -> None:
    seen: list[str] = []

    def gzip_anyway(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Accept-Encoding"])
        return httpx.Response(200, headers={"Content-Encoding": "gzip"}, content=b"\x1f\x8b")

    before = refused("compressed")
    async with httpx.AsyncClient(transport=BoundedTransport(httpx.MockTransport(gzip_anyway))) as c:
        with pytest.raises(ResponseRefused, match="compressed"):
            await c.get("http://flowable.test/jobs")
    assert seen == ["identity"]
    assert refused("compressed") == before + 1


async def test_an_answer_within_the_limit_reads_as_usual() -> None:
    transport = BoundedTransport(
        httpx.MockTransport(lambda request: httpx.Response(200, json={"total": 3})), limit=64
    )
    async with httpx.AsyncClient(transport=transport) as client:
        assert (await client.get("http://flowable.test/jobs")).json() == {"total": 3}


async def test_the_prober_refuses_a_huge_count_answer_as_a_probe_error() -> None:
    body_stream = Endless()
    prober = BacklogProber(
        transport=httpx.MockTransport(lambda request: httpx.Response(200, stream=body_stream))
    )
    errors_before = (
        metrics.REGISTRY.get_sample_value(
            "flowable_pool_probe_requests_total", {"kind": "count", "result": "error"}
        )
        or 0.0
    )
    try:
        with pytest.raises(ProbeError, match="exceeds 4 MiB") as caught:
            await prober.backlog(ENGINE, "t", [SELECTOR])
    finally:
        await prober.aclose()
    assert MARKER not in str(caught.value)
    # Two requests (unlocked, locked), each stopped just past the limit.
    assert body_stream.read <= 2 * (4 * 1024 * 1024 + body_stream.chunk)
    errors_after = metrics.REGISTRY.get_sample_value(
        "flowable_pool_probe_requests_total", {"kind": "count", "result": "error"}
    )
    assert errors_after is not None
    assert errors_after > errors_before


async def test_a_huge_model_is_refused_as_a_discovery_failure() -> None:
    def repository(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/resourcedata"):
            return httpx.Response(200, stream=Endless())
        if "case-definitions" in request.url.path:
            return httpx.Response(404)
        row = {"id": "p:1:7", "key": "p"}
        return httpx.Response(200, json={"data": [row], "total": 1})

    prober = BacklogProber(transport=httpx.MockTransport(repository))
    try:
        with pytest.raises(ProbeError, match="resourcedata: the answer exceeds 4 MiB"):
            await prober.backlog(ENGINE, "t")
    finally:
        await prober.aclose()


# -- what discovery may put into status ---------------------------------------------------------


async def test_a_listing_with_overlong_ids_is_not_a_page_of_definitions() -> None:
    def listing(request: httpx.Request) -> httpx.Response:
        if "case-definitions" in request.url.path:
            return httpx.Response(404)
        row = {"id": MARKER * 100, "key": "p"}
        return httpx.Response(200, json={"data": [row], "total": 1})

    outcome = await tick_with(listing)
    assert "not a page of definitions" in outcome.status["probe"]["lastError"]
    assert MARKER not in published(outcome)


async def test_many_expression_topics_keep_the_ready_message_short() -> None:
    expression = "${" + "x" * 5000 + "}"
    rows = [{"id": f"p:{n}:1", "key": f"p{n}"} for n in range(20)]

    def repository(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if "case-definitions" in path:
            return httpx.Response(404)
        if path.endswith("/resourcedata"):
            key = "p" + path.split("/")[-2].split(":")[1]
            return httpx.Response(
                200,
                text=(
                    '<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL" '
                    'xmlns:flowable="http://flowable.org/bpmn">'
                    f'<process id="{key}"><serviceTask id="t" flowable:type="external-worker" '
                    f'flowable:topic="{expression}"/></process></definitions>'
                ),
            )
        if "/jobs" in path:
            return httpx.Response(200, json={"data": [], "total": 0, "start": 0, "size": 1})
        return httpx.Response(200, json={"data": rows, "total": len(rows)})

    outcome = await tick_with(repository)
    ready = next(c for c in outcome.status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "TopicNotResolved"
    assert "20 external-worker element(s) whose topic is an expression" in ready["message"]
    assert len(ready["message"]) <= 1024
    assert "x" * 101 not in published(outcome)
