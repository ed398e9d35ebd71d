"""The operator at scale: what N idle pools cost it, the API server and the engine (issue 11).

Starts the local control plane (localstack/cluster.py), the real Flowable with `--models` deployed
one-task models (one topic each), a counting HTTP proxy in front of Flowable
(bench/counting_proxy.py) and the operator as a process (the installed console script) watching one
namespace, its engine URL pointing at the proxy. Then, per stage of `--pools` (cumulative: 100, then
900 more for 1000, ...), it creates the pools (`--pools-per-topic` on each topic, `--interval` s
polling, worker pods as kwok's fake pods: nothing runs in them), waits until every pool has its
Deployment, waits for an interval in which the operator writes nothing (new pools' Warnings about
each other go on for a while; at most `--settle-intervals`), lets `--warmup-intervals` pass, and
measures over `--window-intervals` intervals while nothing changes:

- operator CPU (cores) and peak RSS in the window from /proc, its child processes included, and
  the highest RSS it ever had (VmHWM: the creation of the pools included);
- ticks per pool per interval: the delta of `flowable_pool_decisions_total` on the operator's
  /metrics (one decision per tick) over pools x intervals;
- API-server requests per interval by verb and resource (deltas of `apiserver_request_total`):
  writes (POST/PUT/PATCH/DELETE) and reads (GET/LIST) on the resources the operator touches
  (localstack/apiserver_requests.py), WATCH apart, and everyone else's requests apart;
- kube-apiserver and etcd CPU from /proc;
- engine requests per distinct question (method, path?query) per interval, counted at the proxy:
  the mean and the max over the job-count questions, and all requests per interval.

Then the lag: it starts one process instance on each of a few topics (least used first, so idle
ones; each at a random moment within one interval, so that pools created together are not all caught
at the same phase of their tick), and times, for every pool on those topics, the arrival (on a
watch) of the change of its Deployment's `.spec.replicas`; rounds repeat until `--lag-samples`
changes are timed (p50, p99). Each job adds a replica (worker concurrency 1); instances are left in
place, so a topic used again goes from k to k+1 replicas. `--profile FILE` runs py-spy on the
operator for 30 s after the last stage (if py-spy is installed) and prints the functions with the
most own time. `--tracemalloc FILE` traces the operator's Python allocations from before the first
pool and, after the last stage's window, dumps a snapshot there and prints who holds the memory.

`--bad-every K` makes every K-th pool bad as users' pools go bad (alternately a spec the operator
refuses and a missing engine Secret); the good pools' ticks are then measured beside them.

Prints a table, then as the last line one JSON object {"stages": [...]}. Stops everything it
started, on Ctrl-C or an error too. A missing part (control-plane binaries, the Flowable jar,
Java, the operator's console script) is one line on stderr and exit status 1.

Run: `make bench-operator BENCH_ARGS="--pools 100,300"`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import httpx  # noqa: E402
from kubernetes import client as k8s_client  # noqa: E402
from kubernetes import config as k8s_config  # noqa: E402

from bench.deployment_watch import DeploymentWatch  # noqa: E402
from bench.proc_usage import cpu_seconds, highest_rss_bytes, rss_bytes  # noqa: E402
from localstack import apiserver_requests  # noqa: E402
from localstack.cluster import (  # noqa: E402
    LocalCluster,
    MissingPrerequisiteError,
    find_bin_dir,
    free_port,
)
from localstack.flowable_server import (  # noqa: E402
    FlowableRestApi,
    FlowableServer,
    FlowableServerError,
    find_server_jar,
)
from localstack.operator_process import CONSOLE_SCRIPT, OperatorProcess  # noqa: E402
from tests.support.counting_proxy import CountingProxy, Question  # noqa: E402

CRD = REPO_ROOT / "deploy" / "crds" / "externalworkerpools.flowable-worker.io.yaml"
GROUP, VERSION, PLURAL = "flowable-worker.io", "v1alpha1", "externalworkerpools"
TICKS_METRIC = "flowable_pool_decisions_total{"
METRICS_TIMEOUT = 120.0
MODEL = """<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL"
             xmlns:flowable="http://flowable.org/bpmn" targetNamespace="http://flowable-worker.io/bench">
  <process id="{key}" name="{key}" isExecutable="true">
    <startEvent id="start"/>
    <sequenceFlow id="in" sourceRef="start" targetRef="{element}"/>
    <serviceTask id="{element}" flowable:type="external-worker" flowable:topic="{topic}"/>
    <sequenceFlow id="out" sourceRef="{element}" targetRef="end"/>
    <endEvent id="end"/>
  </process>
</definitions>
"""


class Prerequisite(Exception):
    """Something the benchmark needs is not there; the message says what to do."""


@dataclass
class Stage:
    pools: int
    topics: int
    window_s: float
    cpu_cores: float
    rss_mb: float
    rss_highest_mb: float
    """The operator's VmHWM at the end of the window: the most it ever held, creation included."""
    ticks_per_interval: float
    tick_errors: int
    apiserver_writes_per_interval: float
    apiserver_reads_per_interval: float
    apiserver_watches_per_interval: float
    apiserver_other_per_interval: float
    apiserver_cpu_cores: float
    etcd_cpu_cores: float
    engine_requests_per_question: float
    engine_requests_per_question_max: float
    engine_questions: int
    engine_requests_per_interval: float
    lag_p50_s: float | None
    lag_p99_s: float | None
    lag_samples: int
    lag_timeouts: int
    bad_pools: int = 0
    """Pools with a bad spec or a missing Secret (`--bad-every`); ticks_per_interval is the
    others'."""
    apiserver_requests_per_interval: dict[str, float] = field(default_factory=dict)


