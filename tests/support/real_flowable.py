"""The tests' side of the real Flowable server: one-task models and the contract suite's backend.

`localstack/flowable_server.py` starts the server and wraps its process and CMMN REST APIs; this
module adds what only tests (and the benchmarks that reuse them) need:

- `one_task_model` fills the templates in `tests/support/models/` with a topic and a key.
- `RealFlowable` adapts a running server to the contract suite's `FlowableBackend` protocol
  (`tests/support/backend.py`), the twin of the emulator's `EmulatedFlowable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from string import Template
from typing import Any
from xml.sax.saxutils import quoteattr

import httpx

from flowable_worker import ClientSettings, from_rest_variables, to_rest_variables
from localstack.flowable_server import (
    DeployedModel,
    FlowableRestApi,
    FlowableServer,
    FlowableServerError,
    check_response,
)
from tests.support.backend import CreatedJob, ScopeType

MODELS_DIR = Path(__file__).resolve().parent / "models"

_ELEMENT_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_MODEL_FILES: dict[ScopeType, str] = {
    "bpmn": "external-task.bpmn20.xml",
    "cmmn": "external-task.cmmn.xml",
}


def one_task_model(
    *,
    scope_type: ScopeType,
    definition_key: str,
    topic: str,
    element_id: str = "externalTask",
    exclusive: bool = True,
) -> str:
    """The XML of a model with one external-worker task on `topic` (tests/support/models/).

    BPMN: start -> serviceTask(external-worker) -> end. CMMN: a case whose plan has one
    external-worker task, so completing (or terminating) its job ends the case.
    """
    if not _ELEMENT_ID.match(element_id) or not _ELEMENT_ID.match(definition_key):
        raise ValueError(
            f"element id {element_id!r} / key {definition_key!r} must be XML ids "
            "(a letter or _ then letters, digits, _ . -)"
        )
    template = Template((MODELS_DIR / _MODEL_FILES[scope_type]).read_text())
    return template.substitute(
        definition_key=definition_key,
        element_id=element_id,
        topic_attr=quoteattr(topic),
        exclusive=str(exclusive).lower(),
    )


def _parse_instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class RealFlowable:
    """The contract suite's `FlowableBackend` over a running real Flowable server.

    Jobs exist only because instances reach an external-worker task, so `create_jobs` deploys
    a generated one-task model once per (topic, scope type, tenant, element id) and starts one
    instance per job. Python variables are converted with the project client's own
    `to_rest_variables`/`from_rest_variables`, so a contract test sees the same round trip here
    as against the emulator.
    """

    name = "real"

    def __init__(
        self,
        base_url: str,
        *,
        reset_expired_jobs_interval: float = 1.0,
        start_concurrency: int = 8,
    ) -> None:
        """`reset_expired_jobs_interval` must match the server's (it bounds how long
        `reset_expired_locks` waits); `start_concurrency` caps parallel instance starts."""
        self.base_url = base_url.rstrip("/")
        self.reset_expired_jobs_interval = reset_expired_jobs_interval
        self._start_concurrency = start_concurrency
        self._models: dict[tuple[str, ScopeType, str | None, str, bool], DeployedModel] = {}
        self._deploy_lock = asyncio.Lock()

    @classmethod
    def for_server(cls, server: FlowableServer) -> RealFlowable:
        return cls(server.base_url, reset_expired_jobs_interval=server.reset_expired_jobs_interval)

    def client_settings(self) -> ClientSettings:
        return ClientSettings(base_url=self.base_url)

    def api(self) -> contextlib.AbstractAsyncContextManager[FlowableRestApi]:
        """A `FlowableRestApi` on a fresh connection set, for tests that need more than the
        protocol. A fresh client per use keeps this object free of event-loop ties."""
        return FlowableRestApi.connect(self.base_url)

    async def model_for(
        self,
        api: FlowableRestApi,
        *,
        topic: str,
        scope_type: ScopeType,
        tenant_id: str | None,
        element_id: str,
        exclusive: bool = True,
    ) -> DeployedModel:
        """The deployed one-task model for this combination, deploying it on first use."""
        key = (topic, scope_type, tenant_id, element_id, exclusive)
        async with self._deploy_lock:
            model = self._models.get(key)
            if model is None:
                digest = hashlib.sha256(repr(key).encode()).hexdigest()[:20]
                xml = one_task_model(
                    scope_type=scope_type,
                    definition_key=f"fwo_{digest}",
                    topic=topic,
                    element_id=element_id,
                    exclusive=exclusive,
                )
                model = await api.deploy(xml, scope_type=scope_type, tenant_id=tenant_id)
                self._models[key] = model
            return model

    async def create_jobs(
        self,
        topic: str,
        count: int = 1,
        *,
        variables: Mapping[str, Any] | None = None,
        scope_type: ScopeType = "bpmn",
        tenant_id: str | None = None,
        element_id: str = "externalTask",
        exclusive: bool = True,
    ) -> list[CreatedJob]:
        """Start `count` instances, each stopping at one external-worker job on `topic`.

        The job row is written in the same transaction that starts the instance (the task is
        not async), so the jobs are acquirable as soon as this returns.
        """
        rest_variables = to_rest_variables(variables) if variables else []
        semaphore = asyncio.Semaphore(self._start_concurrency)
        async with self.api() as api:
            model = await self.model_for(
                api,
                topic=topic,
                scope_type=scope_type,
                tenant_id=tenant_id,
                element_id=element_id,
                exclusive=exclusive,
            )
            start = api.start_process_instance if scope_type == "bpmn" else api.start_case_instance

            async def start_one() -> CreatedJob:
                async with semaphore:
                    instance = await start(
                        definition_id=model.definition_id, variables=rest_variables
                    )
                return CreatedJob(
                    instance_id=instance["id"],
                    definition_id=model.definition_id,
                    element_id=element_id,
                    scope_type=scope_type,
                    tenant_id=tenant_id,
                )

            return list(await asyncio.gather(*(start_one() for _ in range(count))))

    async def instance_finished(self, created: CreatedJob) -> bool:
        async with self.api() as api:
            if created.scope_type == "bpmn":
                row = await api.historic_process_instance(created.instance_id)
            else:
                row = await api.historic_case_instance(created.instance_id)
        return row is not None and row.get("endTime") is not None

    async def instance_variables(self, created: CreatedJob) -> dict[str, Any]:
        async with self.api() as api:
            items = await api.historic_variables(created.instance_id, scope_type=created.scope_type)
        return from_rest_variables(items)

    async def task_completions(self, created: Sequence[CreatedJob]) -> Counter[str]:
        """Per instance: how many times its external-worker task finished, by history.

        History is the judge of "lost" and "completed twice" in the worker, fault and e2e
        suites: an instance whose task never finished was lost, one that finished twice was a
        duplicate. `created` must share one definition and element (one `create_jobs` call).
        """
        async with httpx.AsyncClient(base_url=self.base_url, timeout=30) as http:
            response = await http.get(
                "/process-api/history/historic-activity-instances",
                params={"processDefinitionId": created[0].definition_id,
                        "activityId": created[0].element_id, "finished": "true", "size": 10000},
            )
        page = check_response(response).json()
        return Counter(row["processInstanceId"] for row in page["data"])

    async def dead_letter_job_ids(self, created: Sequence[CreatedJob]) -> list[str]:
        ids: dict[str, None] = {}  # ordered and de-duplicated
        async with self.api() as api:
            for job in created:
                for row in await api.dead_letter_jobs(job.instance_id, scope_type=job.scope_type):
                    ids[row["id"]] = None
        return list(ids)

    async def reset_expired_locks(self) -> None:
        """Return once no external-worker job holds a lock that had expired when we were called.

        The engine's reset thread runs every `reset_expired_jobs_interval`; polling for its effect
        instead of sleeping a fixed time is both faster and safe against a slow run. Locks that
        are still valid (including a `retryTimeout` wait) are not waited for.
        """
        called = datetime.now(UTC)
        patience = max(10.0, 10 * self.reset_expired_jobs_interval)
        deadline = time.monotonic() + patience
        async with self.api() as api:
            while True:
                page = await api.external_worker_jobs(locked="true", size=1000)
                expired = [
                    job["id"]
                    for job in page["data"]
                    if job.get("lockExpirationTime")
                    and _parse_instant(job["lockExpirationTime"]) <= called
                ]
                if not expired:
                    return
                if time.monotonic() > deadline:
                    raise FlowableServerError(
                        f"expired locks not reset after {patience:.0f}s: {expired[:10]}"
                    )
                await asyncio.sleep(min(0.2, self.reset_expired_jobs_interval / 4))
