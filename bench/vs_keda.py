"""This operator against the real KEDA, side by side on one cluster, one Flowable, one trace.

Everything is real: the local control plane (its kube-controller-manager runs the HPA), KEDA
v2.21.0's operator and metrics adapter built from its Go module (``make keda-bin``), one real
Flowable server, this operator as its console script, and ``flowable-worker`` processes for every
pod of both pools (``localstack.podrunner``).

Contenders, on two topics of the same one-task model (deployed once per topic), the same handler
(``bench.vs_keda_handler:work``: sleeps the job's ``seconds``), concurrency, lock duration and
termination grace; the same jobs per replica, min/max replicas, polling interval and cooldown:

- ``keda``: what a KEDA user writes for Flowable (``localstack.keda_pool``): a ScaledObject with
  the ``metrics-api`` trigger on ``GET /external-job-api/jobs?unlocked=true&size=1&elementId=..
  &processDefinitionId=..``, ``valueLocation: total``, ``targetValue`` = jobs per replica, basic
  auth through a TriggerAuthentication, the HPA's default behavior;
- ``ours``: an ExternalWorkerPool with ``spec.worker`` (the operator owns the Deployment).

Both receive the same arrivals at the same moments (one instance per topic per arrival). Figures
per contender, from Flowable's history and the handler's log:

- job wait p50 / p95 / max: process instance start (= job creation) to the handler's start;
- end-to-end p50 / p95: instance start to instance end;
- replica-seconds: running worker processes integrated over the measured window (from the first
  arrival until both pools are drained and back at zero, or ``--settle`` runs out);
- cut short: instances one of whose runs started and never finished (the worker was killed
  mid-job, the lock expired, the job ran again); run twice: instances completed twice;
- scale-up reaction: first arrival to the first worker process of the pool starting.

Traces (``--trace``, repeatable; each lasts ``--duration`` of wall time, 600 s by default as
issue 12 asks, then waits up to ``--settle`` for both pools to drain and reach zero):

- ``burst``: ``--burst`` jobs per topic at t=0, then silence;
- ``steady``: Poisson arrivals at ``--rate`` jobs/s, drawn second by second (``--seed``);
- ``ramp``: the same, the rate rising linearly to ``--peak-rate`` at half time and back to 0;
- ``waves``: ``--waves`` waves of ``--wave-size`` long jobs (``--long-job-seconds``, far beyond
  the polling interval) over the first two thirds of the duration.

Each trace gets pools and topics of its own, starting at zero.

Prints one table per trace, then as the last line one JSON object. Stops everything it started.
A bad setup (no KEDA build, the adapter never Available, the APIService unreachable) ends it with
one ``error:`` line and exit code 2.

Run: ``make bench-keda BENCH_ARGS="--duration 120 --burst 24"``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from localstack.cluster import (  # noqa: E402
    ClusterStartError,
    LocalCluster,
    MissingPrerequisiteError,
)
from localstack.flowable_server import FlowableServerError, start_flowable_server  # noqa: E402
from localstack.keda_pool import KedaPool  # noqa: E402
from localstack.keda_stack import (  # noqa: E402
    KedaSetupError,
    KedaStack,
    find_keda_bin_dir,
    find_keda_crd_dir,
)
from localstack.operator_process import OperatorProcessError, run_operator  # noqa: E402
from localstack.podrunner import RUN_AS_PROCESS_LABEL, PodRunner  # noqa: E402
from tests.support.real_flowable import RealFlowable  # noqa: E402

CRD = REPO_ROOT / "deploy" / "crds" / "externalworkerpools.flowable-worker.io.yaml"
WORKER = Path(sys.executable).parent / "flowable-worker"
HANDLER = "bench.vs_keda_handler:work"
CONTENDERS = ("keda", "ours")


Arrivals = list[tuple[float, int]]


@dataclass(frozen=True)
class Trace:
    """Arrivals as (seconds after the start, instances per topic), a handler duration, and the
    wall time the trace lasts at least."""

    name: str
    arrivals: Arrivals
    job_seconds: float
    duration: float


def burst_trace(args: argparse.Namespace) -> Trace:
    """``--burst`` jobs at t=0, then silence: activation speed, then the way back to zero."""
    return Trace("burst", [(0.0, args.burst)], args.job_seconds, args.duration)


def _poisson_seconds(rate: Callable[[float], float], duration: float, seed: int) -> Arrivals:
    """Arrivals second by second, each second's count Poisson-drawn at ``rate(t)`` (seeded:
    every run and both contenders get the same trace)."""
    rng = random.Random(seed)
    arrivals: Arrivals = []
    for second in range(int(duration)):
        count, limit, product = 0, math.exp(-max(rate(second), 0.0)), rng.random()
        while product > limit:  # Knuth's method: fine for the small rates used here
            count += 1
            product *= rng.random()
        if count:
            arrivals.append((float(second), count))
    return arrivals


def steady_trace(args: argparse.Namespace) -> Trace:
    """Steady arrivals with noise: ``--rate`` jobs/s on average for the whole duration."""
    arrivals = _poisson_seconds(lambda _t: args.rate, args.duration, args.seed)
    return Trace("steady", arrivals, args.job_seconds, args.duration)


def ramp_trace(args: argparse.Namespace) -> Trace:
    """A ramp up to ``--peak-rate`` jobs/s at half the duration, and down to 0 at the end."""
    half = args.duration / 2

    def rate(t: float) -> float:
        return float(args.peak_rate * (1 - abs(t - half) / half))

    return Trace(
        "ramp", _poisson_seconds(rate, args.duration, args.seed), args.job_seconds, args.duration
    )


def waves_trace(args: argparse.Namespace) -> Trace:
    """Long jobs (``--long-job-seconds``, far beyond the polling interval) in ``--waves`` waves
    of ``--wave-size``, evenly spread over the first two thirds of the duration."""
    gap = args.duration * 2 / 3 / max(args.waves, 1)
    arrivals = [(round(i * gap, 1), args.wave_size) for i in range(args.waves)]
    return Trace("waves", arrivals, args.long_job_seconds, args.duration)


TRACES = {"burst": burst_trace, "steady": steady_trace, "ramp": ramp_trace, "waves": waves_trace}


@dataclass
class Pool:
    """One contender's topic, model and Deployment, and its handler log."""

    name: str
    resource: str  # the ScaledObject's or the ExternalWorkerPool's name
    topic: str
    element_id: str
    log: Path
    definition_id: str = ""

    @property
    def deployment(self) -> str:
        return f"{self.resource}-worker"


