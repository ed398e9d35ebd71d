"""`make demo`: the whole product on this machine, watched live.

Starts the real Flowable 7.2 test server and the local Kubernetes control plane (pods run as local
processes), installs the pool CRD, runs `flowable-worker-operator` as a process, deploys the example
invoice process (examples/invoice.bpmn20.xml) and an `ExternalWorkerPool` for its topic, then
starts a wave of process instances. A live table shows the backlog Flowable reports, the replicas
the operator decides, the worker processes running and the instances finished, until the backlog
is drained and the pool has cooled down to zero. A summary follows; `--keep` leaves everything
running for `kubectl` until Ctrl-C. Everything listens on 127.0.0.1 and stops on exit.

`--containers` runs the worker pods as podman containers instead: `make images` builds the
worker image (cached), examples/handler-image is built on it, and the pool names that image, so
each pod is a container of it (uid 10001, read-only root) running `invoices.handlers:check`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from rich.console import Console
from rich.live import Live
from rich.table import Table

from localstack import podman
from localstack.cluster import LocalCluster, MissingPrerequisiteError, find_bin_dir
from localstack.flowable_server import FlowableRestApi, FlowableServer, FlowableServerError
from localstack.operator_process import OperatorProcessError, run_operator
from localstack.podrunner import RUN_AS_CONTAINER_LABEL, RUN_AS_PROCESS_LABEL, PodRunner

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CRD = REPO / "deploy" / "crds" / "externalworkerpools.flowable-worker.io.yaml"
MODEL = REPO / "examples" / "invoice.bpmn20.xml"
NAMESPACE = "demo"
POOL = "invoices"
GROUP, VERSION, PLURAL = "flowable-worker.io", "v1alpha1", "externalworkerpools"

console = Console()


@dataclass
class Sample:
    """One row of the live view."""

    elapsed: float
    unlocked: int | None
    locked: int | None
    desired: int | None
    replicas: int
    processes: int
    finished: int
    reason: str


@dataclass
class Run:
    started: float = field(default_factory=time.monotonic)
    samples: list[Sample] = field(default_factory=list)


def process_worker(args: argparse.Namespace) -> dict[str, Any]:
    """Pods as local `flowable-worker` processes running examples/handlers.py."""
    return {
        "handler": {"python": "handlers:check_invoice_slowly"},
        "env": [
            {"name": "PYTHONPATH", "value": str(REPO / "examples")},
            {"name": "DEMO_WORK_SECONDS", "value": str(args.work_seconds)},
        ],
        "template": {
            "metadata": {"labels": {RUN_AS_PROCESS_LABEL: "true"}},
            "spec": {"containers": [{"name": "worker", "command": [str(BIN / "flowable-worker")]}]},
        },
    }


def container_worker(args: argparse.Namespace, image: str) -> dict[str, Any]:
    """Pods as containers of the handler image (examples/handler-image), as on a real cluster;
    the read-only root, no privilege escalation and no capabilities are the operator's defaults."""
    return {
        "image": image,
        "handler": {"python": "invoices.handlers:check"},
        "env": [{"name": "INVOICES_WORK_SECONDS", "value": str(args.work_seconds)}],
        "template": {
            "metadata": {"labels": {RUN_AS_CONTAINER_LABEL: "true"}},
        },
    }


def pool_spec(flowable_url: str, args: argparse.Namespace, image: str | None) -> dict[str, Any]:
    """The demo's pool: the example handler, slowed down so the scaling is visible; its pods are
    containers of ``image`` when one is given, else local processes."""
    worker = process_worker(args) if image is None else container_worker(args, image)
    # Worker pods share this machine's ports: no metrics server per pod here.
    worker["env"].append({"name": "FLOWABLE_WORKER_METRICS_PORT", "value": "0"})
    return {
        "engine": {"url": flowable_url},
        "topic": "invoice-check",
        "worker": {
            **worker,
            "concurrency": args.concurrency,
            "lockDuration": "PT1M",
            "terminationGracePeriodSeconds": 10,
        },
        "scaling": {
            "maxReplicas": args.max_replicas,
            "pollingInterval": "2s",
            "cooldownPeriod": f"{args.cooldown}s",
            # Faster steps than HPA's default (4 pods per 15 s), so a short demo shows them.
            "behavior": {
                "scaleUp": {"policies": [{"type": "Pods", "value": 2, "periodSeconds": 4}]},
                "scaleDown": {"stabilizationWindowSeconds": 5},
            },
        },
    }