# -- set-up ------------------------------------------------------------------------------------


def prerequisites() -> tuple[Path, Path]:
    """The control-plane binaries' directory and the Flowable jar, or `Prerequisite`."""
    if shutil.which("java") is None:
        raise Prerequisite("java not found: install a Java 17 JDK (the real Flowable needs it)")
    if not CONSOLE_SCRIPT.exists():
        raise Prerequisite(f"{CONSOLE_SCRIPT} is missing: run `make setup`")
    try:
        bin_dir = find_bin_dir()
        jar = find_server_jar()
    except (MissingPrerequisiteError, FlowableServerError) as error:
        raise Prerequisite(str(error).splitlines()[0]) from error
    return bin_dir, jar


def topic_of(index: int) -> str:
    return f"scale-{index:05d}"


async def deploy_models(base_url: str, count: int) -> dict[str, str]:
    """One one-task model per topic; topic -> process definition id."""
    semaphore = asyncio.Semaphore(8)
    async with FlowableRestApi.connect(base_url) as api:

        async def one(index: int) -> tuple[str, str]:
            topic = topic_of(index)
            xml = MODEL.format(key=f"scale_{index}", element=f"work_{index}", topic=topic)
            async with semaphore:
                model = await api.deploy(xml, scope_type="bpmn")
            return topic, model.definition_id

        return dict(await asyncio.gather(*(one(i) for i in range(count))))


@contextlib.contextmanager
def operator_process(
    kubeconfig: Path,
    namespace: str,
    log_path: Path,
    source: Path | None,
    traced: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[OperatorProcess]:
    """The operator's console script on this namespace (its packages from `source` if given);
    SIGTERM (then SIGKILL) to its group on the way out. Pools are not deleted first: the cluster
    is thrown away with them. `traced`: SIGUSR1 starts tracemalloc, and SIGUSR2 dumps a snapshot
    to this file (`TRACEMALLOC_HOOK`). `extra_env`: for the operator alone (an allocator to try
    with LD_PRELOAD should not reach the API server or Flowable, started from this process)."""
    env = {**os.environ, **(extra_env or {}), "KUBECONFIG": str(kubeconfig)}
    paths = []
    if source is not None:
        # Ahead of the venv's editable install on sys.path, so these packages are imported.
        paths += [str(source / "operator"), str(source / "worker")]
    if traced is not None:
        hook = log_path.parent / "tracemalloc-hook"
        hook.mkdir(exist_ok=True)
        (hook / "sitecustomize.py").write_text(TRACEMALLOC_HOOK)
        paths.append(str(hook))
        env["FWO_TRACEMALLOC_DUMP"] = str(traced)
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(CONSOLE_SCRIPT), "--namespace", namespace, "--metrics-host", "127.0.0.1",
             "--metrics-port", str(port), "--log-format", "text"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env=env,
        )  # fmt: skip
    running = OperatorProcess(process, log_path, port)
    try:
        deadline = time.monotonic() + 60
        while not running.healthy():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the operator was not ready in 60 s:\n{running.log()[-3000:]}")
            time.sleep(0.2)
        yield running
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


TRACEMALLOC_FRAMES = 12
TRACEMALLOC_HOOK = f"""\
import os, signal, tracemalloc

def _start(signum, frame):
    tracemalloc.start({TRACEMALLOC_FRAMES})

def _dump(signum, frame):
    path = os.environ["FWO_TRACEMALLOC_DUMP"]
    if tracemalloc.is_tracing():
        tracemalloc.take_snapshot().dump(path + ".part")
    else:
        _allocators(path)
        _heap(path + ".part")
    os.replace(path + ".part", path)

def _allocators(path):
    # Before the walk, which allocates: the kernel's map of the memory, and each allocator's
    # own account: pymalloc's (sys._debugmallocstats, written to C's stderr) and glibc's.
    import ctypes, shutil, sys
    shutil.copyfile("/proc/self/smaps", path + ".smaps")
    fd = os.open(path + ".pymalloc", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    saved = os.dup(2)
    os.dup2(fd, 2)
    try:
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)
    try:
        libc = ctypes.CDLL(None)
        libc.fopen.restype = ctypes.c_void_p
        libc.fopen.argtypes = (ctypes.c_char_p, ctypes.c_char_p)
        libc.malloc_info.argtypes = (ctypes.c_int, ctypes.c_void_p)
        libc.fclose.argtypes = (ctypes.c_void_p,)
        out = libc.fopen((path + ".malloc").encode(), b"w")
        if out:
            libc.malloc_info(0, out)
            libc.fclose(out)
    except (OSError, AttributeError):
        pass  # not glibc

def _heap(path):
    # Every object the collector tracks, and what they refer to that it does not track (str,
    # bytes, int, dicts of atoms...), once each: count and shallow size by type, and by owner:
    # the nearest object of a class of its own (not a dict, list, coroutine...) found by going
    # up from an object to one of its referrers, or the module holding it.
    import gc, json, sys
    tracked = gc.get_objects()
    objects, parents = {{}}, {{}}  # made after the list, so not counted in it
    pending = list(tracked)
    own = {{id(objects), id(parents), id(pending), id(tracked)}}  # this walk's, reachable from
    while pending:  # its frame
        obj = pending.pop()
        if id(obj) in objects or id(obj) in own:
            continue
        objects[id(obj)] = obj
        for ref in gc.get_referents(obj):
            parents.setdefault(id(ref), id(obj))
            if not gc.is_tracked(ref) and id(ref) not in objects:
                pending.append(ref)
    del pending, tracked, own
    plain = {{"builtins", "collections", "_collections", "_asyncio", "asyncio.events",
             "_contextvars", "weakref", "_weakref", "datetime", "types", "functools",
             "typing", "abc", "enum"}}
    types, owners, pairs, owner_of = {{}}, {{}}, {{}}, {{}}

    def name(kind):
        module, qualname = getattr(kind, "__module__", "?"), getattr(kind, "__qualname__", "?")
        return (module if isinstance(module, str) else "?") + "." + str(qualname)

    def owner(key):
        chain, found = [], None
        while key is not None and key not in owner_of and len(chain) < 200:
            obj = objects.get(key)
            if obj is None:
                break
            kind = type(obj)
            if kind is type(sys):
                found = "module " + obj.__name__
                break
            module = getattr(kind, "__module__", "?")
            if isinstance(module, str) and module not in plain:
                found = name(kind)
                break
            chain.append(key)
            key = parents.get(key)
        if found is None:
            found = owner_of.get(key, "?") if key is not None else "?"
        for link in chain:
            owner_of[link] = found
        if key is not None:
            owner_of.setdefault(key, found)
        return found

    for key, obj in objects.items():
        size = sys.getsizeof(obj, 0)
        kind, held_by = name(type(obj)), owner(key)
        for table, label in ((types, kind), (owners, held_by), (pairs, held_by + " | " + kind)):
            count, total = table.get(label, (0, 0))
            table[label] = (count + 1, total + size)
    with open(path, "w") as out:
        json.dump({{"types": types, "owners": owners, "pairs": pairs}}, out)

signal.signal(signal.SIGUSR1, _start)
signal.signal(signal.SIGUSR2, _dump)
"""
"""The operator's `sitecustomize` with `--tracemalloc`: tracing starts on SIGUSR1 (sent once the
operator is up, before the pools are created: what it then holds is theirs, not the imports'), a
snapshot on SIGUSR2 (both in the main thread, between two bytecodes of the event loop), written
whole before it is renamed into place."""

