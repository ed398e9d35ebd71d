"""Commands as handlers: the job as JSON on stdin, the answer (same protocol as HTTP) on stdout.

One process per job, started without a shell (the argv is used as given). Exit code 0 with an
empty stdout completes the job without variables; a non-zero exit fails it with the end of stderr
as details. When the runtime gives up on a job (timeout, shutdown) the process is killed, so no
command outlives the job it was started for.

The child gets the worker's environment minus the worker's own credentials (`FLOWABLE_USERNAME`,
`FLOWABLE_PASSWORD`, `FLOWABLE_TOKEN`), and URLs from the worker's settings lose their
`user:password@` part: a handler is code that only needs the job, often a script someone else
wrote, and it must not be able to act on Flowable as the worker (or print its secret to a log).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping, Sequence
from datetime import timedelta

from flowable_worker.config import CREDENTIAL_ENV, URL_ENV
from flowable_worker.handlers.base import RetryPolicy
from flowable_worker.handlers.protocol import ProtocolError, parse_answer
from flowable_worker.job import Job
from flowable_worker.redaction import strip_credentials
from flowable_worker.results import Outcome

_STDERR_IN_DETAILS = 8_000


class CommandHandler:
    """Runs `argv` once per job."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        fail_retries: int | None = None,
        fail_retry_timeout: timedelta | str | None = None,
    ) -> None:
        if not argv:
            raise ValueError("the handler command is empty")
        self.argv = list(argv)
        self._policy = RetryPolicy(retries=fail_retries, retry_timeout=fail_retry_timeout)

    @property
    def name(self) -> str:
        """How logs name this handler."""
        return "command:" + " ".join(self.argv)

    async def handle(self, job: Job) -> Outcome:
        """Run the command for one job; never raises except for cancellation."""
        env = child_environment(os.environ)
        env.update(
            FLOWABLE_JOB_ID=job.id, FLOWABLE_JOB_TOPIC=job.topic, FLOWABLE_WORKER_ID=job.worker_id
        )
        try:
            process = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
            )
        except OSError as error:
            return self._policy.fail(f"cannot start handler command {self.argv[0]!r}: {error}")
        try:
            stdout, stderr = await process.communicate(job.to_json_bytes())
        except BaseException:
            # Cancelled (timeout or shutdown): the job is given up, so is its process.
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            with contextlib.suppress(Exception):
                await asyncio.shield(process.wait())
            raise
        error_text = stderr.decode("utf-8", errors="replace")[-_STDERR_IN_DETAILS:]
        if process.returncode != 0:
            return self._policy.fail(
                f"handler command exited with code {process.returncode}",
                details=error_text or None,
            )
        try:
            return parse_answer(stdout)
        except ProtocolError as error:
            return self._policy.fail(
                f"handler command broke the answer protocol: {error}",
                details=error_text or stdout.decode("utf-8", errors="replace")[:2000] or None,
                reason="protocol",
            )

    async def aclose(self) -> None:
        """Nothing held between jobs."""


def child_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` without the worker's credentials, its URLs without their userinfo."""
    env = {name: value for name, value in environ.items() if name not in CREDENTIAL_ENV}
    for name in URL_ENV:
        if name in env:
            env[name] = strip_credentials(env[name])
    return env