def observe(run: Run, runner: PodRunner, finished: int) -> Sample:
    pool = cast(
        "dict[str, Any]",
        k8s_client.CustomObjectsApi().get_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, POOL
        ),
    )
    status: dict[str, Any] = pool.get("status") or {}
    backlog: dict[str, int] = status.get("backlog") or {}
    conditions: list[dict[str, Any]] = status.get("conditions") or []
    ready = next((c for c in conditions if c["type"] == "Ready"), {})
    try:
        scale = k8s_client.AppsV1Api().read_namespaced_deployment_scale(f"{POOL}-worker", NAMESPACE)
        replicas = int(scale.spec.replicas or 0) if scale.spec is not None else 0
    except k8s_client.ApiException:
        replicas = 0
    sample = Sample(
        elapsed=time.monotonic() - run.started,
        unlocked=backlog.get("unlocked"),
        locked=backlog.get("locked"),
        desired=status.get("desiredReplicas"),
        replicas=replicas,
        processes=len(runner.running(NAMESPACE)),
        finished=finished,
        reason=str(ready.get("reason", "")),
    )
    run.samples.append(sample)
    return sample


def table(run: Run, total: int) -> Table:
    view = Table(title=f"pool {NAMESPACE}/{POOL}: {total} invoices on topic invoice-check")
    for column in ("t(s)", "unlocked", "locked", "desired", "replicas", "workers", "done"):
        view.add_column(column, justify="right")
    view.add_column("decision")
    for s in run.samples[-15:]:
        view.add_row(
            f"{s.elapsed:5.1f}",
            _n(s.unlocked),
            _n(s.locked),
            _n(s.desired),
            str(s.replicas),
            str(s.processes),
            f"{s.finished}/{total}",
            s.reason,
        )
    return view


def _n(value: int | None) -> str:
    return "-" if value is None else str(value)


async def finished_count(http: httpx.AsyncClient, definition_id: str) -> int:
    page = (
        await http.get(
            "/process-api/history/historic-process-instances",
            params={"processDefinitionId": definition_id, "finished": "true", "size": 1},
        )
    ).json()
    return int(page["total"])


async def outcomes(http: httpx.AsyncClient, definition_id: str) -> dict[str, int]:
    """How the finished instances ended: approved, or rejected by the TOO_BIG BPMN error."""
    counts: dict[str, int] = {}
    for end in ("approved", "rejected"):
        page = (
            await http.get(
                "/process-api/history/historic-activity-instances",
                params={"processDefinitionId": definition_id, "activityId": end, "size": 1},
            )
        ).json()
        counts[end] = int(page["total"])
    page = (
        await http.get(
            "/process-api/history/historic-activity-instances",
            params={
                "processDefinitionId": definition_id,
                "activityId": "checkInvoice",
                "finished": "true",
                "size": 1,
            },
        )
    ).json()
    counts["checks"] = int(page["total"])
    return counts


def container_image() -> str:
    """`make images` (the worker image; cached after the first time), then the handler image."""
    console.print("building the images (podman; cached after the first run) ...")
    podman.ensure_podman()
    worker = podman.build_images("worker")["worker"]
    image = podman.build_handler_image(worker)
    console.print(f"worker pods will be containers of {image} (FROM {worker})")
    return image