_OURS = ("flowable_worker_operator", "flowable_worker")


def memory_owners(path: Path, pools: int, rss_mb: float, top: int = 15) -> list[str]:
    """Lines on who holds the operator's Python memory allocated since the tracing started (so:
    since just before the first pool) in the snapshot at `path`: the total, the
    largest owners (the innermost frame in the operator's or worker's packages, else the top
    package of the innermost frame: kopf, pydantic, the kubernetes client...), and the largest
    allocation sites. Memory outside Python's allocators (C libraries) shows in RSS only."""
    import tracemalloc

    snap = tracemalloc.Snapshot.load(str(path)).filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    owners: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    sites: Counter[str] = Counter()
    total = 0
    for trace in snap.traces:
        frames = list(reversed(trace.traceback))  # innermost first
        total += trace.size
        inner = frames[0]
        sites[f"{_short(inner.filename)}:{inner.lineno}"] += trace.size
        owner = next((f for f in frames if any(f"/{p}/" in f.filename for p in _OURS)), None)
        name = (
            f"{_short(owner.filename)}:{owner.lineno}"
            if owner is not None
            else _package(inner.filename)
        )
        owners[name] += trace.size
        counts[name] += 1
    lines = [
        f"traced Python memory {total / 2**20:.1f} MB ({total / pools / 1024:.1f} KB per pool) "
        f"of RSS {rss_mb:.0f} MB, {len(snap.traces)} blocks; by owner:"
    ]
    for name, size in owners.most_common(top):
        lines.append(
            f"  {size / 2**20:7.1f} MB  {size / pools / 1024:6.1f} KB/pool  {counts[name]:8d} "
            f"blocks  {name}"
        )
    lines.append("by allocation site:")
    for name, size in sites.most_common(top):
        lines.append(f"  {size / 2**20:7.1f} MB  {size / pools / 1024:6.1f} KB/pool  {name}")
    return lines


def _short(filename: str) -> str:
    """A file by its package path (`kopf/_core/...`), not by where it is installed."""
    parts = filename.split("/")
    for marker in ("site-packages", "lib"):
        if marker in parts:
            index = len(parts) - 1 - parts[::-1].index(marker)
            return "/".join(parts[index + 1 :]) or filename
    for package in _OURS:
        if package in parts:
            return "/".join(parts[parts.index(package) :])
    return filename


def _package(filename: str) -> str:
    short = _short(filename)
    head = short.split("/")[0]
    if head.startswith("python3"):  # the standard library: by module
        return "/".join(short.split("/")[:2])
    return head


def heap_growth(before: Path, after: Path, pools: int, top: int = 20) -> list[str]:
    """Lines on what the pools added to the operator's heap, by type, by owner, and by both (what
    types each owner holds) (`_heap` in `TRACEMALLOC_HOOK`: objects and shallow sizes, not what C
    libraries hold)."""
    old = json.loads(before.read_text())
    new = json.loads(after.read_text())
    lines = []
    tables = (("types", "by type"), ("owners", "by owner"), ("pairs", "by owner | type"))
    for table, what in tables:
        was = old.get(table, {})
        grown = {
            name: (count - was.get(name, (0, 0))[0], size - was.get(name, (0, 0))[1])
            for name, (count, size) in new.get(table, {}).items()
        }
        total = sum(size for _, size in grown.values())
        per_pool = total / pools / 1024
        lines.append(f"the pools' heap {what}: {total / 2**20:.1f} MB, {per_pool:.1f} KB per pool")
        for name, (count, size) in sorted(grown.items(), key=lambda kv: -kv[1][1])[:top]:
            lines.append(
                f"  {size / 2**20:7.1f} MB  {size / pools / 1024:6.1f} KB/pool  "
                f"{count / pools:7.1f} per pool  {name}"
            )
    return lines