@dataclass
class Sampler:
    """Counts each pool's running worker processes every ``interval`` s and integrates them."""

    runner: PodRunner
    namespace: str
    pools: list[Pool]
    interval: float = 0.25
    replica_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    running: dict[str, int] = field(default_factory=dict)
    # Per pool, (seconds since the sampler started, running processes) at every change.
    changes: dict[str, list[tuple[float, int]]] = field(default_factory=lambda: defaultdict(list))
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        last = started = time.monotonic()
        while not self._stop.wait(self.interval):
            now = time.monotonic()
            procs = self.runner.running(self.namespace)
            for pool in self.pools:
                count = sum(1 for p in procs if p.name.startswith(f"{pool.deployment}-"))
                if self.running.get(pool.name) != count:
                    self.changes[pool.name].append((round(now - started, 1), count))
                self.running[pool.name] = count
                self.replica_seconds[pool.name] += count * (now - last)
            last = now

    def unasked_exits(self, pool: Pool) -> int:
        """Worker processes of the pool that ended while nobody deleted their pod (crashes)."""
        return sum(
            1
            for p in self.runner.processes(self.namespace)
            if p.name.startswith(f"{pool.deployment}-")
            and p.returncode is not None
            and p.terminating_since is None
        )

    def first_start(self, pool: Pool, since: float) -> float | None:
        """When the pool's first worker process started after ``since`` (monotonic)."""
        starts = [
            p.started_at
            for p in self.runner.processes(self.namespace)
            if p.name.startswith(f"{pool.deployment}-") and p.started_at >= since
        ]
        return min(starts) if starts else None