async def demo(args: argparse.Namespace, workdir: Path) -> int:
    console.print("[bold]flowable-worker-operator demo[/bold] (everything on 127.0.0.1)")
    image = container_image() if args.containers else None
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(FlowableServer())
        console.print(f"Flowable 7.2 ready at {server.base_url} ({server.startup_seconds:.1f}s)")
        cluster = stack.enter_context(LocalCluster(bin_dir=find_bin_dir(), workdir=workdir / "k8s"))
        console.print(
            f"Kubernetes v1.36 control plane ready ({cluster.ready_seconds:.1f}s); "
            f"KUBECONFIG={cluster.kubeconfig}"
        )
        k8s_config.load_kube_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
        runner = PodRunner(cluster.kubeconfig, workdir / "pods", containers=image is not None)
        runner.start()
        stack.callback(runner.stop, 5)
        cluster.kubectl("apply", "-f", str(CRD))
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{PLURAL}.{GROUP}")
        cluster.kubectl("create", "namespace", NAMESPACE)
        operator = stack.enter_context(
            run_operator(cluster.kubeconfig, NAMESPACE, workdir / "operator.log")
        )
        console.print(f"operator running (pid {operator.process.pid}, {operator.metrics_url})")

        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            model = await FlowableRestApi(http).deploy(
                MODEL.read_text(), scope_type="bpmn", resource_name=MODEL.name
            )
            k8s_client.CustomObjectsApi().create_namespaced_custom_object(
                GROUP,
                VERSION,
                NAMESPACE,
                PLURAL,
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "ExternalWorkerPool",
                    "metadata": {"name": POOL},
                    "spec": pool_spec(server.base_url, args, image),
                },
            )
            console.print(
                f"pool {POOL} created: topic invoice-check, {args.concurrency} jobs per "
                f"worker, at most {args.max_replicas} replicas; starting "
                f"{args.jobs} invoices"
            )
            api = FlowableRestApi(http)
            rng = random.Random(7)
            run = Run()
            gate = asyncio.Semaphore(16)

            async def start_one() -> None:
                async with gate:
                    amount = rng.randint(1, 2000)
                    await api.start_process_instance(
                        definition_id=model.definition_id,
                        variables=[{"name": "amount", "type": "integer", "value": amount}],
                    )

            await asyncio.gather(*(start_one() for _ in range(args.jobs)))
            first_replica = drained = cooled = None
            deadline = time.monotonic() + args.timeout
            with Live(table(run, args.jobs), console=console, refresh_per_second=4) as live:
                while time.monotonic() < deadline:
                    done = await finished_count(http, model.definition_id)
                    sample = await asyncio.to_thread(observe, run, runner, done)
                    live.update(table(run, args.jobs))
                    if first_replica is None and sample.replicas > 0:
                        first_replica = sample.elapsed
                    if drained is None and done == args.jobs:
                        drained = sample.elapsed
                    if drained is not None and sample.replicas == 0 and sample.processes == 0:
                        cooled = sample.elapsed
                        break
                    await asyncio.sleep(0.5)
            ends = await outcomes(http, model.definition_id)
        peak = max((s.replicas for s in run.samples), default=0)
        console.print(
            f"\nfirst worker replica after {_s(first_replica)}, peak {peak} replicas, all "
            f"{args.jobs} invoices finished after {_s(drained)}, back to zero after {_s(cooled)}"
        )
        console.print(
            f"approved {ends['approved']}, rejected (BPMN error TOO_BIG) "
            f"{ends['rejected']}; invoice checks completed: {ends['checks']} "
            f"(one per invoice: {ends['checks'] == args.jobs})"
        )
        events = (
            k8s_client.CoreV1Api()
            .list_namespaced_event(NAMESPACE, field_selector=f"involvedObject.name={POOL}")
            .items
        )
        for event in sorted(events, key=lambda e: str(e.metadata.creation_timestamp)):
            console.print(f"  event {event.reason}: {event.message}")
        ok = drained is not None and cooled is not None and ends["checks"] == args.jobs
        if args.keep:
            console.print(
                f"\nstill running; try:\n  export KUBECONFIG={cluster.kubeconfig}\n"
                f"  {cluster.bin_dir / 'kubectl'} get ewp -n {NAMESPACE}\n"
                "Ctrl-C stops everything."
            )
            with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
                await asyncio.Event().wait()
        return 0 if ok else 1


def _s(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f}s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=240, help="invoices to start (default 240)")
    parser.add_argument(
        "--work-seconds",
        type=float,
        default=0.5,
        help="how long the example handler works on one invoice (default 0.5)",
    )
    parser.add_argument("--concurrency", type=int, default=4, help="jobs per worker (default 4)")
    parser.add_argument("--max-replicas", type=int, default=6, help="default 6")
    parser.add_argument(
        "--cooldown", type=int, default=10, help="idle seconds before scaling to zero (default 10)"
    )
    parser.add_argument("--timeout", type=float, default=300, help="give up after (default 300 s)")
    parser.add_argument(
        "--keep", action="store_true", help="leave everything running for kubectl until Ctrl-C"
    )
    parser.add_argument(
        "--containers",
        action="store_true",
        help="worker pods as podman containers of the handler image (examples/handler-image) "
        "instead of local processes; builds the images first (make images)",
    )
    args = parser.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="fwo-demo-") as workdir:
            return asyncio.run(demo(args, Path(workdir)))
    except (
        MissingPrerequisiteError,
        FlowableServerError,
        OperatorProcessError,
        podman.PodmanError,
    ) as error:
        print(f"make demo: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