def allocator_lines(path: Path) -> list[str]:
    """Lines on where the operator's resident memory was when `_allocators` (in
    `TRACEMALLOC_HOOK`) wrote its files beside `path`: the kernel's map by kind of mapping, then
    what pymalloc (objects up to 512 bytes, in 1 MiB arenas) and glibc's malloc (the rest, and
    pymalloc's arenas not) each hold in use and hold free."""
    mib = 2**20
    kinds: Counter[str] = Counter()
    kind = "?"
    for line in Path(f"{path}.smaps").read_text().splitlines():
        head = line.split()
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            name = head[5] if len(head) > 5 else ""
            if name == "[heap]":
                kind = "brk heap (glibc main arena)"
            elif name.startswith("["):
                kind = name
            elif name:
                kind = "files"
            else:  # pymalloc's arenas, glibc's other arenas, big blocks, thread stacks
                kind = "anonymous"
        elif head and head[0] == "Rss:":
            kinds[kind] += int(head[1]) * 1024
    lines = ["resident memory by mapping: " + ", ".join(
        f"{name} {size / mib:.0f} MB" for name, size in kinds.most_common() if size >= mib
    )]  # fmt: skip
    stats = Path(f"{path}.pymalloc").read_text()

    def figure(label: str) -> int:
        found = re.search(rf"^# {label}\s*=\s*([\d,]+)", stats, re.M)
        return int(found.group(1).replace(",", "")) if found else 0

    found = re.search(r"^(\d+) unused pools \* (\d+) bytes", stats, re.M)
    unused = int(found.group(1)) * int(found.group(2)) if found else 0
    lines.append(
        f"pymalloc: {figure('arenas allocated current')} arenas of 1 MiB, "
        f"{figure('bytes in allocated blocks') / mib:.0f} MB in use, "
        f"{figure('bytes in available blocks') / mib:.0f} MB free in used pools, "
        f"{unused / mib:.0f} MB in unused pools"
    )
    malloc = Path(f"{path}.malloc")
    if malloc.exists():
        text = malloc.read_text()
        tail = text[text.rfind("</heap>") :]  # the totals over every arena follow the last heap

        def total(pattern: str) -> int:
            found = re.search(pattern, tail)
            return int(found.group(1)) if found else 0

        free = total(r'<total type="fast" count="\d+" size="(\d+)"') + total(
            r'<total type="rest" count="\d+" size="(\d+)"'
        )
        system = total(r'<system type="current" size="(\d+)"')
        mapped = total(r'<total type="mmap" count="\d+" size="(\d+)"')
        lines.append(
            f"glibc malloc: {system / mib:.0f} MB from the system in its arenas, of which "
            f"{free / mib:.0f} MB free; {mapped / mib:.0f} MB in blocks mapped on their own"
        )
    return lines


def dump_snapshot(operator: OperatorProcess, path: Path, timeout: float = 300) -> None:
    """SIGUSR2 to the operator (`TRACEMALLOC_HOOK`), then wait for its snapshot."""
    path.unlink(missing_ok=True)
    operator.process.send_signal(signal.SIGUSR2)
    deadline = time.monotonic() + timeout
    while not path.exists():
        operator.healthy()  # raises if it exited
        if time.monotonic() > deadline:
            raise RuntimeError(f"no tracemalloc snapshot at {path} after {timeout:.0f} s")
        time.sleep(1.0)


def snapshot(rev: str, into: Path) -> Path:
    """The operator and worker packages as of git revision `rev`, extracted under `into`: to
    measure a commit (before/after a change) whatever the working tree holds."""
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", rev, "operator", "worker"],
        capture_output=True, check=False,
    )  # fmt: skip
    if archive.returncode != 0:
        raise Prerequisite(f"git archive {rev}: {archive.stderr.decode(errors='replace').strip()}")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def kube_api(kubeconfig: Path, pool_size: int = 8) -> k8s_client.ApiClient:
    configuration = k8s_client.Configuration()
    k8s_config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)  # type: ignore[no-untyped-call]
    configuration.connection_pool_maxsize = pool_size
    return k8s_client.ApiClient(configuration)


def pool_name(index: int) -> str:
    return f"pool-{index:05d}"


def is_bad(index: int, every: int) -> bool:
    """Whether pool `index` is one of the bad ones (`--bad-every`): every `every`-th pool."""
    return every > 0 and index % every == every - 1


def bad_spec(index: int, every: int, spec: dict[str, Any]) -> dict[str, Any]:
    """A bad pool as users write them: alternately a spec the CRD accepts but the operator
    refuses (a handler timeout longer than the lock: Ready=False, InvalidSpec) and an engine
    Secret that does not exist (Ready=False, SecretNotFound). Neither gets a Deployment."""
    if (index // every) % 2 == 0:
        spec["worker"] = {**spec["worker"], "lockDuration": "PT30S", "handlerTimeout": "PT1M"}
    else:
        spec["engine"] = {**spec["engine"], "authSecretRef": {"name": "missing-credentials"}}
    return spec


def create_pools(
    api: k8s_client.ApiClient,
    namespace: str,
    indexes: range,
    *,
    engine_url: str,
    pools_per_topic: int,
    interval: int,
    bad_every: int = 0,
) -> None:
    custom = k8s_client.CustomObjectsApi(api)

    def create(index: int) -> None:
        body: dict[str, Any] = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ExternalWorkerPool",
            "metadata": {"name": pool_name(index)},
            "spec": {
                "engine": {"url": engine_url},
                "topic": topic_of(index // pools_per_topic),
                # Each job wants a replica of its own, so every started instance moves replicas.
                # The handler is never imported: the pods are kwok's fakes, nothing runs in them.
                "worker": {"handler": {"python": "bench.noop:handle"}, "concurrency": 1},
                "scaling": {"pollingInterval": f"{interval}s"},
            },
        }
        if is_bad(index, bad_every):
            body["spec"] = bad_spec(index, bad_every, body["spec"])
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)

    pool = ThreadPoolExecutor(8)
    try:
        list(pool.map(create, indexes))
    finally:
        # On Ctrl-C or a failed create, the pools not yet created are not created: leaving the
        # `with` would have waited for every one of them.
        pool.shutdown(cancel_futures=True)


