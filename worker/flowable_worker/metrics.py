"""The worker's Prometheus metrics, all prefixed `flowable_worker_`.

Each `Worker` owns its own `CollectorRegistry`, so several workers in one process (tests, embedded
use) never collide on names. Labels stay low-cardinality: topic, a short reason or call name, an
outcome; never a job id or an error message.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from flowable_worker._version import __version__

PREFIX = "flowable_worker_"

_HANDLER_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class WorkerMetrics:
    """Counters, histograms and gauges of one worker, registered in `registry`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.build_info = Gauge(
            PREFIX + "build_info",
            "Always 1, labelled with the worker's version: which build each worker pod runs "
            "(e.g. pools still on an older image), joinable onto other series",
            ["version"],
            registry=r,
        )
        self.build_info.labels(version=__version__).set(1)
        self.jobs_acquired = Counter(
            PREFIX + "jobs_acquired", "Jobs acquired from Flowable", ["topic"], registry=r
        )
        self.jobs_completed = Counter(
            PREFIX + "jobs_completed", "Jobs completed", ["topic"], registry=r
        )
        self.jobs_failed = Counter(
            PREFIX + "jobs_failed",
            "Jobs reported as failed (reason: handler, signal, timeout, protocol, rejected)",
            ["topic", "reason"],
            registry=r,
        )
        self.jobs_bpmn_errors = Counter(
            PREFIX + "jobs_bpmn_errors", "Jobs completed with a BPMN error", ["topic"], registry=r
        )
        self.jobs_cmmn_terminated = Counter(
            PREFIX + "jobs_cmmn_terminated",
            "Jobs ended with a CMMN terminate",
            ["topic"],
            registry=r,
        )
        self.jobs_unacquired = Counter(
            PREFIX + "jobs_unacquired",
            "Jobs given back to Flowable unstarted or abandoned at shutdown",
            ["topic"],
            registry=r,
        )
        self.jobs_lost = Counter(
            PREFIX + "jobs_lost",
            "Results Flowable refused because the lock was lost (the job goes to another worker)",
            ["topic"],
            registry=r,
        )
        self.acquire_requests = Counter(
            PREFIX + "acquire_requests", "Acquire requests sent", ["topic"], registry=r
        )
        self.acquire_errors = Counter(
            PREFIX + "acquire_errors",
            "Acquire requests that failed, by reason",
            ["topic", "reason"],
            registry=r,
        )
        self.report_errors = Counter(
            PREFIX + "report_errors",
            "complete/fail/bpmnError/cmmnTerminate/unacquire calls that failed, by call and reason",
            ["topic", "call", "reason"],
            registry=r,
        )
        self.empty_polls = Counter(
            PREFIX + "empty_polls", "Acquire requests that returned no job", ["topic"], registry=r
        )
        self.handler_duration = Histogram(
            PREFIX + "handler_duration_seconds",
            "Time from handler start to its outcome",
            ["topic", "outcome"],
            buckets=_HANDLER_BUCKETS,
            registry=r,
        )
        self.acquire_latency = Histogram(
            PREFIX + "acquire_latency_seconds",
            "Round trip of one acquire request",
            ["topic"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            PREFIX + "jobs_in_flight", "Jobs acquired and not yet reported", registry=r
        )
        self.handlers_hung = Gauge(
            PREFIX + "handlers_hung",
            "Handler threads still running a call the worker gave up on (timed out or cut off at "
            "shutdown); Python cannot stop them, so they are replaced and the count shows them",
            registry=r,
        )
        self.pollers = Gauge(
            PREFIX + "pollers",
            "Topic pollers running (one per topic while the worker serves)",
            registry=r,
        )
        self.poller_errors = Counter(
            PREFIX + "poller_errors",
            "Unexpected errors in a topic's poller (a bug: logged with its traceback; the poller "
            "goes on)",
            ["topic"],
            registry=r,
        )
        self.capacity = Gauge(
            PREFIX + "capacity", "Jobs this worker may hold at once (its concurrency)", registry=r
        )


class TopicMetrics:
    """The children of `WorkerMetrics` for one topic, bound once (label lookups cost per job)."""

    def __init__(self, metrics: WorkerMetrics, topic: str) -> None:
        self.metrics = metrics
        self.topic = topic
        self.acquired = metrics.jobs_acquired.labels(topic)
        self.completed = metrics.jobs_completed.labels(topic)
        self.bpmn_errors = metrics.jobs_bpmn_errors.labels(topic)
        self.cmmn_terminated = metrics.jobs_cmmn_terminated.labels(topic)
        self.unacquired = metrics.jobs_unacquired.labels(topic)
        self.lost = metrics.jobs_lost.labels(topic)
        self.acquire_requests = metrics.acquire_requests.labels(topic)
        self.empty_polls = metrics.empty_polls.labels(topic)
        self.acquire_latency = metrics.acquire_latency.labels(topic)

    def failed(self, reason: str) -> None:
        """Count one job reported as failed."""
        self.metrics.jobs_failed.labels(self.topic, reason).inc()

    def poller_error(self) -> None:
        """Count one unexpected error in this topic's poller."""
        self.metrics.poller_errors.labels(self.topic).inc()

    def acquire_error(self, reason: str) -> None:
        """Count one failed acquire request."""
        self.metrics.acquire_errors.labels(self.topic, reason).inc()

    def report_error(self, call: str, reason: str) -> None:
        """Count one failed complete/fail/bpmnError/cmmnTerminate/unacquire request."""
        self.metrics.report_errors.labels(self.topic, call, reason).inc()

    def handled(self, outcome: str, seconds: float) -> None:
        """Record one handler run."""
        self.metrics.handler_duration.labels(self.topic, outcome).observe(seconds)


def error_reason(error: BaseException) -> str:
    """A short, bounded label for an error from the client (never its message)."""
    from flowable_worker.client import (
        FlowableHTTPError,
        FlowableTimeoutError,
        FlowableTransportError,
        InvalidResponseError,
    )

    if isinstance(error, FlowableTimeoutError):
        return "timeout"
    if isinstance(error, FlowableTransportError):
        return "transport"
    if isinstance(error, InvalidResponseError):
        return "invalid_response"
    if isinstance(error, FlowableHTTPError):
        if error.status == 401:
            return "unauthorized"
        if error.status == 403:
            return "forbidden"
        if error.status == 404:
            return "not_found"
        return "http_5xx" if error.status >= 500 else "http_4xx"
    return "other"
