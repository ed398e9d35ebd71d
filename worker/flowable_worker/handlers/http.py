"""HTTP endpoints as handlers: POST the job as JSON, map the JSON answer to an outcome.

Language-agnostic: any service that speaks the protocol in `handlers.protocol` can work jobs.
A non-2xx status, a timeout or a connection failure fails the job (with the worker's retry
policy), so an unreachable handler shows up as failed jobs and incidents, never as completions.
This client is separate from the Flowable client: a slow handler endpoint must not take up the
connections used to acquire and complete. Fail messages name the URL with any
`user:password@` redacted: they are stored by Flowable and shown to whoever looks at incidents.
"""

from __future__ import annotations

from datetime import timedelta

import httpx

from flowable_worker.handlers.base import RetryPolicy
from flowable_worker.handlers.protocol import ProtocolError, parse_answer
from flowable_worker.job import Job
from flowable_worker.redaction import redact
from flowable_worker.results import Outcome

_BODY_IN_MESSAGE = 500


class HttpHandler:
    """POSTs each job to `url` and reads the outcome from the answer."""

    def __init__(
        self,
        url: str,
        *,
        timeout_seconds: float,
        max_connections: int,
        fail_retries: int | None = None,
        fail_retry_timeout: timedelta | str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self._shown_url = redact(url)
        self._policy = RetryPolicy(retries=fail_retries, retry_timeout=fail_retry_timeout)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_seconds),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            transport=transport,
        )

    @property
    def name(self) -> str:
        """How logs name this handler."""
        return f"http:{self._shown_url}"

    async def handle(self, job: Job) -> Outcome:
        """POST the job; never raises except for cancellation."""
        try:
            response = await self._client.post(
                self.url,
                content=job.to_json_bytes(),
                headers={"content-type": "application/json", "accept": "application/json"},
            )
        except httpx.TimeoutException as error:
            return self._policy.fail(
                f"HTTP handler {self._shown_url} timed out ({type(error).__name__})"
            )
        except httpx.HTTPError as error:
            return self._policy.fail(
                redact(
                    f"HTTP handler {self._shown_url} unreachable: {type(error).__name__}: {error}"
                )
            )
        if not response.is_success:
            body = response.text[:_BODY_IN_MESSAGE]
            return self._policy.fail(
                f"HTTP handler {self._shown_url} answered {response.status_code}",
                details=body or None,
            )
        try:
            return parse_answer(response.content)
        except ProtocolError as error:
            return self._policy.fail(
                f"HTTP handler {self._shown_url} broke the answer protocol: {error}",
                details=response.text[:_BODY_IN_MESSAGE] or None,
                reason="protocol",
            )


    async def aclose(self) -> None:
        """Close the handler's connection pool."""
        await self._client.aclose()