def wait_until(what: str, check: Any, timeout: float, operator: OperatorProcess) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        operator.healthy()  # raises if it exited
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(1.0)


def operator_writes(cluster: LocalCluster) -> int:
    """The API server's count so far of writes to what the operator touches."""
    status, text = cluster.api("GET", "/metrics")
    if status != 200:
        raise RuntimeError(f"kube-apiserver /metrics answered {status}")
    counts = apiserver_requests.parse(str(text))
    ours = Counter({k: v for k, v in counts.items() if apiserver_requests.is_operator(k)})
    return apiserver_requests.sum_verbs(ours, apiserver_requests.WRITE_VERBS)


def settle(
    cluster: LocalCluster, operator: OperatorProcess, *, interval: int, most: int
) -> tuple[int, int]:
    """Wait until a whole interval passes without an operator write, at most `most` intervals;
    (intervals waited, writes in the last one).

    New pools are not idle at once: each pool's SharedBacklog Warning and status change as the
    other pools on its topic get their first tick, which at 1000 pools goes on for about a
    minute and a half after they are created. A window that starts in that tail measures
    start-up, not idle pools (it made one run's writes 13 and the next one's 140 per interval)."""
    waited, before = 0, operator_writes(cluster)
    while waited < most:
        deadline = time.monotonic() + interval
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(1.0, left))
            operator.healthy()
        waited += 1
        now = operator_writes(cluster)
        writes, before = now - before, now
        if writes == 0:
            return waited, 0
    return waited, writes


# -- measuring ---------------------------------------------------------------------------------


def ticks(metrics_text: str, skip: frozenset[str] = frozenset()) -> tuple[float, int]:
    """(ticks so far of the pools not in `skip`, tick errors so far) from the operator's
    /metrics; the bad pools are skipped: they decide nothing, and the question is whether the good
    ones stay on schedule beside them."""
    total, errors = 0.0, 0.0
    for line in metrics_text.splitlines():
        if line.startswith(TICKS_METRIC):
            pool = re.search(r'pool="([^"]+)"', line)
            if pool is None or pool[1] not in skip:
                total += float(line.rsplit(" ", 1)[1])
        elif line.startswith("flowable_pool_tick_errors_total{"):
            errors += float(line.rsplit(" ", 1)[1])
    return total, int(errors)


@dataclass
class Reading:
    """Everything read at one edge of a window."""

    at: float
    ticks_at: float
    ticks: float
    tick_errors: int
    operator_cpu: float
    apiserver_cpu: float
    etcd_cpu: float
    requests: Counter[apiserver_requests.RequestKey]
    engine: Counter[Question]


def read(
    operator: OperatorProcess,
    cluster: LocalCluster,
    proxy: CountingProxy,
    *,
    first: bool,
    skip: frozenset[str] = frozenset(),
) -> Reading:
    """At the window's start the operator's /metrics is read first and CPU last, at its end the
    other way round, so rendering a large /metrics is not counted as the operator's idle cost."""
    pids = cluster.pids()

    def scrape() -> tuple[float, float, int]:
        started = time.monotonic()
        # Not `operator.metrics()`: its 5 s timeout is shorter than a render at 10,000 pools.
        text = httpx.get(operator.metrics_url, timeout=METRICS_TIMEOUT).text
        took = time.monotonic() - started
        if took > 1.0:
            print(f"  (the operator's /metrics took {took:.1f} s)", file=sys.stderr, flush=True)
        count, errors = ticks(text, skip)
        return (started + time.monotonic()) / 2, count, errors

    if first:
        ticks_at, count, errors = scrape()
    cpu = cpu_seconds(operator.process.pid)
    at = time.monotonic()
    apiserver_cpu = cpu_seconds(pids["kube-apiserver"])
    etcd_cpu = cpu_seconds(pids["etcd"])
    status, text = cluster.api("GET", "/metrics")
    if status != 200:
        raise RuntimeError(f"kube-apiserver /metrics answered {status}")
    engine = proxy.snapshot()
    if not first:
        ticks_at, count, errors = scrape()
    return Reading(
        at=at, ticks_at=ticks_at, ticks=count, tick_errors=errors, operator_cpu=cpu,
        apiserver_cpu=apiserver_cpu, etcd_cpu=etcd_cpu,
        requests=apiserver_requests.parse(str(text)), engine=engine,
    )  # fmt: skip


