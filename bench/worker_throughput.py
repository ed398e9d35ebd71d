"""Worker throughput against a real Flowable 7.2: ours vs the official Python client vs the server.

One run, one real server (full JIT, started here on 127.0.0.1), one-task BPMN process, no-op
handlers. Each contender runs in its own process, on its own topic, over `--instances` fresh
process instances created before it starts:

- `ours`: `flowable-worker` at its default settings;
- `official`: `flowable-external-worker-client` 1.0.2 at its defaults (one subscription thread);
- `official_equal`: the same client with as many subscription threads as our concurrency;
- `server_limit`: a raw httpx load generator (acquire + complete, high concurrency): the
  server's own ceiling on this machine.

Throughput is measured over the drain window (first to last completion, seen by polling the
job count), so process start-up and imports count for no one. CPU seconds are read from
/proc for each worker process over the same window. A table is printed, then as the last line
one JSON object (keys listed in docs/benchmarks.md).

Run: `make bench-worker` (or `.venv/bin/python bench/worker_throughput.py --instances 2000`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from flowable_worker.config import DEFAULT_CONCURRENCY  # noqa: E402
from flowable_worker.transport import LeanTransport  # noqa: E402
from localstack.flowable_server import FlowableServer  # noqa: E402
from tests.support.real_flowable import RealFlowable  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
THIS_FILE = str(Path(__file__).resolve())


@dataclass
class Result:
    name: str
    jobs: int
    seconds: float
    cpu_seconds: float | None
    server_cpu_seconds: float | None = None

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_per_1000(self) -> float | None:
        if self.cpu_seconds is None or self.jobs == 0:
            return None
        return self.cpu_seconds / self.jobs * 1000

    @property
    def server_cpu_per_1000(self) -> float | None:
        if self.server_cpu_seconds is None or self.jobs == 0:
            return None
        return self.server_cpu_seconds / self.jobs * 1000


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


async def remaining_jobs(http: httpx.AsyncClient, definition_id: str) -> int:
    response = await http.get(
        "/external-job-api/jobs", params={"processDefinitionId": definition_id, "size": 1}
    )
    response.raise_for_status()
    return int(response.json()["total"])


def spawn(
    name: str, command: list[str], env: dict[str, str]
) -> tuple[Any, subprocess.Popen[bytes]]:
    """Start one contender; its output goes to bench/.<name>.log (git-ignored by the dot)."""
    log = (REPO_ROOT / "bench" / f".{name}.log").open("wb")
    process = subprocess.Popen(
        command,
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=REPO_ROOT,
    )
    return log, process


async def measure(
    name: str,
    command: list[str],
    env: dict[str, str],
    *,
    base_url: str,
    definition_id: str,
    instances: int,
    within: float,
    server_pid: int | None = None,
) -> Result:
    """Start `command`, watch the backlog drain, stop it; throughput over the drain window."""
    log, process = spawn(name, command, env)
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            deadline = time.monotonic() + within
            start_left = instances
            started_at = cpu_at_start = server_at_start = None
            while True:
                left = await remaining_jobs(http, definition_id)
                now = time.monotonic()
                if started_at is None and left < instances:
                    started_at, start_left = now, left
                    cpu_at_start = process_cpu_seconds(process.pid)
                    if server_pid is not None:
                        server_at_start = process_cpu_seconds(server_pid)
                if left == 0:
                    break
                if now > deadline:
                    raise RuntimeError(f"{name}: {left} jobs left after {within:.0f}s")
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited early with {process.returncode}")
                await asyncio.sleep(0.02)
            finished_at = time.monotonic()
            cpu = process_cpu_seconds(process.pid) - (cpu_at_start or 0.0)
            server_cpu = (
                None
                if server_pid is None or server_at_start is None
                else process_cpu_seconds(server_pid) - server_at_start
            )
        assert started_at is not None
        # Jobs done inside the window: everything left when the first completion was seen.
        return Result(name, start_left, finished_at - started_at, cpu, server_cpu)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def start_latency_proxy(port: int, round_trip_ms: float) -> tuple[str, subprocess.Popen[bytes]]:
    """bench/latency_proxy.py in front of the server; returns its URL and process."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        listen = sock.getsockname()[1]
    proxy = subprocess.Popen(
        [
            sys.executable,
            str(Path(THIS_FILE).with_name("latency_proxy.py")),
            str(listen),
            "127.0.0.1",
            str(port),
            str(round_trip_ms),
        ],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    assert proxy.stdout is not None
    if proxy.stdout.readline().strip() != b"ready":
        raise RuntimeError("the latency proxy did not start")
    return f"http://127.0.0.1:{listen}", proxy


def stop_process(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def median_result(results: list[Result]) -> Result:
    """The run with the median throughput (its CPU figure comes with it)."""
    ordered = sorted(results, key=lambda r: r.jobs_per_s)
    return ordered[len(ordered) // 2]


# -- contenders run in their own processes -----------------------------------------------------


def run_official(url: str, topic: str, threads: int) -> None:
    """The official client with `threads` subscriptions, its defaults otherwise; no-op handler."""
    from flowable.external_worker_client import ExternalWorkerClient

    def handler(job: Any, builder: Any) -> Any:
        return builder.success()

    subscriptions = []
    for i in range(threads):
        client = ExternalWorkerClient(flowable_host=url, worker_id=f"official-{os.getpid()}-{i}")
        subscriptions.append(client.subscribe(topic, handler))
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    os._exit(0)  # its threads may be sleeping 30 s after an empty poll


async def run_raw(url: str, topic: str, concurrency: int, batch: int, acquirers: int) -> None:
    """Acquire + complete as fast as the server allows: the server's ceiling on this machine.

    `acquirers` loops acquire `batch` jobs whenever the queue has room for them; `concurrency`
    completers empty the queue. Acquiring continues while earlier jobs are being completed, so
    the server never waits for the client. One acquirer by default: concurrent acquires of one
    topic fight over the same rows (and, for exclusive jobs, process instances) and lower the
    server's throughput rather than raise it (measured; docs/benchmarks.md).
    """
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    # httpx's own transport spends so much CPU per request that on 2 cores the generator, not the
    # server, becomes the limit (measured: ~300/s); the worker's lean transport keeps the client
    # out of the way, which is the point of measuring the server's ceiling.
    transport = LeanTransport(max_connections=concurrency + acquirers)
    queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    room = asyncio.Semaphore(2 * concurrency)  # jobs acquired but not yet completed
    async with httpx.AsyncClient(
        base_url=url + "/external-job-api", transport=transport, timeout=30
    ) as http:

        async def acquire(index: int) -> None:
            worker = f"raw-{index}"
            while not stop.is_set():
                for _ in range(batch):
                    await room.acquire()
                response = await http.post(
                    "/acquire/jobs",
                    json={
                        "topic": topic,
                        "workerId": worker,
                        "lockDuration": "PT5M",
                        "numberOfTasks": batch,
                    },
                )
                jobs = response.json() if response.status_code == 200 else []
                for _ in range(batch - len(jobs)):
                    room.release()
                for job in jobs:
                    queue.put_nowait((job["id"], worker))
                if not jobs:
                    await asyncio.sleep(0.01)

        async def complete() -> None:
            while True:
                job_id, worker = await queue.get()
                await http.post(f"/acquire/jobs/{job_id}/complete", json={"workerId": worker})
                room.release()

        tasks = [asyncio.create_task(acquire(i)) for i in range(acquirers)]
        tasks += [asyncio.create_task(complete()) for _ in range(concurrency)]
        await stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# -- orchestration ----------------------------------------------------------------------------


async def prepare(real: RealFlowable, instances: int) -> tuple[str, str]:
    """A fresh topic with `instances` waiting jobs; returns (topic, definition id)."""
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    created = await real.create_jobs(topic, instances)
    return topic, created[0].definition_id


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    server = FlowableServer(jvm_options=("-Xmx2g",), reset_expired_jobs_interval=10.0)
    server.start()
    stack = contextlib.ExitStack()
    try:
        real = RealFlowable(server.base_url, start_concurrency=16)
        url = server.base_url
        if args.latency_ms > 0:
            # Workers reach Flowable through a proxy that adds the round trip; set-up and the
            # backlog polling go direct.
            url, proxy = start_latency_proxy(server.port, args.latency_ms)
            stack.callback(stop_process, proxy)
        me = [sys.executable, THIS_FILE]
        contenders: list[tuple[str, list[str], dict[str, str]]] = [
            (
                "server_limit",
                [
                    *me,
                    "_raw",
                    url,
                    "{topic}",
                    str(args.raw_concurrency),
                    str(args.raw_batch),
                    str(args.raw_acquirers),
                ],
                {},
            ),
            (
                "ours",
                [sys.executable, "-m", "flowable_worker"],
                {
                    "FLOWABLE_URL": url,
                    "FLOWABLE_TOPIC": "{topic}",
                    "FLOWABLE_WORKER_HANDLER": "tests.worker.handlers:noop",
                    "FLOWABLE_WORKER_ID": "bench-ours",
                    "FLOWABLE_WORKER_METRICS_HOST": "127.0.0.1",
                    "FLOWABLE_WORKER_METRICS_PORT": str(args.metrics_port),
                    "PYTHONPATH": str(REPO_ROOT),
                },
            ),
            ("official", [*me, "_official", url, "{topic}", "1"], {}),
            ("official_equal", [*me, "_official", url, "{topic}", str(DEFAULT_CONCURRENCY)], {}),
        ]
        # Warm the server's JIT and database before anything is measured: a long run of the
        # load generator, then one unrecorded round of every contender (each exercises other
        # code paths: single-job acquires, batches, concurrent acquires).
        for number, (name, command, env) in enumerate([contenders[0], *contenders]):
            size = args.warmup if number == 0 else args.warmup_round
            topic, definition = await prepare(real, size)
            await measure(
                f"warmup-{name}",
                [a.replace("{topic}", topic) for a in command],
                {k: v.replace("{topic}", topic) for k, v in env.items()},
                base_url=server.base_url,
                definition_id=definition,
                instances=size,
                within=args.timeout,
            )
        print("  warmed up", file=sys.stderr, flush=True)
        runs: dict[str, list[Result]] = {name: [] for name, _, _ in contenders}
        for round_number in range(1, args.rounds + 1):
            # Contenders take turns each round, so a noisy moment on a shared machine hurts
            # one round of each rather than all rounds of one.
            for name, command, env in contenders:
                topic, definition = await prepare(real, args.instances)
                result = await measure(
                    name,
                    [a.replace("{topic}", topic) for a in command],
                    {k: v.replace("{topic}", topic) for k, v in env.items()},
                    base_url=server.base_url,
                    definition_id=definition,
                    instances=args.instances,
                    within=args.timeout,
                    server_pid=server.pid,
                )
                runs[name].append(result)
                print(
                    f"  round {round_number} {name}: {result.jobs} jobs in "
                    f"{result.seconds:.2f}s = {result.jobs_per_s:.0f}/s",
                    file=sys.stderr,
                    flush=True,
                )
        results = {name: median_result(found) for name, found in runs.items()}
    finally:
        stack.close()
        server.stop()

    where = f", {args.latency_ms:g} ms round trip added" if args.latency_ms > 0 else ", loopback"
    print(f"\nmedian of {args.rounds} rounds, {args.instances} instances each{where}")
    print(
        f"{'contender':<16} {'jobs':>6} {'seconds':>8} {'jobs/s':>8} {'cpu s/1000':>11} "
        f"{'server cpu s/1000':>18}"
    )
    for r in results.values():
        cpu = "-" if r.cpu_per_1000 is None or r.name == "server_limit" else f"{r.cpu_per_1000:.2f}"
        server_cpu = "-" if r.server_cpu_per_1000 is None else f"{r.server_cpu_per_1000:.2f}"
        print(
            f"{r.name:<16} {r.jobs:>6} {r.seconds:>8.2f} {r.jobs_per_s:>8.0f} {cpu:>11} "
            f"{server_cpu:>18}"
        )
    ours, official = results["ours"], results["official"]
    equal, limit = results["official_equal"], results["server_limit"]
    # What this machine allows at all: every job costs the server `server_cpu` and our worker
    # `ours.cpu` CPU seconds, and both share `cores`, so no run of ours can beat
    # cores / (server + ours) jobs/s, whatever the client does.
    cores = os.cpu_count() or 1
    per_job = ((ours.server_cpu_per_1000 or 0.0) + (ours.cpu_per_1000 or 0.0)) / 1000
    bound = cores / per_job if per_job > 0 else 0.0
    print(
        f"\n{cores} cores shared by server and worker: at ours' CPU per job (server + worker "
        f"{per_job * 1000:.2f} ms) no run can exceed {bound:.0f} jobs/s, i.e. "
        f"{bound / official.jobs_per_s:.2f}x the official client's {official.jobs_per_s:.0f}"
    )
    return {
        "ours_jobs_per_s": round(ours.jobs_per_s, 1),
        "official_jobs_per_s": round(official.jobs_per_s, 1),
        "official_equal_concurrency_jobs_per_s": round(equal.jobs_per_s, 1),
        "server_limit_jobs_per_s": round(limit.jobs_per_s, 1),
        "ratio_default": round(ours.jobs_per_s / official.jobs_per_s, 2),
        "ratio_equal_concurrency": round(ours.jobs_per_s / equal.jobs_per_s, 2),
        "ours_vs_server_limit": round(ours.jobs_per_s / limit.jobs_per_s, 2),
        "ours_cpu_s_per_1000": round(ours.cpu_per_1000 or 0.0, 3),
        "official_cpu_s_per_1000": round(official.cpu_per_1000 or 0.0, 3),
        "official_equal_cpu_s_per_1000": round(equal.cpu_per_1000 or 0.0, 3),
        "server_cpu_s_per_1000_ours": round(ours.server_cpu_per_1000 or 0.0, 3),
        "server_cpu_s_per_1000_official": round(official.server_cpu_per_1000 or 0.0, 3),
        "cores": cores,
        "ratio_default_bound_this_machine": round(bound / official.jobs_per_s, 2),
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_official":
        run_official(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_raw":
        asyncio.run(run_raw(sys.argv[2], sys.argv[3], *map(int, sys.argv[4:7])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=2000, help="jobs per contender")
    parser.add_argument(
        "--warmup",
        type=int,
        default=4000,
        help="jobs for the load generator to warm the server's JIT",
    )
    parser.add_argument(
        "--warmup-round",
        type=int,
        default=1000,
        help="jobs per contender in the unrecorded warm-up round",
    )
    parser.add_argument(
        "--raw-concurrency", type=int, default=16, help="server_limit: completes in flight"
    )
    parser.add_argument("--raw-batch", type=int, default=16, help="server_limit: jobs per acquire")
    parser.add_argument("--raw-acquirers", type=int, default=1, help="server_limit: acquire loops")
    parser.add_argument(
        "--rounds", type=int, default=3, help="runs per contender; the median is reported"
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="round trip added between the workers and Flowable (a proxy)",
    )
    parser.add_argument("--metrics-port", type=int, default=19464)
    parser.add_argument("--timeout", type=float, default=900, help="seconds per contender")
    args = parser.parse_args()
    summary = asyncio.run(bench(args))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
