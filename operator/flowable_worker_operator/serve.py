"""Build the operator's shared parts and run kopf with them until a signal stops it.

Separate from `main` so that `--help` and configuration errors never import kopf or the
Kubernetes client, and separate from `handlers` so that those stay wiring only.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import kopf
from aiohttp import web
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from prometheus_client import CONTENT_TYPE_LATEST

from flowable_worker.metrics_access import authorized, read_token, server_tls_context
from flowable_worker_operator import handlers, metrics
from flowable_worker_operator.backlog import BacklogProber
from flowable_worker_operator.config import OperatorConfig, ShardingConfig
from flowable_worker_operator.deployment_cache import DeploymentCache, KubernetesDeployments
from flowable_worker_operator.heap_release import limit_arenas, release_periodically
from flowable_worker_operator.kube import ClusterWorkload
from flowable_worker_operator.leader import LeaderElector, LeadershipLostError
from flowable_worker_operator.owned_workload import OwnedWorkload
from flowable_worker_operator.reconcile import Reconciler, Workload
from flowable_worker_operator.shards import KubernetesShardLeases, ShardKeeper

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


GC_THRESHOLDS = (10_000, 10, 10)
"""The cyclic garbage collector's thresholds for the operator process (Python's: 700, 10, 10).

Most of the operator's heap lives as long as its pools (their objects as kopf keeps them, their
Deployments, their scaling state), and a full collection walks all of it: about 0.35 us per
object on a 2-core machine, so ~170 ms at 1000 pools and over a second at 10,000, each a pause of
every tick. What starts full collections is objects promoted to the oldest generation: with
Python's 700 a young collection comes every fraction of a second, so what a tick keeps for one
interval (the status it wrote, the history, the shared answers) outlives two of them and is
promoted, and at 1000 pools that made a full collection every ~25 s (py-spy: 15% of the
operator's CPU in the collector). With 10,000 the young collections come every few seconds and
such objects die before they are promoted twice; cyclic garbage still goes within seconds."""


def tune_garbage_collector() -> None:
    """Set `GC_THRESHOLDS` for this process (what the operator process runs with)."""
    gc.set_threshold(*GC_THRESHOLDS)


async def serve(config: OperatorConfig) -> None:
    """Run until SIGTERM/SIGINT (kopf installs the signal handlers)."""
    tune_garbage_collector()
    limit_arenas()  # before the Kubernetes client starts its threads
    api_client = kubernetes_api_client()
    prober = BacklogProber(
        max_age=config.probe_share_seconds,
        discovery_interval=config.discovery_interval_seconds,
    )
    watch_client = _watch_client(len(config.namespaces) or 1)
    deployments = deployment_cache(watch_client, config.namespaces)
    deployments.start()
    workload = ClusterWorkload(
        api_client, default_image=config.worker_image, deployments=deployments
    )
    keeper = _shard_keeper(api_client, config.sharding) if config.sharding else None
    ticked: Workload = workload if keeper is None else OwnedWorkload(workload, keeper.owns)
    runtime = handlers.Runtime(
        workload=workload,
        prober=prober,
        reconciler=Reconciler(
            workload=ticked,
            prober=prober,
            pod_security=config.pod_security,
            max_replicas_limit=config.max_replicas_limit,
            engine_max_age=config.probe_share_seconds,
        ),
        shards=keeper,
    )
    if keeper is not None:
        keeper.busy = runtime.busy
    ready = asyncio.Event()
    elector: LeaderElector | None = None
    if config.leader_election is not None:
        elector = LeaderElector(
            api_client,
            namespace=config.leader_election.namespace,
            name=config.leader_election.name,
            identity=config.leader_election.identity,
        )

    def healthy() -> bool:
        # Alive: kopf watches the API, or this process waits as a standby for the Lease.
        standby = elector is not None and not elector.is_leader and not elector.lost.is_set()
        return ready.is_set() or standby

    async def run_kopf(stop: asyncio.Event | None) -> None:
        try:
            await kopf.operator(
                clusterwide=not config.namespaces,
                namespaces=config.namespaces,
                standalone=True,
                memo=kopf.Memo(runtime=runtime),
                ready_flag=ready,
                stop_flag=stop,
            )
        finally:
            # The pools' clock is the operator's, not one of kopf's tasks: it stops with kopf
            # also when kopf is cancelled (a lost Lease), so that no tick outlives it.
            await runtime.stop()

    metrics.LEADER.set(0)
    site = await _start_http(config, healthy) if config.metrics_port else None
    sharing = asyncio.ensure_future(keeper.run()) if keeper is not None else None
    trimming = asyncio.ensure_future(release_periodically())
    try:
        if elector is None:
            metrics.LEADER.set(1)  # alone, or one of the replicas sharing shards: it acts
            await run_kopf(None)
        else:
            await lead(elector, run_kopf)
    finally:
        metrics.LEADER.set(0)
        trimming.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await trimming
        if sharing is not None and keeper is not None:
            sharing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sharing
            await keeper.stop()
        await prober.aclose()
        await asyncio.to_thread(deployments.stop)
        watch_client.close()
        if site is not None:
            await site.stop()
        api_client.close()


def _watch_client(watches: int) -> Any:
    """An API client of its own for the Deployment watches: each holds a connection open for
    minutes, which must not take the ticks' connections from their pool."""
    configuration = k8s.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = max(watches, 1)
    return k8s.ApiClient(configuration)


def deployment_cache(api_client: Any, namespaces: tuple[str, ...]) -> DeploymentCache:
    """The watch of the pools' worker Deployments: one per watched namespace, or one for all.

    A namespace given as a pattern (kopf accepts globs) gets no watch: its pools' Deployments
    are read by GET, as a cache that has not seen them would."""
    if not namespaces:
        return DeploymentCache([KubernetesDeployments(api_client, None)])
    plain = [ns for ns in namespaces if not set(ns) & set("*?[]!")]
    return DeploymentCache([KubernetesDeployments(api_client, ns) for ns in dict.fromkeys(plain)])


def _shard_keeper(api_client: Any, sharding: ShardingConfig) -> ShardKeeper:
    """The keeper of this replica's shards; timings in the proportions of client-go's leader
    election (15 s lease, 10 s deadline), renewals every third of the lease to keep writes few."""
    lease = timedelta(seconds=sharding.lease_seconds)
    log.info(
        "sharding: %d shards, Leases %s/%s-shard-*, %s as %s",
        sharding.shards,
        sharding.namespace,
        sharding.prefix,
        lease,
        sharding.identity,
    )
    return ShardKeeper(
        api=KubernetesShardLeases(api_client),
        namespace=sharding.namespace,
        prefix=sharding.prefix,
        identity=sharding.identity,
        shards=sharding.shards,
        lease_duration=lease,
        renew_deadline=lease * 2 / 3,
        renew_every=lease / 3,
        retry_period=min(timedelta(seconds=2), lease / 6),
        on_change=lambda owned: metrics.SHARDS_OWNED.set(len(owned)),
    )


async def lead(elector: LeaderElector, run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Wait for the Lease as a standby, then `run` kopf until a signal stops it or the Lease goes.

    SIGTERM/SIGINT while waiting end the wait (exit 0); once kopf runs it handles them itself.
    A stopped leader releases the Lease. A lost Lease stops kopf (`stop`, and a hard cancel if it
    takes longer than the margin left before a standby may take over) and raises
    `LeadershipLostError`: the process exits non-zero, and Kubernetes restarts it as a standby.
    """
    stop = asyncio.Event()
    _on_signals(stop.set)
    acquiring = asyncio.ensure_future(elector.acquire())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({acquiring, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not acquiring.done():
        acquiring.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await acquiring
        log.info("leader election: stopped while waiting as a standby")
        return
    stopping.cancel()
    acquiring.result()
    metrics.LEADER.set(1)
    kopf_task = asyncio.ensure_future(run(stop))
    lost = asyncio.ensure_future(elector.lost.wait())
    try:
        await asyncio.wait({kopf_task, lost}, return_when=asyncio.FIRST_COMPLETED)
        if elector.lost.is_set():
            metrics.LEADER.set(0)
            stop.set()
            margin = elector.lease_duration - elector.renew_deadline - timedelta(seconds=1)
            try:
                await asyncio.wait_for(kopf_task, timeout=max(0.5, margin.total_seconds()))
            except TimeoutError:
                log.warning("leader election: kopf did not stop in time; cancelled")
            except Exception:
                log.exception("leader election: kopf failed while stopping")
            raise LeadershipLostError(
                f"lost the leader-election Lease {elector.namespace}/{elector.name}; "
                "exiting to come back as a standby"
            )
        await kopf_task
    finally:
        lost.cancel()
        if not kopf_task.done():
            kopf_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await kopf_task
        await elector.release()


def _on_signals(callback: Callable[[], object]) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, callback)


async def _start_http(config: OperatorConfig, healthy: Callable[[], bool]) -> web.TCPSite:
    """`/metrics` (Prometheus) and `/healthz` on one port. `/healthz` answers 200 once kopf
    watches, or while a standby waits for the Lease; 503 before.

    With `--metrics-tls-cert` the port speaks HTTPS; with `--metrics-auth-token-file` `/metrics`
    answers 401 without the bearer token, while `/healthz` stays open for the kubelet
    (`flowable_worker.metrics_access`, shared with the worker)."""
    tls = None
    if config.metrics_tls_cert is not None:
        tls = server_tls_context(config.metrics_tls_cert, config.metrics_tls_key)
    token = None
    if config.metrics_auth_token_file is not None:
        token = read_token(config.metrics_auth_token_file)

    async def metrics_page(request: web.Request) -> web.StreamResponse:
        if not authorized(request.headers.get("Authorization"), token):
            return web.Response(
                status=401,
                text="unauthorized: /metrics needs the bearer token\n",
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
        # Written as it is joined, never whole (metrics.PAGE): at 10,000 pools the page is about
        # 31 MB, and an inline render of it stalled every tick for seconds.
        page = await metrics.PAGE.render()
        response = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE_LATEST})
        await response.prepare(request)
        for chunk in page.chunks():
            await response.write(chunk)
        await response.write_eof()
        return response

    async def healthz(_: web.Request) -> web.Response:
        if healthy():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="starting\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.metrics_host, config.metrics_port, ssl_context=tls)
    await site.start()
    log.info(
        "serving /metrics and /healthz on %s://%s:%d%s",
        "https" if tls is not None else "http",
        config.metrics_host,
        config.metrics_port,
        " (/metrics needs a bearer token)" if token is not None else "",
    )
    return site
