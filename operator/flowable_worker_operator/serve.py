"""Build the operator's shared parts and run kopf with them until a signal stops it.

Separate from `main` so that `--help` and configuration errors never import kopf or the
Kubernetes client, and separate from `handlers` so that those stay wiring only.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import kopf
from aiohttp import web
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from flowable_worker_operator import handlers, metrics
from flowable_worker_operator.backlog import BacklogProber
from flowable_worker_operator.kube import ClusterWorkload
from flowable_worker_operator.main import OperatorConfig
from flowable_worker_operator.reconcile import Reconciler

__all__ = ["NoClusterError", "serve"]

log = logging.getLogger(__name__)


class NoClusterError(RuntimeError):
    """Neither a pod's service account nor a usable kubeconfig: nothing to talk to."""


def kubernetes_api_client() -> Any:
    """In a pod: its service account; elsewhere: `$KUBECONFIG` or ~/.kube/config."""
    try:
        k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException:
        try:
            k8s_config.load_kube_config()  # type: ignore[no-untyped-call]
        except (k8s_config.ConfigException, OSError) as error:
            where = os.environ.get("KUBECONFIG", "~/.kube/config")
            raise NoClusterError(
                f"no Kubernetes credentials: not in a pod, and no usable kubeconfig at {where} "
                f"({error})"
            ) from None
    return k8s.ApiClient()


async def serve(config: OperatorConfig) -> None:
    """Run until SIGTERM/SIGINT (kopf installs the signal handlers)."""
    api_client = kubernetes_api_client()
    prober = BacklogProber(
        max_age=config.probe_share_seconds,
        discovery_interval=config.discovery_interval_seconds,
    )
    workload = ClusterWorkload(api_client, default_image=config.worker_image)
    runtime = handlers.Runtime(
        workload=workload,
        prober=prober,
        reconciler=Reconciler(workload=workload, prober=prober),
    )
    ready = asyncio.Event()
    site = await _start_http(config, ready) if config.metrics_port else None
    try:
        await kopf.operator(
            clusterwide=not config.namespaces,
            namespaces=config.namespaces,
            standalone=True,
            memo=kopf.Memo(runtime=runtime),
            ready_flag=ready,
        )
    finally:
        await prober.aclose()
        if site is not None:
            await site.stop()
        api_client.close()


async def _start_http(config: OperatorConfig, ready: asyncio.Event) -> web.TCPSite:
    """`/metrics` (Prometheus) and `/healthz` (200 once kopf watches, 503 before) on one port."""

    async def metrics_page(_: web.Request) -> web.Response:
        body = generate_latest(metrics.REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        if ready.is_set():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="starting\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.metrics_host, config.metrics_port)
    await site.start()
    log.info("serving /metrics and /healthz on %s:%d", config.metrics_host, config.metrics_port)
    return site