def window(
    operator: OperatorProcess,
    cluster: LocalCluster,
    proxy: CountingProxy,
    *,
    pools: int,
    topics: int,
    interval: int,
    intervals: int,
    bad: frozenset[str] = frozenset(),
) -> Stage:
    start = read(operator, cluster, proxy, first=True, skip=bad)
    peak_rss = rss_bytes(operator.process.pid)
    end_at = start.at + intervals * interval
    while (left := end_at - time.monotonic()) > 0:
        time.sleep(min(5.0, left))
        operator.healthy()
        peak_rss = max(peak_rss, rss_bytes(operator.process.pid))
    end = read(operator, cluster, proxy, first=False, skip=bad)
    seconds = end.at - start.at
    n = seconds / interval
    requests = end.requests - start.requests
    ours = Counter({k: v for k, v in requests.items() if apiserver_requests.is_operator(k)})
    theirs = Counter({k: v for k, v in requests.items() if not apiserver_requests.is_operator(k)})
    engine = end.engine - start.engine
    counts = [v / n for (_, target), v in engine.items() if target.startswith("/external-job-api/")]
    return Stage(
        pools=pools,
        topics=topics,
        window_s=round(seconds, 1),
        cpu_cores=round((end.operator_cpu - start.operator_cpu) / seconds, 4),
        rss_mb=round(peak_rss / 2**20, 1),
        # The kernel updates VmHWM when memory is unmapped, so it can trail the current VmRSS.
        rss_highest_mb=round(max(peak_rss, highest_rss_bytes(operator.process.pid)) / 2**20, 1),
        ticks_per_interval=round(
            (end.ticks - start.ticks)
            / ((pools - len(bad)) * (end.ticks_at - start.ticks_at) / interval),
            3,
        ),
        bad_pools=len(bad),
        tick_errors=end.tick_errors - start.tick_errors,
        apiserver_writes_per_interval=round(
            apiserver_requests.sum_verbs(ours, apiserver_requests.WRITE_VERBS) / n, 2
        ),
        apiserver_reads_per_interval=round(
            apiserver_requests.sum_verbs(ours, apiserver_requests.READ_VERBS) / n, 2
        ),
        apiserver_watches_per_interval=round(
            apiserver_requests.sum_verbs(ours, frozenset({"WATCH"})) / n, 2
        ),
        apiserver_other_per_interval=round(sum(theirs.values()) / n, 2),
        apiserver_cpu_cores=round((end.apiserver_cpu - start.apiserver_cpu) / seconds, 4),
        etcd_cpu_cores=round((end.etcd_cpu - start.etcd_cpu) / seconds, 4),
        engine_requests_per_question=round(statistics.mean(counts), 3) if counts else 0.0,
        engine_requests_per_question_max=round(max(counts), 3) if counts else 0.0,
        engine_questions=len(counts),
        engine_requests_per_interval=round(sum(engine.values()) / n, 2),
        lag_p50_s=None,
        lag_p99_s=None,
        lag_samples=0,
        lag_timeouts=0,
        apiserver_requests_per_interval={
            f"{verb} {resource}": round(count / n, 2)
            for (verb, resource), count in sorted(ours.items())
        },
    )


async def start_instances(base_url: str, definitions: list[str], spread: float) -> list[float]:
    """Start one instance of each definition, each at a random moment within `spread` seconds;
    when each start returned (its job exists).

    Pools created together tick together; starting every instance at once would time them all
    at the same phase of their tick. Random moments sample the phase as real work arrives."""
    async with FlowableRestApi.connect(base_url) as api:

        async def one(definition_id: str) -> float:
            await asyncio.sleep(random.uniform(0, spread))
            await api.start_process_instance(definition_id=definition_id)
            return time.monotonic()

        return list(await asyncio.gather(*(one(d) for d in definitions)))


def lag(
    watch: DeploymentWatch,
    operator: OperatorProcess,
    flowable_url: str,
    definitions: dict[str, str],
    used: Counter[str],
    *,
    pools: int,
    pools_per_topic: int,
    interval: int,
    samples: int,
    max_replicas: int = 10,
) -> tuple[list[float], int]:
    """(lags in seconds, pools that did not change within 3 intervals + 30 s of the round's
    last start)."""
    topics = math.ceil(pools / pools_per_topic)
    lags: list[float] = []
    timeouts = 0
    while len(lags) + timeouts < samples:
        want = math.ceil((samples - len(lags) - timeouts) / pools_per_topic)
        chosen = sorted(range(topics), key=lambda t: (used[topic_of(t)], t))[:want]
        watched: dict[str, tuple[int, int]] = {}  # deployment -> (topic index, replicas before)
        for t in chosen:
            used[topic_of(t)] += 1
            for index in range(t * pools_per_topic, min((t + 1) * pools_per_topic, pools)):
                name = f"{pool_name(index)}-worker"
                before = watch.replicas(name)
                if before is not None and before < max_replicas:
                    watched[name] = (t, before)
        if not watched:
            raise RuntimeError("every sampled pool is at maxReplicas: use fewer --lag-samples")
        started = asyncio.run(
            start_instances(flowable_url, [definitions[topic_of(t)] for t in chosen], interval)
        )
        started_at = dict(zip(chosen, started, strict=True))
        deadline = time.monotonic() + 3 * interval + 30  # from the last start
        waiting = dict(watched)
        while waiting and time.monotonic() < deadline:
            time.sleep(0.2)
            for name, (t, before) in list(waiting.items()):
                if watch.replicas(name) != before:
                    changed = watch.changed_at(name)
                    assert changed is not None
                    lags.append(changed - started_at[t])
                    del waiting[name]
            operator.healthy()
        timeouts += len(waiting)
    return lags, timeouts


def percentile(values: list[float], q: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 2)
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 2)


# -- profile -----------------------------------------------------------------------------------


