"""The JSON answer protocol of HTTP and command handlers."""

from __future__ import annotations

import pytest

from flowable_worker import TypedValue
from flowable_worker.handlers.protocol import ProtocolError, parse_answer
from flowable_worker.results import BpmnError, CmmnTerminate, Complete, Fail


def test_an_empty_answer_completes_without_variables() -> None:
    assert parse_answer(b"") == Complete()
    assert parse_answer(b"{}") == Complete()


def test_complete_with_plain_json_variables() -> None:
    assert parse_answer(b'{"result":"complete","variables":{"ok":true,"n":3}}') == Complete(
        variables={"ok": True, "n": 3}
    )


def test_typed_variables_keep_their_flowable_type() -> None:
    outcome = parse_answer(
        b'{"variables":[{"name":"when","type":"localDate","value":"2024-05-01"},'
        b'{"name":"s","type":"short","value":7}]}'
    )
    assert isinstance(outcome, Complete)
    assert outcome.variables["s"] == TypedValue(7, "short")
    assert outcome.variables["when"].type == "localDate"


def test_bpmn_error_needs_a_code() -> None:
    assert parse_answer(b'{"result":"bpmnError","errorCode":"E1"}') == BpmnError("E1")
    with pytest.raises(ProtocolError, match="errorCode"):
        parse_answer(b'{"result":"bpmnError"}')


def test_fail_carries_message_details_retries_and_timeout() -> None:
    outcome = parse_answer(
        b'{"result":"fail","errorMessage":"m","errorDetails":"d","retries":0,"retryTimeout":"PT1M"}'
    )
    assert outcome == Fail(message="m", details="d", retries=0, retry_timeout="PT1M")


def test_cmmn_terminate() -> None:
    answer = b'{"result":"cmmnTerminate","variables":{"a":1}}'
    assert parse_answer(answer) == CmmnTerminate({"a": 1})


@pytest.mark.parametrize(
    "body", [b"not json", b"[1,2]", b'{"result":"explode"}', b'{"variables":3}',
             b'{"result":"fail","retries":"two"}']
)
def test_malformed_answers_are_protocol_errors(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_answer(body)
