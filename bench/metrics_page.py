"""The operator's /metrics at N synthetic pools: what a scrape costs and how long it holds the
event loop, for the working tree or a git revision (issue 11).

No cluster, no engine: in a fresh process (one per revision and pool count) it records, through
`metrics.record_tick`, one tick for each of N pools as a real idle pool's tick looks (a backlog,
replicas, bounds, a Stable decision and the six conditions), then `--scrapes` times: one more
idle tick of every pool (timed: what the ticks pay for the metrics), then one scrape as the
/metrics handler of that revision does it, with a callback on the event loop every millisecond
noting how late it ran: as the handler of that revision scrapes, `generate_latest(
metrics.REGISTRY)` on the loop (up to 85b33b2) or `await metrics.PAGE.render()` (where
`metrics.PAGE` exists).

Prints one line per (revision, pools): the median idle tick in microseconds per pool, the median
scrape (wall time), the longest the loop waited during a scrape, and the page's size; then as the
last line one JSON object {"runs": [...]}.

Run: `.venv/bin/python bench/metrics_page.py --pools 1000,10000 --rev 85b33b2 --rev HEAD`
(`--rev` absent: the working tree).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]


def child(pools: int, scrapes: int) -> dict[str, Any]:
    """In the measured process: the operator's metrics module as PYTHONPATH gives it."""
    from flowable_worker_operator import metrics
    from flowable_worker_operator.scaling import Backlog, Decision, History, Reason
    from flowable_worker_operator.status import CONDITION_TYPES

    conditions = [{"type": kind, "status": "True"} for kind in CONDITION_TYPES]

    def tick_all() -> float:
        started = time.perf_counter()
        for index in range(pools):
            metrics.record_tick(
                "bench-metrics",
                f"pool-{index:05d}",
                backlog=Backlog(unlocked=0, locked=0),
                replicas=1,
                workload_replicas=1,
                replica_bounds=(0, 10),
                decision=Decision(
                    desired_replicas=1, reason=Reason.STABLE, message="", history=History()
                ),
                probe_failures=0,
                conditions=conditions,
                change=0,
            )
        return time.perf_counter() - started

    async def scrape() -> tuple[float, float, int]:
        loop = asyncio.get_running_loop()
        lags: list[float] = []
        done = False

        def measure(planned: float) -> None:
            lags.append(time.perf_counter() - planned)
            if not done:
                loop.call_later(0.001, measure, time.perf_counter() + 0.001)

        loop.call_soon(measure, time.perf_counter())
        await asyncio.sleep(0.01)
        started = time.perf_counter()
        page = getattr(metrics, "PAGE", None)
        if page is not None:
            body = await page.render()
        else:
            from prometheus_client import generate_latest

            body = generate_latest(metrics.REGISTRY)
        took = time.perf_counter() - started
        await asyncio.sleep(0.005)  # the callback the render held back runs and says how late
        done = True
        return took, max(lags), len(body)

    async def run() -> list[tuple[float, float, float, int]]:
        results = []
        for _ in range(scrapes):
            idle = tick_all()
            took, stall, size = await scrape()
            results.append((idle, took, stall, size))
        return results

    first = tick_all()
    results = asyncio.run(run())
    return {
        "module": metrics.__file__,
        "pools": pools,
        "first_tick_us_per_pool": round(first / pools * 1e6, 1),
        "idle_tick_us_per_pool": round(statistics.median(r[0] for r in results) / pools * 1e6, 1),
        "scrape_s": round(statistics.median(r[1] for r in results), 3),
        "scrape_max_s": round(max(r[1] for r in results), 3),
        "loop_stall_max_s": round(max(r[2] for r in results), 3),
        "page_bytes": results[-1][3],
    }


def source(rev: str, into: Path) -> Path:
    """The operator and worker packages as of `rev`, extracted under `into`."""
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", rev, "operator", "worker"],
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def measure(rev: str | None, pools: int, scrapes: int, workdir: Path) -> dict[str, Any]:
    env = dict(os.environ)
    if rev is not None:
        tree = workdir / rev
        if not tree.exists():
            source(rev, tree)
        # Ahead of the venv's editable install on sys.path, so these packages are imported.
        env["PYTHONPATH"] = os.pathsep.join([str(tree / "operator"), str(tree / "worker")])
    command = [sys.executable, __file__, "--child", str(pools), "--scrapes", str(scrapes)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["rev"] = rev or "working tree"
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pools", default="1000,10000", help="comma-separated pool counts")
    parser.add_argument("--rev", action="append", default=None, help="git revision (repeatable)")
    parser.add_argument("--scrapes", type=int, default=5)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.scrapes)))
        return 0
    runs = []
    with tempfile.TemporaryDirectory(prefix="fwo-bench-metrics-") as workdir:
        for rev in args.rev or [None]:
            for pools in (int(part) for part in args.pools.split(",")):
                run = measure(rev, pools, args.scrapes, Path(workdir))
                runs.append(run)
                print(
                    f"{run['rev']:>12}  {pools:>6} pools  idle tick {run['idle_tick_us_per_pool']}"
                    f" us/pool  scrape {run['scrape_s']} s (max {run['scrape_max_s']})  loop"
                    f" stalled up to {run['loop_stall_max_s']} s  page {run['page_bytes']} B",
                    flush=True,
                )
    print(json.dumps({"runs": runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
