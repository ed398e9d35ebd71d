"""`FlowableClient`: every call of Flowable's external-worker REST API, typed, over one pool.

One `httpx.AsyncClient` per `FlowableClient`, so a worker with many jobs in flight reuses a bounded
set of keep-alive connections; every request carries the configured timeouts. Reads (GET) are
retried with jittered backoff on transport errors and 5xx; writes (POST) never are, because only
the caller knows whether a lost answer to "complete" or "acquire" may be repeated. Every failure
leaves as a `FlowableError` (see errors.py); nothing from httpx, pydantic or json leaks out.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from types import TracebackType
from typing import Any, TypeVar, Unpack
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter, ValidationError

from flowable_worker.client.backoff import Backoff
from flowable_worker.client.durations import duration_text
from flowable_worker.client.error_mapping import error_for_response, error_for_transport_failure
from flowable_worker.client.errors import FlowableError, InvalidResponseError
from flowable_worker.client.models import AcquiredJob, ExternalWorkerJob, Page
from flowable_worker.client.queries import JobFilters, filter_params, paging_params
from flowable_worker.client.retry import is_retryable
from flowable_worker.client.settings import ClientSettings
from flowable_worker.client.variables import to_rest_variables
from flowable_worker.redaction import redact

log = logging.getLogger(__name__)

M = TypeVar("M")

_ACQUIRED_JOBS = TypeAdapter(list[AcquiredJob])
_JOB = TypeAdapter(ExternalWorkerJob)
_JOB_PAGE = TypeAdapter(Page[ExternalWorkerJob])

Sleep = Callable[[float], Awaitable[None]]


def _job_path(prefix: str, job_id: str, suffix: str = "") -> str:
    # Ids are opaque: quote them whole so an odd id can't walk to another endpoint.
    return f"{prefix}/{quote(job_id, safe='')}{suffix}"


def _without_none(body: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if value is not None}


def _variables(variables: Mapping[str, Any] | None) -> list[dict[str, Any]] | None:
    return None if variables is None else to_rest_variables(variables)


class FlowableClient:
    """Async client for `<base_url><external_job_api_path>`; use as `async with` or `aclose()`.

    `transport` replaces the network (tests pass `httpx.MockTransport`); `sleep` replaces the wait
    between read retries (tests pass a recorder so retries take no time).
    """

    def __init__(
        self,
        settings: ClientSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._settings = settings
        self._sleep = sleep
        self._backoff = Backoff(
            initial=settings.retry_backoff_seconds,
            maximum=settings.retry_backoff_max_seconds,
            jitter="full",
        )
        auth, headers = settings.http_auth()
        self._http = httpx.AsyncClient(
            base_url=settings.external_job_api_url,
            auth=auth,
            headers={"Accept": "application/json", **headers},
            timeout=httpx.Timeout(
                settings.timeout_seconds, connect=settings.connect_timeout_seconds
            ),
            limits=httpx.Limits(
                max_connections=settings.max_connections,
                max_keepalive_connections=settings.max_connections,
            ),
            verify=settings.tls_verify() if transport is None else True,
            transport=transport,
        )

    @property
    def settings(self) -> ClientSettings:
        """The settings this client was built from."""
        return self._settings

    async def aclose(self) -> None:
        """Close the pooled connections; the client can't be used afterwards."""
        await self._http.aclose()

    async def __aenter__(self) -> FlowableClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- acquire and finish jobs (POST, never retried) -------------------------------------------

    async def acquire_jobs(
        self,
        *,
        topic: str,
        worker_id: str,
        lock_duration: timedelta | str,
        number_of_tasks: int = 1,
        number_of_retries: int | None = None,
        scope_type: str | None = None,
    ) -> list[AcquiredJob]:
        """Lock up to `number_of_tasks` unlocked jobs of `topic` for `worker_id`.

        Returns at once (no long polling), possibly `[]` even when jobs exist under contention.
        `number_of_retries` is how often the *server* retries its own optimistic-lock conflicts.
        """
        body = _without_none(
            {
                "topic": topic,
                "workerId": worker_id,
                "lockDuration": duration_text(lock_duration),
                "numberOfTasks": number_of_tasks,
                "numberOfRetries": number_of_retries,
                "scopeType": scope_type,
            }
        )
        response = await self._request("POST", "acquire/jobs", json=body)
        return self._parse(response, _ACQUIRED_JOBS)

    async def complete_job(
        self, job_id: str, *, worker_id: str, variables: Mapping[str, Any] | None = None
    ) -> None:
        """Complete a job this worker holds; `variables` are Python values (or `TypedValue`)."""
        body = _without_none({"workerId": worker_id, "variables": _variables(variables)})
        await self._request("POST", _job_path("acquire/jobs", job_id, "/complete"), json=body)

    async def bpmn_error(
        self,
        job_id: str,
        *,
        worker_id: str,
        error_code: str | None = None,
        variables: Mapping[str, Any] | None = None,
    ) -> None:
        """End a BPMN job with a BPMN error (`error_code` picks the boundary event)."""
        body = _without_none(
            {"workerId": worker_id, "errorCode": error_code, "variables": _variables(variables)}
        )
        await self._request("POST", _job_path("acquire/jobs", job_id, "/bpmnError"), json=body)

    async def cmmn_terminate(
        self, job_id: str, *, worker_id: str, variables: Mapping[str, Any] | None = None
    ) -> None:
        """End a CMMN job through its terminate transition."""
        body = _without_none({"workerId": worker_id, "variables": _variables(variables)})
        await self._request("POST", _job_path("acquire/jobs", job_id, "/cmmnTerminate"), json=body)

    async def fail_job(
        self,
        job_id: str,
        *,
        worker_id: str,
        error_message: str | None = None,
        error_details: str | None = None,
        retries: int | None = None,
        retry_timeout: timedelta | str | None = None,
    ) -> None:
        """Report a failed attempt; without `retries` the server decrements the job's retries."""
        body = _without_none(
            {
                "workerId": worker_id,
                "errorMessage": error_message,
                "errorDetails": error_details,
                "retries": retries,
                "retryTimeout": None if retry_timeout is None else duration_text(retry_timeout),
            }
        )
        await self._request("POST", _job_path("acquire/jobs", job_id, "/fail"), json=body)

    async def unacquire_jobs(self, *, worker_id: str, tenant_id: str | None = None) -> None:
        """Release every job `worker_id` holds (shutdown: give back what won't be worked on)."""
        body = _without_none({"workerId": worker_id, "tenantId": tenant_id})
        await self._request("POST", "unacquire/jobs", json=body)

    async def unacquire_job(self, job_id: str, *, worker_id: str) -> None:
        """Release one job this worker holds."""
        await self._request(
            "POST", _job_path("unacquire/jobs", job_id), json={"workerId": worker_id}
        )

    # -- queries (GET, retried) -------------------------------------------------------------------

    async def list_jobs(
        self,
        *,
        start: int | None = None,
        size: int | None = None,
        sort: str | None = None,
        order: str | None = None,
        **filters: Unpack[JobFilters],
    ) -> Page[ExternalWorkerJob]:
        """One page of jobs matching `filters` (see `JobFilters`); no topic filter exists."""
        params = {
            **filter_params(filters),
            **paging_params(start=start, size=size, sort=sort, order=order),
        }
        response = await self._request("GET", "jobs", params=params)
        return self._parse(response, _JOB_PAGE)

    async def count_jobs(self, **filters: Unpack[JobFilters]) -> int:
        """How many jobs match `filters`: one `size=1` request, reading Flowable's exact `total`."""
        page = await self.list_jobs(size=1, **filters)
        return page.total

    async def get_job(self, job_id: str) -> ExternalWorkerJob:
        """One job by id; `JobNotFoundError` when it is gone (completed or dead-lettered)."""
        response = await self._request("GET", _job_path("jobs", job_id))
        return self._parse(response, _JOB)

    # -- plumbing ---------------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        retries = self._settings.read_retries if method == "GET" else 0
        attempt = 0
        while True:
            try:
                return await self._attempt(method, path, json=json, params=params)
            except FlowableError as error:
                if attempt >= retries or not is_retryable(error):
                    raise
                delay = self._backoff.delay(attempt)
                attempt += 1
                log.debug(
                    "retrying %s %s (%d/%d) in %.3fs after: %s",
                    method,
                    path,
                    attempt,
                    retries,
                    delay,
                    error,
                )
                await self._sleep(delay)

    async def _attempt(
        self,
        method: str,
        path: str,
        *,
        json: Any,
        params: Mapping[str, str] | None,
    ) -> httpx.Response:
        try:
            response = await self._http.request(method, path, json=json, params=params)
        except httpx.DecodingError as exc:
            raise InvalidResponseError(
                redact(f"{method} {path}: undecodable body: {exc}")
            ) from exc
        except httpx.RequestError as exc:  # transport failures, timeouts, too many redirects
            url = f"{self._settings.external_job_api_url}/{path}"
            raise error_for_transport_failure(exc, method=method, url=url) from exc
        except ssl.SSLError as exc:
            # httpx lets a TLS alert read after the handshake escape unmapped: under TLS 1.3 a
            # server refusing our client certificate says so only on the first read.
            url = f"{self._settings.external_job_api_url}/{path}"
            raise error_for_transport_failure(exc, method=method, url=url) from exc
        if not response.is_success:
            raise error_for_response(response)
        return response

    @staticmethod
    def _parse(response: httpx.Response, adapter: TypeAdapter[M]) -> M:
        where = f"{response.request.method} {redact(str(response.request.url))}"
        try:
            payload = response.json()
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise InvalidResponseError(
                f"{where}: answer is not JSON: {exc}", body=response.text[:1000]
            ) from exc
        try:
            return adapter.validate_python(payload)
        except ValidationError as exc:
            raise InvalidResponseError(
                f"{where}: answer does not match the API: {exc}", body=payload
            ) from exc
