"""`flowable-worker run-once`: run a handler for one job read from a file, print what it answers.

For trying a handler from a shell before a pool runs it: no Flowable, no Kubernetes. The job is
JSON, either the shape HTTP and command handlers receive (`Job.to_json()`, docs/worker.md) or just
`{"variables": {...}}`; Flowable's typed variables (`[{"name", "type", "value"}]`, as `variables`
or `rawVariables`) keep dates and decimals exact. The answer is printed in the JSON answer
language (`handlers/protocol.py`): `{"result": "complete", "variables": [...]}` and so on, exactly
what the worker would report. Exit 0 whatever the handler decided (a failure is an answer too);
2 with one line for a bad command line, file or handler.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from flowable_worker.client import from_rest_variables
from flowable_worker.config import ConfigError
from flowable_worker.handlers.protocol import answer_of_outcome
from flowable_worker.job import Job
from flowable_worker.registry import Registry
from flowable_worker.resolution import import_target, not_a_handler
from flowable_worker.results import Outcome
from flowable_worker.testing import run_handler
from flowable_worker.topic_options import TopicOptions

_FIELDS = {
    "processInstanceId": "process_instance_id",
    "processDefinitionId": "process_definition_id",
    "executionId": "execution_id",
    "scopeId": "scope_id",
    "subScopeId": "sub_scope_id",
    "scopeDefinitionId": "scope_definition_id",
    "scopeType": "scope_type",
    "elementId": "element_id",
    "elementName": "element_name",
    "correlationId": "correlation_id",
    "tenantId": "tenant_id",
    "retries": "retries",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowable-worker run-once",
        description=(
            "Run a handler for one job read from a JSON file and print its answer (what the "
            "worker would report to Flowable). Nothing connects to Flowable."
        ),
        epilog=(
            "example: flowable-worker run-once --handler invoices.handlers:check --job job.json\n"
            'job.json: {"topic": "invoice-check", "variables": {"amount": 120}}'
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--job", required=True, metavar="FILE",
        help="the job as JSON ('-' reads standard input)",
    )
    parser.add_argument(
        "--handler", metavar="MODULE:FUNCTION",
        default=os.environ.get("FLOWABLE_WORKER_HANDLER") or None,
        help="the handler, a function or a Worker (default: FLOWABLE_WORKER_HANDLER)",
    )
    parser.add_argument(
        "--topic", help="which of a Worker's topics (default: the job's topic, or its only one)",
    )
    return parser


def job_from_json(data: Mapping[str, Any]) -> Job:
    """A `Job` from the handlers' JSON shape or a bare `{"variables": ...}`; ValueError if not."""
    raw = data.get("rawVariables") or (
        data["variables"] if isinstance(data.get("variables"), list) else None
    )
    if raw is not None:
        if not isinstance(raw, list):
            raise ValueError("rawVariables must be a list of {name, type, value}")
        variables = from_rest_variables(raw)
    else:
        plain = data.get("variables") or {}
        if not isinstance(plain, dict):
            raise ValueError("variables must be an object or a list of {name, type, value}")
        variables = dict(plain)
    fields = {name: data[key] for key, name in _FIELDS.items() if data.get(key) is not None}
    expiry = data.get("lockExpirationTime")
    return Job(
        id=str(data.get("id") or "run-once"),
        topic=str(data.get("topic") or "run-once"),
        worker_id=str(data.get("workerId") or "run-once"),
        variables=variables,
        lock_expiration_time=datetime.fromisoformat(expiry) if expiry else None,
        raw_variables=list(raw or []),
        **fields,
    )


def _read_job(path: str) -> Job:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"--job: cannot read {path}: {error.strerror or error}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"--job: {path} is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--job: {path} must hold a JSON object")
    try:
        return job_from_json(data)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"--job: {path}: {error}") from None


def _handler_for(spec: str | None, topic: str | None, job: Job) -> tuple[Any, TopicOptions]:
    if spec is None:
        raise ConfigError("no handler: give --handler MODULE:FUNCTION or FLOWABLE_WORKER_HANDLER")
    target = import_target(spec, "--handler")
    if not isinstance(target, Registry):
        if not callable(target):
            raise not_a_handler(spec, "--handler")
        return target, TopicOptions()
    topics = target.registered_topics
    chosen = topic or (job.topic if job.topic in topics else None)
    if chosen is None and len(topics) == 1:
        chosen = topics[0]
    if chosen not in topics:
        raise ConfigError(
            f"--topic: the Worker {spec!r} has topics {', '.join(topics) or '(none)'}; "
            "name one with --topic or in the job's \"topic\""
        )
    return target.handler_of(chosen), target.topic_options(chosen)


async def _run(handler: Any, options: TopicOptions, job: Job) -> Outcome:
    if not callable(handler):  # an object with `async handle(job)`
        outcome: Outcome = await handler.handle(job)
        return outcome
    retry_timeout = options.fail_retry_timeout
    if isinstance(retry_timeout, int | float):
        retry_timeout = timedelta(seconds=retry_timeout)
    return await run_handler(
        handler,
        job,
        fail_retries=options.fail_retries,
        fail_retry_timeout=retry_timeout,
        on_error=options.on_error,
    )


def main(argv: Sequence[str]) -> int:
    """`flowable-worker run-once ...`; returns the exit code."""
    args = build_parser().parse_args(list(argv))
    try:
        job = _read_job(args.job)
        handler, options = _handler_for(args.handler, args.topic, job)
    except ConfigError as error:
        print(f"flowable-worker run-once: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    if args.topic:
        job = Job(**{**job.__dict__, "topic": args.topic})
    outcome = asyncio.run(_run(handler, options, job))
    print(json.dumps(answer_of_outcome(outcome), indent=2, default=str))
    return 0