def profile(pid: int, out: Path, seconds: int = 30) -> list[tuple[str, float]]:
    """py-spy's samples of `pid` for `seconds` (raw, collapsed stacks in `out`); the ten
    functions with the most own time (the innermost frame of a sample) and their share.

    Only the thread holding the GIL is sampled (`--gil`): that is where the operator's Python CPU
    goes. Without it, worker threads blocked in a TLS read of the API server's answer count as
    busy, and waiting looks like work."""
    py_spy = Path(sys.executable).parent / "py-spy"
    if not py_spy.exists():
        raise Prerequisite(f"{py_spy} is missing: `.venv/bin/pip install py-spy` for --profile")
    subprocess.run(
        [str(py_spy), "record", "--pid", str(pid), "--duration", str(seconds), "--format", "raw",
         "--nonblocking", "--gil", "-o", str(out)],
        check=True, capture_output=True,
    )  # fmt: skip
    own: Counter[str] = Counter()
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            # "function (file.py:line)": the function's own time, whichever of its lines
            own[re.sub(r":\d+\)$", ")", stack.split(";")[-1])] += int(count)
    total = sum(own.values()) or 1
    return [(frame, round(100 * n / total, 1)) for frame, n in own.most_common(10)]


# -- the run -----------------------------------------------------------------------------------


def run(args: argparse.Namespace, bin_dir: Path, jar: Path, progress: Any) -> list[Stage]:
    stages_at = sorted(set(args.pools))
    largest_topics = math.ceil(stages_at[-1] / args.pools_per_topic)
    models = args.models if args.models is not None else largest_topics
    if models < largest_topics:
        raise Prerequisite(
            f"--models {models} is fewer than the {largest_topics} topics of {stages_at[-1]} pools "
            f"at {args.pools_per_topic} per topic: every topic needs its model"
        )
    results: list[Stage] = []
    workdir = Path(tempfile.mkdtemp(prefix="fwo-bench-operator-"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        allocatable = {"cpu": "100000", "memory": "1000Ti", "pods": "1000000"}
        cluster = stack.enter_context(LocalCluster(bin_dir=bin_dir, node_allocatable=allocatable))
        progress(f"control plane ready in {cluster.ready_seconds:.1f} s")
        cluster.kubectl("apply", "-f", str(CRD))
        cluster.wait_crds_established([f"{PLURAL}.{GROUP}"])
        namespace = f"bench-{uuid.uuid4().hex[:6]}"
        status, body = cluster.api("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
        if status != 201:
            raise RuntimeError(f"creating namespace {namespace}: HTTP {status}: {body}")
        server = stack.enter_context(
            FlowableServer(jar=jar, jvm_options=("-Xmx2g", "-XX:+UseSerialGC"))
        )
        progress(f"Flowable ready in {server.startup_seconds:.1f} s")
        definitions = asyncio.run(deploy_models(server.base_url, models))
        progress(f"{models} models deployed")
        proxy = stack.enter_context(CountingProxy("127.0.0.1", server.port))
        watch = DeploymentWatch(cluster.kubeconfig, namespace).start()
        stack.callback(watch.stop)
        source = None
        if args.operator_rev is not None:
            source = snapshot(args.operator_rev, workdir / "source")
            progress(f"the operator as of {args.operator_rev}")
        operator = stack.enter_context(
            operator_process(
                cluster.kubeconfig,
                namespace,
                workdir / "operator.log",
                source,
                args.tracemalloc or args.heap,
                dict(args.operator_env),
            )
        )
        if args.tracemalloc is not None:
            operator.process.send_signal(signal.SIGUSR1)
            progress("tracemalloc is on: CPU and RSS are not comparable with other runs")
        heap_before = None
        if args.heap is not None:
            heap_before = args.heap.with_name(args.heap.name + ".before")
            dump_snapshot(operator, args.heap)  # where the hook writes: moved aside
            args.heap.replace(heap_before)
        progress(f"operator pid {operator.process.pid}, metrics {operator.metrics_url}")
        api = kube_api(cluster.kubeconfig)
        stack.callback(api.close)
        used: Counter[str] = Counter()
        created = 0
        for pools in stages_at:
            started = time.monotonic()
            create_pools(
                api, namespace, range(created, pools), engine_url=proxy.base_url,
                pools_per_topic=args.pools_per_topic, interval=args.interval,
                bad_every=args.bad_every,
            )  # fmt: skip
            names = [f"{pool_name(i)}-worker" for i in range(pools)
                     if not is_bad(i, args.bad_every)]  # fmt: skip
            bad = frozenset(pool_name(i) for i in range(pools) if is_bad(i, args.bad_every))
            wait_until(f"{pools} Deployments", lambda n=names: watch.has(n),
                       120 + 0.2 * (pools - created), operator)  # fmt: skip
            if watch.error is not None:
                raise RuntimeError(f"the Deployment watch failed: {watch.error}")
            progress(f"{pools} pools with their Deployments in {time.monotonic() - started:.0f} s")
            created = pools
            waited, writes = settle(cluster, operator, interval=args.interval,
                                    most=args.settle_intervals)  # fmt: skip
            progress(f"settled after {waited} intervals ({writes} writes in the last);"
                     f" warming up {args.warmup_intervals} intervals")  # fmt: skip
            time.sleep(args.warmup_intervals * args.interval)
            stage = window(
                operator, cluster, proxy, pools=pools,
                topics=math.ceil(pools / args.pools_per_topic),
                interval=args.interval, intervals=args.window_intervals, bad=bad,
            )  # fmt: skip
            progress(f"{pools} pools measured: {stage.cpu_cores} cores; timing the lag")
            if heap_before is not None and args.heap is not None and pools == stages_at[-1]:
                dump_snapshot(operator, args.heap)
                for line in allocator_lines(args.heap) + heap_growth(heap_before, args.heap, pools):
                    progress(line)
            if args.tracemalloc is not None and pools == stages_at[-1]:
                dump_snapshot(operator, args.tracemalloc)
                for line in memory_owners(args.tracemalloc, pools, stage.rss_mb):
                    progress(line)
            lags, timeouts = lag(
                watch, operator, server.base_url, definitions, used, pools=pools,
                pools_per_topic=args.pools_per_topic, interval=args.interval,
                samples=args.lag_samples,
            )  # fmt: skip
            stage.lag_p50_s, stage.lag_p99_s = percentile(lags, 50), percentile(lags, 99)
            stage.lag_samples, stage.lag_timeouts = len(lags), timeouts
            results.append(stage)
            progress(f"{pools} pools: lag p50 {stage.lag_p50_s} s, p99 {stage.lag_p99_s} s")
        if args.profile is not None:
            progress(f"profiling the operator for 30 s at {stages_at[-1]} pools")
            for frame, share in profile(operator.process.pid, args.profile):
                progress(f"  {share:5.1f}%  {frame}")
    return results


def print_table(stages: list[Stage]) -> None:
    columns = [
        ("pools", "pools", "{}"),
        ("topics", "topics", "{}"),
        ("op CPU", "cpu_cores", "{:.3f}"),
        ("RSS MB", "rss_mb", "{:.0f}"),
        ("max RSS MB", "rss_highest_mb", "{:.0f}"),
        ("ticks/pool/iv", "ticks_per_interval", "{:.3f}"),
        ("API writes/iv", "apiserver_writes_per_interval", "{:.1f}"),
        ("API reads/iv", "apiserver_reads_per_interval", "{:.1f}"),
        ("API watches/iv", "apiserver_watches_per_interval", "{:.1f}"),
        ("apiserver CPU", "apiserver_cpu_cores", "{:.3f}"),
        ("etcd CPU", "etcd_cpu_cores", "{:.3f}"),
        ("engine req/q/iv", "engine_requests_per_question", "{:.2f}"),
        ("max", "engine_requests_per_question_max", "{:.2f}"),
        ("lag p50 s", "lag_p50_s", "{}"),
        ("lag p99 s", "lag_p99_s", "{}"),
        ("lag n", "lag_samples", "{}"),
        ("bad", "bad_pools", "{}"),
    ]
    rows = [[fmt.format(getattr(s, key)) for _, key, fmt in columns] for s in stages]
    widths = [
        max(len(title), *(len(r[i]) for r in rows)) for i, (title, _, _) in enumerate(columns)
    ]
    print("  ".join(title.rjust(w) for (title, _, _), w in zip(columns, widths, strict=True)))
    for row in rows:
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)))
    for stage in stages:
        detail = ", ".join(f"{k} {v}" for k, v in stage.apiserver_requests_per_interval.items())
        print(f"{stage.pools} pools, API requests per interval: {detail or 'none'}")