def _instant(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _history(base_url: str, definition_id: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        page = (
            await http.get(
                "/process-api/history/historic-process-instances",
                params={"processDefinitionId": definition_id, "size": 100000},
            )
        ).json()
    return list(page["data"])


def _runs(log: Path) -> dict[str, list[tuple[str, str, float]]]:
    """Per process instance, its handler lines (worker, start|done, time) in order."""
    runs: dict[str, list[tuple[str, str, float]]] = defaultdict(list)
    if log.exists():
        for line in log.read_text().splitlines():
            instance, worker, what, at = line.split()
            runs[instance].append((worker, what, float(at)))
    return runs


def figures(
    pool: Pool, history: list[dict[str, Any]], sampler: Sampler, t0: float, window: float
) -> dict[str, Any]:
    """The issue's figures for one contender (seconds; None where nothing was measured)."""
    runs = _runs(pool.log)
    waits, e2e = [], []
    cut_short = run_twice = 0
    for row in history:
        created = _instant(row["startTime"])
        lines = runs.get(row["id"], [])
        starts = [at for _w, what, at in lines if what == "start"]
        if starts:
            waits.append(min(starts) - created)
        if row.get("endTime"):
            e2e.append(_instant(row["endTime"]) - created)
        per_worker: dict[str, int] = defaultdict(int)
        for worker, what, _at in lines:
            per_worker[worker] += 1 if what == "start" else -1
        cut_short += any(n > 0 for n in per_worker.values())
        run_twice += sum(1 for _w, what, _at in lines if what == "done") > 1
    first = sampler.first_start(pool, t0)
    first_runs = [at for lines in runs.values() for _w, what, at in lines if what == "start"]
    t0_wall = time.time() - (time.monotonic() - t0)

    def r(value: float | None) -> float | None:
        return None if value is None else round(value, 2)

    return {
        "jobs": len(history),
        "finished": sum(1 for row in history if row.get("endTime")),
        "wait_p50": r(_pct(waits, 0.5)),
        "wait_p95": r(_pct(waits, 0.95)),
        "wait_max": r(max(waits) if waits else None),
        "e2e_p50": r(_pct(e2e, 0.5)),
        "e2e_p95": r(_pct(e2e, 0.95)),
        "replica_seconds": r(sampler.replica_seconds[pool.name]),
        "window_seconds": r(window),
        "cut_short": cut_short,
        "run_twice": run_twice,
        "scale_up_reaction": r(None if first is None else first - t0),
        # Diagnostics: when the first job of the trace reached a handler, and worker processes
        # that exited on their own (a pod that started and never worked shows here).
        "first_job_started": r(min(first_runs) - t0_wall if first_runs else None),
        "worker_crashes": sampler.unasked_exits(pool),
        # (seconds, running worker processes) at each change: JSON only, not the table.
        "replicas_seen": sampler.changes[pool.name],
    }


def print_table(trace: Trace, results: dict[str, dict[str, Any]]) -> None:
    first = next(iter(results.values()))
    keys = [key for key, value in first.items() if not isinstance(value, list)]
    print(
        f"\ntrace {trace.name}: {sum(c for _t, c in trace.arrivals)} jobs per topic in "
        f"{len(trace.arrivals)} arrivals over {trace.duration:g} s, handler {trace.job_seconds:g} s"
    )
    print(f"{'':<20}" + "".join(f"{name:>12}" for name in results))
    for key in keys:
        cells = "".join(f"{results[name][key]!s:>12}" for name in results)
        print(f"{key:<20}{cells}")


def _namespace(cluster: LocalCluster) -> str:
    name = f"bench-{uuid.uuid4().hex[:6]}"
    status, body = cluster.api(
        "POST",
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
    )
    if status != 201:
        raise ClusterStartError(f"creating namespace {name}: HTTP {status}: {body}")
    deadline = time.monotonic() + 60
    while cluster.api("GET", f"/api/v1/namespaces/{name}/serviceaccounts/default")[0] != 200:
        if time.monotonic() > deadline:
            raise ClusterStartError(f"no default ServiceAccount in {name} after 60 s")
        time.sleep(0.2)
    return name


def _worker_env(log: Path) -> dict[str, str]:
    return {
        "PYTHONPATH": str(REPO_ROOT),
        "FWO_BENCH_LOG": str(log),
        "FLOWABLE_WORKER_METRICS_PORT": "0",
        "FLOWABLE_WORKER_LOG_FORMAT": "text",
    }


def create_pools(
    cluster: LocalCluster,
    namespace: str,
    base_url: str,
    pools: dict[str, Pool],
    args: argparse.Namespace,
) -> None:
    keda, ours = pools["keda"], pools["ours"]
    KedaPool(
        name=keda.resource,
        namespace=namespace,
        engine_url=base_url,
        topic=keda.topic,
        element_id=keda.element_id,
        process_definition_id=keda.definition_id,
        handler=HANDLER,
        jobs_per_replica=args.jobs_per_replica,
        max_replicas=args.max_replicas,
        cooldown_seconds=args.cooldown,
        polling_interval_seconds=args.polling_interval,
        concurrency=args.concurrency,
        lock_duration=args.lock_duration,
        termination_grace_seconds=args.grace,
        command=[str(WORKER)],
        extra_env=_worker_env(keda.log),
    ).create(cluster)
    env = [{"name": k, "value": v} for k, v in _worker_env(ours.log).items()]
    spec = {
        "engine": {"url": base_url},
        "topic": ours.topic,
        "worker": {
            "handler": {"python": HANDLER},
            "concurrency": args.concurrency,
            "lockDuration": args.lock_duration,
            "terminationGracePeriodSeconds": args.grace,
            "env": env,
            "template": {
                "metadata": {"labels": {RUN_AS_PROCESS_LABEL: "true"}},
                "spec": {"containers": [{"name": "worker", "command": [str(WORKER)]}]},
            },
        },
        "scaling": {
            "minReplicas": 0,
            "maxReplicas": args.max_replicas,
            "jobsPerReplica": args.jobs_per_replica,
            "pollingInterval": f"{args.polling_interval}s",
            "cooldownPeriod": f"{args.cooldown}s",
        },
    }
    body = {
        "apiVersion": "flowable-worker.io/v1alpha1",
        "kind": "ExternalWorkerPool",
        "metadata": {"name": ours.resource, "namespace": namespace},
        "spec": spec,
    }
    path = f"/apis/flowable-worker.io/v1alpha1/namespaces/{namespace}/externalworkerpools"
    status, answer = cluster.api("POST", path, body)
    if status != 201:
        raise ClusterStartError(f"creating the ExternalWorkerPool: HTTP {status}: {answer}")


async def play(real: RealFlowable, trace: Trace, pools: dict[str, Pool], t0: float) -> None:
    """Start each arrival's instances on every topic at once, at its offset from ``t0``."""
    for offset, count in trace.arrivals:
        await asyncio.sleep(max(0.0, t0 + offset - time.monotonic()))
        await asyncio.gather(
            *(
                real.create_jobs(
                    p.topic,
                    count,
                    element_id=p.element_id,
                    variables={"seconds": trace.job_seconds},
                )
                for p in pools.values()
            )
        )


async def wait_scalers_ready(
    cluster: LocalCluster, namespace: str, pools: dict[str, Pool], within: float
) -> None:
    """Until KEDA's ScaledObject is Ready and this operator's pool has found its topic."""
    keda, ours = pools["keda"], pools["ours"]
    scaled = f"/apis/keda.sh/v1alpha1/namespaces/{namespace}/scaledobjects/{keda.resource}"
    group = "/apis/flowable-worker.io/v1alpha1"
    pool = f"{group}/namespaces/{namespace}/externalworkerpools/{ours.resource}"
    deadline = time.monotonic() + within
    while True:
        _s, so = cluster.api("GET", scaled)
        _p, ewp = cluster.api("GET", pool)
        so_ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (so.get("status") or {}).get("conditions") or []
        )
        found = any(
            sel.get("topic") == ours.topic
            for sel in (ewp.get("status") or {}).get("selectors") or []
        )
        if so_ready and found:
            return
        if time.monotonic() > deadline:
            raise ClusterStartError(
                f"scalers not ready after {within:.0f} s: ScaledObject Ready={so_ready}, "
                f"pool found its topic={found}"
            )
        await asyncio.sleep(1.0)


async def run_trace(
    cluster: LocalCluster,
    runner: PodRunner,
    real: RealFlowable,
    namespace: str,
    trace: Trace,
    args: argparse.Namespace,
    workdir: Path,
) -> dict[str, dict[str, Any]]:
    tag = uuid.uuid4().hex[:6]
    pools = {
        name: Pool(
            name=name,
            topic=f"{trace.name}-{name}-{tag}",
            element_id=f"{trace.name}_{name}_{tag}",
            resource=f"{name}-{trace.name}",
            log=workdir / f"{trace.name}-{name}.log",
        )
        for name in CONTENDERS
    }
    async with real.api() as api:
        for pool in pools.values():
            model = await real.model_for(
                api,
                topic=pool.topic,
                scope_type="bpmn",
                tenant_id=None,
                element_id=pool.element_id,
            )
            pool.definition_id = model.definition_id
    create_pools(cluster, namespace, real.base_url, pools, args)
    # Both scalers must know the topic before the first arrival, as in a cluster that has run
    # for a while: the operator may still hold an engine's definition listing from before the
    # model was deployed (a later trace's pool reported TopicNotFound for up to 50 s).
    await wait_scalers_ready(cluster, namespace, pools, within=args.settle)
    await asyncio.sleep(args.polling_interval + 5)
    sampler = Sampler(runner, namespace, list(pools.values()))
    sampler.start()
    t0 = time.monotonic()
    await play(real, trace, pools, t0)
    total = sum(count for _o, count in trace.arrivals)
    deadline = t0 + trace.duration + args.settle
    while True:
        elapsed = time.monotonic() - t0
        done = [
            sum(1 for r in await _history(real.base_url, p.definition_id) if r.get("endTime"))
            == total
            for p in pools.values()
        ]
        idle = all(sampler.running.get(name, 1) == 0 for name in pools)
        if elapsed >= trace.duration and all(done) and idle:
            break
        if time.monotonic() > deadline:
            print(f"note: {trace.name} not drained and idle after {elapsed:.0f} s", flush=True)
            break
        await asyncio.sleep(1.0)
    window = time.monotonic() - t0
    sampler.stop()
    return {
        name: figures(pool, await _history(real.base_url, pool.definition_id), sampler, t0, window)
        for name, pool in pools.items()
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/vs_keda.py", description=__doc__.split("\n")[0])
    parser.add_argument("--trace", choices=sorted(TRACES), action="append")
    parser.add_argument(
        "--duration",
        type=float,
        default=600.0,
        help="wall time of each trace, s (issue 12: at least 600)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=600.0,
        help="after the trace, wait at most this long for drain and zero, s",
    )
    parser.add_argument("--burst", type=int, default=60, help="jobs per topic of the burst")
    parser.add_argument("--job-seconds", type=float, default=5.0, help="handler duration, s")
    parser.add_argument("--rate", type=float, default=0.5, help="steady: jobs/s per topic")
    parser.add_argument("--peak-rate", type=float, default=1.5, help="ramp: peak jobs/s")
    parser.add_argument("--waves", type=int, default=4, help="waves: how many")
    parser.add_argument("--wave-size", type=int, default=12, help="waves: jobs per wave")
    parser.add_argument(
        "--long-job-seconds", type=float, default=45.0, help="waves: handler duration, s"
    )
    parser.add_argument("--seed", type=int, default=1, help="the noise of steady and ramp")
    parser.add_argument(
        "--logs",
        metavar="DIR",
        help="copy the operator's and the workers' logs here after each trace",
    )
    parser.add_argument("--jobs-per-replica", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--max-replicas", type=int, default=6)
    parser.add_argument("--polling-interval", type=int, default=15, help="both scalers, s")
    parser.add_argument("--cooldown", type=int, default=60, help="both scalers, s")
    parser.add_argument("--lock-duration", default="PT1M")
    parser.add_argument("--grace", type=int, default=30, help="terminationGracePeriodSeconds")
    parser.add_argument(
        "--reset-expired-interval",
        type=float,
        default=60.0,
        help="Flowable's expired-lock reset interval, s (its default: 60)",
    )
    return parser.parse_args(argv)


def _keep_logs(workdir: Path, into: Path) -> None:
    """Copy the operator's and the workers' logs out of the cluster's directory, which goes
    with the cluster: the operator's log holds every decision with its reason."""
    into.mkdir(parents=True, exist_ok=True)
    for log_file in workdir.glob("*.log"):
        shutil.copy(log_file, into / log_file.name)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    traces = [TRACES[name](args) for name in (args.trace or ["burst"])]
    setup = {k: v for k, v in vars(args).items() if k != "trace"}
    print(f"setup: {json.dumps(setup)}", flush=True)
    summary: dict[str, Any] = {"bench": "vs_keda", "setup": setup, "traces": {}}
    started = time.monotonic()
    try:
        # Missing binaries fail here, before anything starts.
        keda_bin, keda_crds = find_keda_bin_dir(), find_keda_crd_dir()
        with (
            LocalCluster() as cluster,
            PodRunner(cluster.kubeconfig, cluster.workdir / "pods") as runner,
            start_flowable_server(reset_expired_jobs_interval=args.reset_expired_interval) as fl,
        ):
            namespace = _namespace(cluster)
            cluster.kubectl("apply", "-f", str(CRD))
            cluster.wait_crds_established(["externalworkerpools.flowable-worker.io"])
            real = RealFlowable.for_server(fl)
            with (
                KedaStack(
                    cluster, watch_namespace=namespace, bin_dir=keda_bin, crd_dir=keda_crds
                ) as keda,
                run_operator(cluster.kubeconfig, namespace, cluster.workdir / "operator.log"),
            ):
                print(
                    f"cluster {cluster.ready_seconds:.1f} s, KEDA {keda.ready_seconds:.1f} s, "
                    f"Flowable {fl.startup_seconds:.1f} s",
                    flush=True,
                )
                for trace in traces:
                    results = asyncio.run(
                        run_trace(cluster, runner, real, namespace, trace, args, cluster.workdir)
                    )
                    print_table(trace, results)
                    summary["traces"][trace.name] = results
                    if args.logs is not None:
                        _keep_logs(cluster.workdir, Path(args.logs))
                    # KEDA's finalizer needs KEDA: delete its ScaledObject while it runs.
                    cluster.api(
                        "DELETE",
                        f"/apis/keda.sh/v1alpha1/namespaces/{namespace}/"
                        f"scaledobjects/keda-{trace.name}",
                    )
    except (
        MissingPrerequisiteError,
        KedaSetupError,
        ClusterStartError,
        FlowableServerError,
        OperatorProcessError,
        subprocess.CalledProcessError,
    ) as exc:
        detail = str(exc)
        if isinstance(exc, subprocess.CalledProcessError):
            detail += f": {exc.stderr or ''}"
        print(f"error: {' '.join(detail.split())[:1000]}", file=sys.stderr)
        return 2
    summary["wall_seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
