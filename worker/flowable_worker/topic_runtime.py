"""What a topic needs while the worker serves it, built at start from the resolved plan.

`resolution` decided which handler serves which topic; here those decisions become running parts:
a `PythonHandler` around each function, the one shared HTTP or command handler, the topic's slots,
metrics, backoffs and reporter. Also the process's one `FlowableClient`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flowable_worker.client import FlowableClient
from flowable_worker.client.backoff import Backoff
from flowable_worker.config import WorkerSettings
from flowable_worker.handler_threads import HandlerThreads
from flowable_worker.handlers import CommandHandler, Handler, HttpHandler, PythonHandler
from flowable_worker.metrics import TopicMetrics, WorkerMetrics
from flowable_worker.reporting import Reporter, ReportPolicy
from flowable_worker.resolution import TopicPlan
from flowable_worker.slots import Slots
from flowable_worker.topic_options import ResolvedTopic
from flowable_worker.transport import LeanTransport, choose_transport, tls_context


@dataclass
class TopicRuntime:
    """One topic being served: its handler and the state its poller keeps."""

    topic: str
    handler: Handler
    metrics: TopicMetrics
    empty_backoff: Backoff
    error_backoff: Backoff
    options: ResolvedTopic
    slots: Slots
    """The worker's shared slots, or the topic's own when it set a concurrency of its own."""
    reporter: Reporter
    last_error: str | None = field(default=None)


def client_for(settings: WorkerSettings) -> FlowableClient:
    """The process's one client: the lean transport unless `choose_transport` picks httpx's own.

    httpx's is used when `http_client` asks for it, and when a proxy from the environment
    (HTTP_PROXY/HTTPS_PROXY/ALL_PROXY, NO_PROXY honoured) applies to the Flowable URL: the lean
    transport speaks no proxy protocol and would silently go around the proxy.
    """
    client_settings = settings.client_settings()
    if choose_transport(settings.http_client, settings.flowable_url).kind == "httpx":
        return FlowableClient(client_settings)
    transport = LeanTransport(
        max_connections=client_settings.max_connections,
        ssl_context=tls_context(
            verify=client_settings.verify_tls,
            ca_bundle=client_settings.ca_bundle,
            client_cert=client_settings.client_cert,
            client_key=client_settings.client_key,
        ),
    )
    return FlowableClient(client_settings, transport=transport)


def _shared_handler(settings: WorkerSettings) -> Handler | None:
    """The `--handler-url` or `--handler-command` handler, for topics without one of their own."""
    if settings.handler_url is not None:
        return HttpHandler(
            settings.handler_url,
            timeout_seconds=settings.effective_handler_timeout.total_seconds(),
            max_connections=settings.concurrency,
            fail_retries=settings.fail_retries,
            fail_retry_timeout=settings.fail_retry_timeout,
        )
    if settings.handler_command is not None:
        return CommandHandler(
            settings.handler_command,
            fail_retries=settings.fail_retries,
            fail_retry_timeout=settings.fail_retry_timeout,
        )
    return None


def build_topics(
    plans: tuple[TopicPlan, ...],
    settings: WorkerSettings,
    *,
    threads: HandlerThreads,
    slots: Slots,
    metrics: WorkerMetrics,
    client: FlowableClient,
    report_policy: ReportPolicy | None,
) -> list[TopicRuntime]:
    """A `TopicRuntime` per planned topic; `slots` are the worker's shared ones."""
    shared = _shared_handler(settings) if any(p.handler is None for p in plans) else None
    topics = []
    for plan in plans:
        options = plan.options
        handler: Handler
        if plan.handler is None:
            assert shared is not None  # resolution checked there is one
            handler = shared
        elif callable(plan.handler):
            handler = PythonHandler(
                plan.handler,
                threads=threads,
                fail_retries=options.fail_retries,
                fail_retry_timeout=options.fail_retry_timeout,
                on_error=options.on_error,
            )
        else:
            handler = plan.handler
        topics.append(
            TopicRuntime(
                topic=plan.topic,
                handler=handler,
                options=options,
                slots=slots if options.concurrency is None else Slots(options.concurrency),
                metrics=TopicMetrics(metrics, plan.topic),
                empty_backoff=Backoff(
                    initial=settings.poll_interval_min.total_seconds(),
                    maximum=settings.poll_interval_max.total_seconds(),
                    jitter="equal",
                ),
                error_backoff=Backoff(
                    initial=min(0.5, settings.error_backoff_max.total_seconds()),
                    maximum=settings.error_backoff_max.total_seconds(),
                    jitter="equal",
                ),
                reporter=Reporter(
                    client, worker_id=settings.worker_id, policy=report_policy,
                    fail_retries=options.fail_retries,
                    fail_retry_timeout=options.fail_retry_timeout,
                ),
            )
        )
    return topics