def pool_list(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of positive pool counts")
    return values


def env_pair(text: str) -> tuple[str, str]:
    """`NAME=VALUE` for --operator-env."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError("NAME=VALUE")
    return name, value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pools",
        type=pool_list,
        default=[100, 1000, 10000],
        help="stages, cumulative (default 100,1000,10000)",
    )
    parser.add_argument("--pools-per-topic", type=int, default=5)
    parser.add_argument("--interval", type=int, default=15, help="pollingInterval, s")
    parser.add_argument("--warmup-intervals", type=int, default=2)
    parser.add_argument("--window-intervals", type=int, default=4)
    parser.add_argument(
        "--settle-intervals",
        type=int,
        default=10,
        help="before the warm-up, wait (at most this many intervals) for an interval without "
        "an operator write: new pools tell each other apart for a while (default 10)",
    )
    parser.add_argument("--lag-samples", type=int, default=50)
    parser.add_argument(
        "--bad-every",
        type=int,
        default=0,
        metavar="K",
        help="every K-th pool is bad: alternately a spec the operator refuses and a missing "
        "engine Secret (10: 100 bad of 1000); ticks/pool/iv is then the good pools' (default 0)",
    )
    parser.add_argument(
        "--models",
        type=int,
        default=None,
        help="deployed models, one topic each (default: the largest stage's topics)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="FILE",
        help="after the last stage, py-spy's raw samples of the operator here",
    )
    parser.add_argument(
        "--tracemalloc",
        type=Path,
        default=None,
        metavar="FILE",
        help="trace the operator's Python allocations from before the first pool; after the "
        "last stage's window, dump a snapshot here and print who holds the memory (CPU figures "
        "are then not comparable)",
    )
    parser.add_argument(
        "--heap",
        type=Path,
        default=None,
        metavar="FILE",
        help="before the first pool and after the last stage's window, count the operator's "
        "objects by type (FILE.before, FILE) and print what the pools added (no tracing cost); "
        "after the window also where its resident memory is (FILE.smaps) and what pymalloc "
        "(FILE.pymalloc) and glibc (FILE.malloc) hold in use and free",
    )
    parser.add_argument(
        "--operator-rev",
        default=None,
        metavar="REV",
        help="run the operator (and worker) packages of this git revision (default: the tree)",
    )
    parser.add_argument(
        "--operator-env",
        type=env_pair,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set this in the operator's environment only, e.g. to compare allocators: "
        "--operator-env LD_PRELOAD=libjemalloc.so.2 --operator-env PYTHONMALLOC=malloc "
        "(repeatable)",
    )
    args = parser.parse_args()

    def progress(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    def terminate(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    try:
        bin_dir, jar = prerequisites()
        stages = run(args, bin_dir, jar, progress)
    except Prerequisite as missing:
        print(f"error: {missing}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: everything started was stopped", file=sys.stderr)
        return 130
    print_table(stages)
    print(json.dumps({"stages": [asdict(stage) for stage in stages]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
