"""The JSON answer language shared by HTTP and command handlers (documented in docs/worker.md).

A handler outside Python receives `Job.to_json()` and answers with one JSON object:

    {}  or no body                                   -> complete, no variables
    {"result": "complete", "variables": {...}}       -> complete
    {"result": "bpmnError", "errorCode": "E1", "variables": {...}}
    {"result": "fail", "errorMessage": "...", "errorDetails": "...",
     "retries": 2, "retryTimeout": "PT1M"}
    {"result": "cmmnTerminate", "variables": {...}}

`variables` is either an object of name -> plain JSON value (strings, numbers, booleans, objects
and lists, converted as for a Python handler) or a list of Flowable typed variables
`[{"name", "type", "value"}]` for types JSON cannot express (dates, bigDecimal, short...).
An answer that breaks these rules fails the job (reason `protocol`): a broken handler must show up
as an incident, not as a silently completed task.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from flowable_worker.results import BpmnError, CmmnTerminate, Complete, Fail, Outcome


class ProtocolError(ValueError):
    """The handler's answer is not valid under the JSON protocol."""


def parse_answer(body: bytes | str) -> Outcome:
    """Turn a handler's JSON answer into an outcome; raises `ProtocolError` when it is malformed."""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    if not text.strip():
        return Complete()
    try:
        answer = json.loads(text)
    except json.JSONDecodeError as error:
        raise ProtocolError(f"answer is not JSON: {error}") from None
    if not isinstance(answer, dict):
        raise ProtocolError(f"answer must be a JSON object, got {type(answer).__name__}")
    return outcome_of_answer(answer)


def outcome_of_answer(answer: dict[str, Any]) -> Outcome:
    """Map a decoded answer object to an outcome."""
    result = answer.get("result", "complete")
    if result == "complete":
        return Complete(variables=_variables(answer))
    if result == "bpmnError":
        code = answer.get("errorCode")
        if not isinstance(code, str) or not code:
            raise ProtocolError("result bpmnError needs a non-empty string errorCode")
        return BpmnError(code=code, variables=_variables(answer))
    if result == "cmmnTerminate":
        return CmmnTerminate(variables=_variables(answer))
    if result == "fail":
        message = answer.get("errorMessage", "handler reported failure")
        details = answer.get("errorDetails")
        retries = answer.get("retries")
        retry_timeout = answer.get("retryTimeout")
        if not isinstance(message, str):
            raise ProtocolError("errorMessage must be a string")
        if details is not None and not isinstance(details, str):
            raise ProtocolError("errorDetails must be a string")
        if retries is not None and (not isinstance(retries, int) or isinstance(retries, bool)):
            raise ProtocolError("retries must be an integer")
        if retry_timeout is not None and not isinstance(retry_timeout, str):
            raise ProtocolError("retryTimeout must be an ISO-8601 duration string such as PT1M")
        return Fail(
            message=message,
            details=details,
            retries=retries,
            retry_timeout=retry_timeout,
            reason="handler",
        )
    raise ProtocolError(
        f"unknown result {result!r}: expected complete, bpmnError, fail or cmmnTerminate"
    )


def _variables(answer: dict[str, Any]) -> dict[str, Any]:
    raw = answer.get("variables")
    if raw is None:
        return {}
    if isinstance(raw, dict):
        return {str(name): value for name, value in raw.items()}
    if isinstance(raw, list):
        return _typed_variables(raw)
    raise ProtocolError("variables must be an object or a list of {name, type, value}")


def _typed_variables(items: list[Any]) -> dict[str, Any]:
    # Imported here so the protocol stays importable (and unit-testable) on its own.
    from flowable_worker.client import TypedValue, from_rest_variables

    variables: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ProtocolError("each typed variable needs a string name")
        kind = item.get("type")
        if kind is None:
            variables[item["name"]] = item.get("value")
            continue
        if not isinstance(kind, str):
            raise ProtocolError(f"variable {item['name']!r}: type must be a string")
        try:
            # Decode the wire text (dates, decimals) the way Flowable's own answers are read,
            # then keep the declared type so it is written back exactly as asked.
            value = from_rest_variables([item])[item["name"]]
        except (TypeError, ValueError) as error:
            raise ProtocolError(f"variable {item['name']!r}: {error}") from None
        variables[item["name"]] = TypedValue(value, kind)
    return variables


def answer_of_outcome(outcome: Outcome) -> dict[str, Any]:
    """`outcome` in this answer language: what `parse_answer` reads back as the same outcome.

    `flowable-worker run-once` prints it, so a handler can be tried from a shell and its answer
    read as what the worker would report. Variables are Flowable's typed list, so a date or a
    decimal keeps its type on the way back.
    """
    from flowable_worker.client import to_rest_variables

    def typed(variables: dict[str, Any]) -> list[dict[str, Any]]:
        return to_rest_variables(variables)

    # The protocol's `result` word is the outcome's `call`.
    if isinstance(outcome, BpmnError):
        return {"result": outcome.call, "errorCode": outcome.code,
                "variables": typed(outcome.variables)}
    if not isinstance(outcome, Fail):
        return {"result": outcome.call, "variables": typed(outcome.variables)}
    answer: dict[str, Any] = {"result": outcome.call, "errorMessage": outcome.message}
    if outcome.details is not None:
        answer["errorDetails"] = outcome.details
    if outcome.retries is not None:
        answer["retries"] = outcome.retries
    if outcome.retry_timeout is not None:
        answer["retryTimeout"] = (
            outcome.retry_timeout if isinstance(outcome.retry_timeout, str)
            else _iso_duration(outcome.retry_timeout)
        )
    return answer


def _iso_duration(value: timedelta) -> str:
    return f"PT{value.total_seconds():g}S"
