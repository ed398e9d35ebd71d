"""Backlog probe cost against a real Flowable 7.2: one count pair per element vs per version.

Every deployed version of a model is a definition of its own. Counting a discovered topic per
definition costs two requests per version and probe, forever; counting an element id that is
exclusive to the topic (`Selector(element_id)`, every definition at once) costs two, whatever the
history. This deploys one one-task BPMN model again and again (same key: versions 1, 2, ...),
starts `--jobs` instances on each version, and at each of `--versions` prints, for the prober with
`collapse_elements=False` ("before") and the default ("after"):

- selectors: what discovery turned the topic into;
- requests/probe: HTTP requests of one probe once discovery has listed and parsed the models
  (counted by a transport wrapped around httpx's own; the listing is re-read only once per
  discovery interval, so it is not part of a polling tick);
- median and p90 wall time of `--probes` probes (sharing disabled: `max_age=0`, one probe at a
  time, `max_concurrency` at the operator's default of 8);
- the backlog read, which must be the same before and after (exact counts);
- first probe requests: the probe that lists the definitions and fetches every model, plus its
  counts (the same listing and fetches before and after).

One real server (full JIT), started here on 127.0.0.1. Prints a table; asserts nothing.

Run: `.venv/bin/python bench/probe_cost.py` (or `--versions 1 10 50 100 --jobs 3 --probes 20`).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from flowable_worker import ClientSettings  # noqa: E402
from flowable_worker_operator.backlog import BacklogProber  # noqa: E402
from flowable_worker_operator.engines import Engine  # noqa: E402
from localstack.flowable_server import FlowableRestApi, FlowableServer  # noqa: E402
from tests.support.real_flowable import RealFlowable, one_task_model  # noqa: E402


class CountingTransport(httpx.AsyncBaseTransport):
    """httpx's own transport, counting the requests that pass through it."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.requests = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass(frozen=True)
class Row:
    versions: int
    mode: str
    selectors: int
    first_probe_requests: int
    requests_per_probe: float
    median_ms: float
    p90_ms: float
    unlocked: int
    locked: int


async def measure(
    base_url: str, topic: str, *, versions: int, collapse: bool, probes: int, warmup: int
) -> Row:
    transport = CountingTransport()
    prober = BacklogProber(
        max_age=0.0, discovery_interval=3600.0, collapse_elements=collapse, transport=transport
    )
    engine = Engine(ClientSettings(base_url=base_url, read_retries=0))
    try:
        result = await prober.backlog(engine, topic, None)  # lists and parses the definitions
        first_probe_requests = transport.requests
        for _ in range(warmup):
            await prober.backlog(engine, topic, None)
        seconds: list[float] = []
        requests: list[int] = []
        for _ in range(probes):
            before = transport.requests
            started = time.perf_counter()
            result = await prober.backlog(engine, topic, None)
            seconds.append(time.perf_counter() - started)
            requests.append(transport.requests - before)
    finally:
        await prober.aclose()
    deciles = statistics.quantiles(seconds, n=10) if len(seconds) > 1 else seconds * 9
    return Row(
        versions=versions,
        mode="after" if collapse else "before",
        selectors=len(result.selectors),
        first_probe_requests=first_probe_requests,
        requests_per_probe=statistics.mean(requests),
        median_ms=statistics.median(seconds) * 1000,
        p90_ms=deciles[-1] * 1000,
        unlocked=result.backlog.unlocked,
        locked=result.backlog.locked,
    )


async def deploy_version(api: FlowableRestApi, xml: str, jobs: int) -> str:
    model = await api.deploy(xml, scope_type="bpmn")
    await asyncio.gather(
        *(
            api.start_process_instance(definition_id=model.definition_id, variables=[])
            for _ in range(jobs)
        )
    )
    return model.definition_id


def print_table(rows: list[Row]) -> None:
    header = (
        f"{'versions':>8}  {'mode':<6}  {'selectors':>9}  {'requests/probe':>14}  "
        f"{'median ms':>9}  {'p90 ms':>7}  {'backlog (unlocked+locked)':>25}  "
        f"{'first probe requests':>20}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        backlog = f"{row.unlocked}+{row.locked}"
        print(
            f"{row.versions:>8}  {row.mode:<6}  {row.selectors:>9}  {row.requests_per_probe:>14g}  "
            f"{row.median_ms:>9.1f}  {row.p90_ms:>7.1f}  {backlog:>25}  "
            f"{row.first_probe_requests:>20}"
        )


async def bench(args: argparse.Namespace) -> list[Row]:
    server = FlowableServer(jvm_options=("-Xmx2g",), reset_expired_jobs_interval=10.0)
    server.start()
    print(f"Flowable started in {server.startup_seconds:.1f} s at {server.base_url}", flush=True)
    try:
        real = RealFlowable(server.base_url)
        run = uuid.uuid4().hex[:8]
        topic = f"probe-cost-{run}"
        xml = one_task_model(
            scope_type="bpmn",
            definition_key=f"probe_cost_{run}",
            topic=topic,
            element_id=f"costTask_{run}",
            exclusive=False,
        )
        rows: list[Row] = []
        deployed = 0
        async with real.api() as api:
            for target in sorted(set(args.versions)):
                while deployed < target:
                    await deploy_version(api, xml, args.jobs)
                    deployed += 1
                for collapse in (False, True):
                    row = await measure(
                        server.base_url,
                        topic,
                        versions=deployed,
                        collapse=collapse,
                        probes=args.probes,
                        warmup=args.warmup,
                    )
                    rows.append(row)
                    print(f"measured: {deployed} versions, {row.mode}", flush=True)
        return rows
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--jobs", type=int, default=3, help="instances (jobs) per version")
    parser.add_argument("--probes", type=int, default=20, help="timed probes per row")
    parser.add_argument("--warmup", type=int, default=5, help="untimed probes before them")
    args = parser.parse_args()
    rows = asyncio.run(bench(args))
    print()
    print_table(rows)


if __name__ == "__main__":
    main()
