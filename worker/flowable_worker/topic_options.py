"""Per-topic settings: what `@worker.topic("x", lock_duration=..., ...)` overrides for one topic.

One process often serves topics of very different kinds (a 200 ms lookup beside a 10-minute
export), and one lock duration, timeout, retry policy or concurrency cannot fit both: pyzeebe and
Temporal both let a task choose its own. Whatever a topic leaves unset comes from the process-wide
settings (flags and environment), resolved once at start-up, where a bad combination (a handler
timeout not shorter than the topic's lock) stops the worker with exit code 2, as a bad flag does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from flowable_worker.client.durations import parse_duration
from flowable_worker.config import DEFAULT_HANDLER_TIMEOUT_SHARE, ConfigError, WorkerSettings
from flowable_worker.handlers.base import ErrorHook

Duration = timedelta | str | float | int


def _duration(value: Duration | None, what: str) -> timedelta | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, str):
        result = parse_duration(value)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        result = timedelta(seconds=value)
    else:
        raise ValueError(f"{what}: not a duration: {value!r} (use PT5M, '300s' or seconds)")
    if result <= timedelta(0):
        raise ValueError(f"{what} must be positive, got {value!r}")
    return result


@dataclass(frozen=True)
class TopicOptions:
    """What one topic sets for itself; None means "as the worker's settings say"."""

    lock_duration: Duration | None = None
    handler_timeout: Duration | None = None
    fail_retries: int | None = None
    fail_retry_timeout: Duration | None = None
    concurrency: int | None = None
    """Jobs of this topic at once, in slots of its own (not counted in `--concurrency`)."""
    on_error: ErrorHook | None = None

    def resolve(self, topic: str, settings: WorkerSettings) -> ResolvedTopic:
        """The topic's effective settings; ConfigError (naming the topic) when they cannot work."""
        try:
            lock = _duration(self.lock_duration, "lock_duration") or settings.lock_duration
            timeout = _duration(self.handler_timeout, "handler_timeout")
            if timeout is None:
                timeout = (
                    lock * DEFAULT_HANDLER_TIMEOUT_SHARE
                    if self.lock_duration is not None and settings.handler_timeout is None
                    else settings.effective_handler_timeout
                )
            if timeout >= lock:
                raise ValueError(
                    f"handler_timeout ({timeout.total_seconds():g}s) must be shorter than "
                    f"lock_duration ({lock.total_seconds():g}s)"
                )
            if self.fail_retries is not None and self.fail_retries < 0:
                raise ValueError(f"fail_retries must be 0 or more, got {self.fail_retries}")
            if self.concurrency is not None and self.concurrency < 1:
                raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")
            retry_timeout = _duration(self.fail_retry_timeout, "fail_retry_timeout")
        except ValueError as error:
            raise ConfigError(f"topic {topic!r}: {error}") from None
        return ResolvedTopic(
            lock_duration=lock,
            handler_timeout=timeout,
            fail_retries=self.fail_retries if self.fail_retries is not None
            else settings.fail_retries,
            fail_retry_timeout=retry_timeout if retry_timeout is not None
            else settings.fail_retry_timeout,
            concurrency=self.concurrency,
            on_error=self.on_error,
        )


@dataclass(frozen=True)
class ResolvedTopic:
    """A topic's settings after `TopicOptions.resolve`: nothing left to look up."""

    lock_duration: timedelta
    handler_timeout: timedelta
    fail_retries: int | None
    fail_retry_timeout: timedelta | None
    concurrency: int | None
    on_error: ErrorHook | None
