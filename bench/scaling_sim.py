"""Scaling behaviour vs KEDA/HPA: a deterministic discrete-event SIMULATION, not a cluster run.

What runs for real: the operator's decision core, `flowable_worker_operator.scaling.decide`,
called every `--polling-interval` with the history carried from tick to tick exactly as the
operator's reconcile loop does (`state.history = decision.history`). Everything around it
(Flowable's job table, the Deployment/ReplicaSet, pods, workers, handlers) is a MODEL written here.
KEDA itself cannot run on this machine (no Docker, no KEDA build) and has no Flowable scaler, so
the KEDA/HPA contender is the same core fed what a KEDA user would scale on.

Contenders (one ScalingSpec for all: min 0, max 20, 4 jobs per replica, cooldown 300 s, HPA
default behavior; they differ only where listed):

- ``ours``: metric = unlocked + locked jobs; scale-down victims by lowest
  ``pod-deletion-cost`` (= jobs the pod holds, as the operator annotates), ties newest first;
  our graceful worker.
- ``keda_hpa``: metric = unlocked jobs only (a metrics-api / SQL scaler on the waiting jobs);
  victims newest first (the ReplicaSet default for pods of equal cost and state); the official
  client, which is killed on SIGTERM without giving its jobs back.
- ``keda_hpa_our_worker``: the queue-only metric and newest-first victims of ``keda_hpa``, but
  our graceful worker: it separates what the metric costs from what the worker saves.

Model assumptions (all times are flags, printed at start):

- time advances in steps of ``--dt`` (0.1 s); everything happens on step boundaries;
- arrival traces: ``bursts`` (400 jobs at t=0, 150 at t=300, 1 job/s from t=600 to t=900, quiet
  until t=1500), ``steady`` (Poisson, 0.5 job/s for 1200 s), ``spiky`` (8 spikes of 20-120 jobs
  about every 240 s, seeded);
- job durations are lognormal with mean ``--mean-duration`` and shape ``--duration-sigma``,
  clipped to ``--max-duration`` (the handler timeout, shorter than the lock); a redone job takes
  its full duration again; the seeded RNG draws the same jobs for every contender;
- Flowable: a job is unlocked until a worker acquires it (oldest first), then locked for
  ``--lock-duration`` or until completed or given back; acquire/complete cost no time and never
  fail; jobs never fail;
- pods: created when the replicas are raised, Running ``--startup-delay`` later; each has
  ``--concurrency`` slots and, while it has a free slot, polls every ``--poll-interval`` (its
  phase in the second is drawn from the seeded RNG) and acquires min(free slots, waiting jobs);
- the ReplicaSet reacts to a replica change at once; on a scale-down it deletes not-yet-Running
  pods first, then by the contender's order above (Kubernetes' LogarithmicScaleDown bucketing
  and its random tie-break are not modelled);
- a deleted pod with our worker stops acquiring, lets running jobs finish for
  ``--grace-period`` (the worker's default 25 s, inside Kubernetes' 30 s), then gives back what
  still runs: those jobs are unlocked at once (the work done is lost, the job is not); the pod is
  gone when it holds nothing. With the official client the process dies on SIGTERM: its jobs
  stay locked until their lock expires, then are unlocked and redone;
- the probe is exact and never fails; the scaler reads the Deployment's replicas as the
  current count (as the operator reads ``/scale``); replica-seconds count every pod from creation
  until its process is gone (starting and terminating included).

Run: ``.venv/bin/python bench/scaling_sim.py [--seed N] [--trace bursts|steady|spiky]``. A table
is printed, then as the last line one JSON object (keys described in docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "operator"))

from flowable_worker_operator.scaling import (  # noqa: E402
    Backlog,
    History,
    Observation,
    ScalingBehavior,
    ScalingSpec,
    decide,
    default_scale_down_rules,
)

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
TRACES = ("bursts", "steady", "spiky")


class Metric(StrEnum):
    """What the scaler is shown as the backlog."""

    OUTSTANDING = "unlocked+locked"
    QUEUE = "unlocked only"


class Victims(StrEnum):
    """How the ReplicaSet orders Running pods for deletion."""

    COST_THEN_NEWEST = "lowest deletion cost, then newest"
    NEWEST = "newest first"


class WorkerKind(StrEnum):
    """What a worker does on SIGTERM."""

    GRACEFUL = "ours: finish within grace, give back the rest"
    KILLED = "official client: dies, jobs stay locked until the lock expires"


@dataclass(frozen=True)
class Contender:
    name: str
    metric: Metric
    victims: Victims
    worker: WorkerKind


CONTENDERS: tuple[Contender, ...] = (
    Contender("ours", Metric.OUTSTANDING, Victims.COST_THEN_NEWEST, WorkerKind.GRACEFUL),
    Contender("keda_hpa", Metric.QUEUE, Victims.NEWEST, WorkerKind.KILLED),
    Contender("keda_hpa_our_worker", Metric.QUEUE, Victims.NEWEST, WorkerKind.GRACEFUL),
)
CONTENDER_BY_NAME = {c.name: c for c in CONTENDERS}


@dataclass(frozen=True)
class Params:
    """The model's knobs; every one is a command-line flag of the same name."""

    dt: float = 0.1
    mean_duration: float = 20.0
    duration_sigma: float = 1.0
    max_duration: float = 240.0
    concurrency: int = 4
    poll_interval: float = 1.0
    lock_duration: float = 300.0
    startup_delay: float = 5.0
    grace_period: float = 25.0
    polling_interval: float = 15.0
    min_replicas: int = 0
    max_replicas: int = 20
    jobs_per_replica: int = 4
    cooldown: float = 300.0
    scale_down_window: float = 300.0
    max_time: float = 6 * 3600.0

    def spec(self) -> ScalingSpec:
        """The one ScalingSpec every contender's scaler uses (HPA default behavior)."""
        down = default_scale_down_rules()
        if down.stabilization_window != timedelta(seconds=self.scale_down_window):
            down = replace(down, stabilization_window=timedelta(seconds=self.scale_down_window))
        return ScalingSpec(
            min_replicas=self.min_replicas,
            max_replicas=self.max_replicas,
            jobs_per_replica=self.jobs_per_replica,
            cooldown_period=timedelta(seconds=self.cooldown),
            behavior=ScalingBehavior(scale_down=down),
        )

    def steps(self, seconds: float) -> int:
        return round(seconds / self.dt)


@dataclass(frozen=True)
class Trace:
    """Jobs as (arrival s, duration s), the start of each burst, and the quiet end of the trace."""

    name: str
    jobs: tuple[tuple[float, float], ...]
    burst_starts: tuple[float, ...]
    horizon: float


def _durations(rng: random.Random, count: int, params: Params) -> list[float]:
    sigma = params.duration_sigma
    mu = math.log(params.mean_duration) - sigma * sigma / 2
    return [min(rng.lognormvariate(mu, sigma), params.max_duration) for _ in range(count)]


def make_trace(name: str, seed: int, params: Params) -> Trace:
    """A named arrival trace; the same seed gives the same jobs and durations."""
    rng = random.Random(seed)
    arrivals: list[float]
    if name == "bursts":
        arrivals = [0.0] * 400 + [300.0] * 150 + [float(t) for t in range(600, 900)]
        starts: tuple[float, ...] = (0.0, 300.0, 600.0)
        horizon = 1500.0
    elif name == "steady":
        arrivals, t = [], rng.expovariate(0.5)
        while t < 1200.0:
            arrivals.append(round(t, 1))
            t += rng.expovariate(0.5)
        starts, horizon = (arrivals[0],), 1800.0
    elif name == "spiky":
        arrivals, spikes = [], []
        for k in range(8):
            at = round(k * 240.0 + rng.uniform(0.0, 60.0), 1)
            spikes.append(at)
            arrivals += [at] * rng.randint(20, 120)
        starts, horizon = tuple(spikes), spikes[-1] + 600.0
    else:
        raise ValueError(f"unknown trace {name!r}; choose from {', '.join(TRACES)}")
    durations = _durations(rng, len(arrivals), params)
    return Trace(name, tuple(zip(arrivals, durations, strict=True)), starts, horizon)


# --- the model -------------------------------------------------------------------------------

WAITING, RUNNING, ORPHANED, DONE = "waiting", "running", "orphaned", "done"
STARTING, READY, TERMINATING, GONE = "starting", "running", "terminating", "gone"


@dataclass
class Job:
    id: int
    arrival: int
    work: int
    state: str = WAITING
    attempt: int = 0
    started: int = 0
    pod: int | None = None
    lock_expires: int = 0
    completed: int | None = None
    completions: int = 0


@dataclass
class Pod:
    id: int
    created: int
    ready_at: int
    next_poll: int
    state: str = STARTING
    jobs: set[int] = field(default_factory=set)
    grace_end: int = 0
    exited: int | None = None


@dataclass(frozen=True)
class ScaleChange:
    """One replica change the scaler applied, with what it saw."""

    time: float
    before: int
    after: int
    reason: str
    unlocked: int
    locked: int


@dataclass
class Result:
    contender: str
    jobs: int
    completed: int
    jobs_on_deleted_pods: int
    interrupted: int
    work_seconds_lost: float
    latency_p50: float
    latency_p95: float
    latency_max: float
    replica_seconds: float
    burst_to_first_running: list[float | None]
    last_completion_to_zero: float | None
    end_time: float
    scale_ups: int
    scale_downs: int
    max_replicas_seen: int
    changes: list[ScaleChange] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, object]:
        data = asdict(self)
        del data["changes"], data["contender"]
        return data


def _percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty sequence."""
    rank = max(math.ceil(pct / 100 * len(sorted_values)), 1)
    return sorted_values[rank - 1]


class Simulation:
    """One contender over one trace: Flowable's jobs, a ReplicaSet, pods, and the real scaler."""

    def __init__(self, contender: Contender, trace: Trace, params: Params, seed: int) -> None:
        self.c = contender
        self.p = params
        self.trace = trace
        self.spec = params.spec()
        self.phase_rng = random.Random(seed + 1)
        self.jobs = [
            Job(id=i, arrival=params.steps(a), work=max(params.steps(d), 1))
            for i, (a, d) in enumerate(trace.jobs)
        ]
        self.by_arrival = sorted(self.jobs, key=lambda j: (j.arrival, j.id))
        self.next_arrival = 0
        self.waiting: list[tuple[int, int]] = []  # (arrival, id): acquire oldest first
        self.ends: list[tuple[int, int, int]] = []  # (end step, job id, attempt)
        self.expiries: list[tuple[int, int, int]] = []  # orphaned locks: (expiry, id, attempt)
        self.running = 0
        self.orphaned = 0
        self.pods: list[Pod] = []
        self.live: list[Pod] = []
        self.replicas = 0
        self.history = History()
        self.changes: list[ScaleChange] = []
        self.on_deleted = 0
        self.interrupted = 0
        self.lost_steps = 0
        self.done = 0
        self.last_zero: int | None = None
        self.burst_running: list[int | None] = [None] * len(trace.burst_starts)
        self.step = 0

    # Flowable -----------------------------------------------------------------------------

    def _unlock(self, job: Job) -> None:
        job.state, job.pod = WAITING, None
        heapq.heappush(self.waiting, (job.arrival, job.id))

    def _acquire(self, pod: Pod, step: int) -> None:
        while len(pod.jobs) < self.p.concurrency and self.waiting:
            _, job_id = heapq.heappop(self.waiting)
            job = self.jobs[job_id]
            job.state, job.pod, job.started = RUNNING, pod.id, step
            job.attempt += 1
            job.lock_expires = step + self.p.steps(self.p.lock_duration)
            pod.jobs.add(job_id)
            self.running += 1
            heapq.heappush(self.ends, (step + job.work, job_id, job.attempt))

    def _abandon(self, job: Job, step: int, *, give_back: bool) -> None:
        """A running job whose worker stops: given back (unlocked now) or orphaned (locked)."""
        self.interrupted += 1
        self.lost_steps += step - job.started
        self.running -= 1
        job.attempt += 1  # its pending end event is stale from now on
        if give_back:
            self._unlock(job)
        else:
            job.state, job.pod = ORPHANED, None
            self.orphaned += 1
            heapq.heappush(self.expiries, (job.lock_expires, job.id, job.attempt))

    # Kubernetes ---------------------------------------------------------------------------

    def _create_pod(self, step: int) -> None:
        ready = step + self.p.steps(self.p.startup_delay)
        phase = self.phase_rng.randrange(max(self.p.steps(self.p.poll_interval), 1))
        pod = Pod(id=len(self.pods), created=step, ready_at=ready, next_poll=ready + phase)
        self.pods.append(pod)
        self.live.append(pod)

    def _victim_key(self, pod: Pod) -> tuple[int, ...]:
        ready = 1 if pod.state == READY else 0
        if self.c.victims is Victims.COST_THEN_NEWEST:
            return (ready, len(pod.jobs), -pod.created, -pod.id)
        return (ready, -pod.created, -pod.id)

    def _delete_pod(self, pod: Pod, step: int) -> None:
        self.on_deleted += len(pod.jobs)
        if self.c.worker is WorkerKind.KILLED:
            for job_id in sorted(pod.jobs):
                self._abandon(self.jobs[job_id], step, give_back=False)
            pod.jobs.clear()
            self._exit(pod, step)
        else:
            pod.state, pod.grace_end = TERMINATING, step + self.p.steps(self.p.grace_period)
            if not pod.jobs:
                self._exit(pod, step)

    def _exit(self, pod: Pod, step: int) -> None:
        pod.state, pod.exited = GONE, step
        self.live.remove(pod)

    def _sync_replicaset(self, step: int) -> None:
        active = [p for p in self.live if p.state in (STARTING, READY)]
        for _ in range(self.replicas - len(active)):
            self._create_pod(step)
        surplus = len(active) - self.replicas
        if surplus > 0:
            for pod in sorted(active, key=self._victim_key)[:surplus]:
                self._delete_pod(pod, step)

    # the scaler ---------------------------------------------------------------------------

    def _tick(self, step: int) -> None:
        unlocked, locked = len(self.waiting), self.running + self.orphaned
        shown = Backlog(unlocked, locked if self.c.metric is Metric.OUTSTANDING else 0)
        now = EPOCH + timedelta(microseconds=step * round(self.p.dt * 1_000_000))
        decision = decide(
            spec=self.spec,
            observation=Observation(now=now, current_replicas=self.replicas, backlog=shown),
            history=self.history,
        )
        self.history = decision.history  # as the operator: carried whatever was decided
        if decision.desired_replicas != self.replicas:
            self.changes.append(
                ScaleChange(
                    time=step * self.p.dt,
                    before=self.replicas,
                    after=decision.desired_replicas,
                    reason=str(decision.reason),
                    unlocked=unlocked,
                    locked=locked,
                )
            )
            self.replicas = decision.desired_replicas
            if self.replicas == 0:
                self.last_zero = step
            self._sync_replicaset(step)

    # the loop -----------------------------------------------------------------------------

    def _step(self, step: int) -> None:
        while (
            self.next_arrival < len(self.by_arrival)
            and self.by_arrival[self.next_arrival].arrival <= step
        ):
            self._unlock(self.by_arrival[self.next_arrival])
            self.next_arrival += 1
        while self.expiries and self.expiries[0][0] <= step:
            _, job_id, attempt = heapq.heappop(self.expiries)
            job = self.jobs[job_id]
            if job.state == ORPHANED and job.attempt == attempt:
                self.orphaned -= 1
                self._unlock(job)
        while self.ends and self.ends[0][0] <= step:
            _, job_id, attempt = heapq.heappop(self.ends)
            job = self.jobs[job_id]
            if job.state != RUNNING or job.attempt != attempt:
                continue
            assert job.completions == 0, f"job {job_id} completed twice"
            assert job.pod is not None
            self.pods[job.pod].jobs.discard(job_id)
            job.state, job.completed, job.pod = DONE, step, None
            job.completions += 1
            self.running -= 1
            self.done += 1
        any_ready = False
        for pod in list(self.live):
            if pod.state == TERMINATING:
                if pod.jobs and step >= pod.grace_end:
                    for job_id in sorted(pod.jobs):
                        self._abandon(self.jobs[job_id], step, give_back=True)
                    pod.jobs.clear()
                if not pod.jobs:
                    self._exit(pod, step)
                continue
            if pod.state == STARTING and step >= pod.ready_at:
                pod.state = READY
            if pod.state == READY:
                any_ready = True
                if step >= pod.next_poll:
                    pod.next_poll = step + self.p.steps(self.p.poll_interval)
                    self._acquire(pod, step)
        if any_ready:
            for i, start in enumerate(self.trace.burst_starts):
                if self.burst_running[i] is None and step >= self.p.steps(start):
                    self.burst_running[i] = step - self.p.steps(start)
        if step % self.p.steps(self.p.polling_interval) == 0:
            self._tick(step)

    def finished(self) -> bool:
        """Every job done, the pool back at minReplicas (0 by default), no pod terminating."""
        return (
            self.done == len(self.jobs)
            and self.replicas == self.p.min_replicas
            and len(self.live) == self.replicas
            and all(pod.state != TERMINATING for pod in self.live)
        )

    def advance(self, until: float) -> None:
        """Simulate every step up to and including time ``until`` (s); for tests and probes."""
        last = self.p.steps(until)
        while self.step <= last:
            self._step(self.step)
            self.step += 1

    def run(self) -> Result:
        """Simulate until the trace's horizon has passed and everything is done and scaled to 0."""
        horizon = self.p.steps(self.trace.horizon)
        limit = self.p.steps(self.p.max_time)
        while True:
            self._step(self.step)
            if self.step >= horizon and self.finished():
                break
            self.step += 1
            if self.step > limit:
                raise RuntimeError(
                    f"{self.c.name}: not finished after {self.p.max_time:g}s "
                    f"({self.done}/{len(self.jobs)} jobs done, {self.replicas} replicas): "
                    "a livelock of scale-downs and redone jobs?"
                )
        return self._result(self.step)

    def _result(self, end: int) -> Result:
        dt = self.p.dt
        for job in self.jobs:
            assert job.completions == 1, f"job {job.id} completed {job.completions} times"
        latencies = sorted(
            (job.completed - job.arrival) * dt for job in self.jobs if job.completed is not None
        )
        last_completion = max(
            (j.completed for j in self.jobs if j.completed is not None), default=0
        )
        pod_steps = sum((p.exited if p.exited is not None else end) - p.created for p in self.pods)
        return Result(
            contender=self.c.name,
            jobs=len(self.jobs),
            completed=self.done,
            jobs_on_deleted_pods=self.on_deleted,
            interrupted=self.interrupted,
            work_seconds_lost=round(self.lost_steps * dt, 1),
            latency_p50=round(_percentile(latencies, 50), 1) if latencies else 0.0,
            latency_p95=round(_percentile(latencies, 95), 1) if latencies else 0.0,
            latency_max=round(latencies[-1], 1) if latencies else 0.0,
            replica_seconds=round(pod_steps * dt, 1),
            burst_to_first_running=[
                None if s is None else round(s * dt, 1) for s in self.burst_running
            ],
            last_completion_to_zero=(
                None
                if self.last_zero is None
                else round((self.last_zero - last_completion) * dt, 1)
            ),
            end_time=round(last_completion * dt, 1),
            scale_ups=sum(1 for c in self.changes if c.after > c.before),
            scale_downs=sum(1 for c in self.changes if c.after < c.before),
            max_replicas_seen=max((c.after for c in self.changes), default=0),
            changes=self.changes,
        )


def simulate(
    contender: Contender | str, trace: Trace, params: Params | None = None, seed: int = 1
) -> Result:
    """Run one contender over one trace; raises if a job is not completed exactly once."""
    if isinstance(contender, str):
        contender = CONTENDER_BY_NAME[contender]
    return Simulation(contender, trace, params or Params(), seed).run()


# --- the command line ------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=(
            "Deterministic SIMULATION of the operator's real scaling core (scaling.decide) over a "
            "modelled cluster, against a KEDA/HPA configuration of the same core (queue-only "
            "metric, newest-first deletion, official client killed on SIGTERM). Not a cluster run; "
            "the model's assumptions are in this script's docstring and docs/benchmarks.md."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the job durations and phases")
    parser.add_argument("--trace", choices=TRACES, default="bursts", help="arrival trace")
    parser.add_argument(
        "--contenders",
        default=",".join(c.name for c in CONTENDERS),
        help="comma-separated contenders to run",
    )
    parser.add_argument("--changes", action="store_true", help="print every replica change")
    parser.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="run seeds SEED..SEED+N-1 and print totals and means over them instead of one run",
    )
    helps = {
        "dt": "simulation step, s",
        "mean_duration": "mean job duration, s (lognormal)",
        "duration_sigma": "lognormal shape of the job durations",
        "max_duration": "durations are clipped here (the handler timeout, under the lock), s",
        "concurrency": "job slots per pod",
        "poll_interval": "a pod with free slots acquires this often, s",
        "lock_duration": "Flowable lock duration, s",
        "startup_delay": "from pod creation to Running, s",
        "grace_period": "our worker's grace period on SIGTERM, s",
        "polling_interval": "scaler tick, s",
        "min_replicas": "ScalingSpec minReplicas",
        "max_replicas": "ScalingSpec maxReplicas",
        "jobs_per_replica": "ScalingSpec jobsPerReplica",
        "cooldown": "ScalingSpec cooldownPeriod, s",
        "scale_down_window": "HPA scale-down stabilization window, s",
        "max_time": "give up (livelock) after this much simulated time, s",
    }
    defaults = Params()
    for f in fields(Params):
        value = getattr(defaults, f.name)
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            type=type(value),
            default=value,
            help=helps[f.name],
        )
    return parser


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _table(results: Sequence[Result]) -> str:
    header = (
        "| contender | completed | on deleted pods | interrupted | work lost s | latency p50 / "
        "p95 / max s | replica-s | burst -> first Running s | last completion -> 0 s | "
        "end s | ups / downs |"
    )
    lines = [header, "|---|" + "---:|" * 10]
    for r in results:
        bursts = ", ".join(_fmt(b) for b in r.burst_to_first_running)
        lines.append(
            f"| {r.contender} | {r.completed}/{r.jobs} | {r.jobs_on_deleted_pods} | "
            f"{r.interrupted} | {r.work_seconds_lost:g} | {r.latency_p50:g} / {r.latency_p95:g} "
            f"/ {r.latency_max:g} | {r.replica_seconds:g} | {bursts} | "
            f"{_fmt(r.last_completion_to_zero)} | {r.end_time:g} | {r.scale_ups} / "
            f"{r.scale_downs} |"
        )
    return "\n".join(lines)


def _aggregate(runs: Sequence[Result]) -> dict[str, object]:
    """Several seeds of one contender: totals of what was lost, means of the rest."""
    n = len(runs)
    zeros = [r.last_completion_to_zero for r in runs if r.last_completion_to_zero is not None]
    return {
        "jobs_total": sum(r.jobs for r in runs),
        "completed_total": sum(r.completed for r in runs),
        "interrupted_total": sum(r.interrupted for r in runs),
        "runs_with_interruptions": sum(1 for r in runs if r.interrupted),
        "work_seconds_lost_total": round(sum(r.work_seconds_lost for r in runs), 1),
        "latency_p50_mean": round(sum(r.latency_p50 for r in runs) / n, 1),
        "latency_p95_mean": round(sum(r.latency_p95 for r in runs) / n, 1),
        "latency_max_max": max(r.latency_max for r in runs),
        "replica_seconds_mean": round(sum(r.replica_seconds for r in runs) / n, 1),
        "end_time_mean": round(sum(r.end_time for r in runs) / n, 1),
        "last_completion_to_zero_mean": round(sum(zeros) / len(zeros), 1) if zeros else None,
    }


def _aggregate_table(summaries: dict[str, dict[str, object]]) -> str:
    lines = [
        "| contender | completed | interrupted (runs) | work lost s | latency p50 / p95 mean s | "
        "latency max s | replica-s mean | end s mean |",
        "|---|" + "---:|" * 7,
    ]
    for name, a in summaries.items():
        lines.append(
            f"| {name} | {a['completed_total']}/{a['jobs_total']} | {a['interrupted_total']} "
            f"({a['runs_with_interruptions']}) | {a['work_seconds_lost_total']} | "
            f"{a['latency_p50_mean']} / {a['latency_p95_mean']} | {a['latency_max_max']} | "
            f"{a['replica_seconds_mean']} | {a['end_time_mean']} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    params = Params(**{f.name: getattr(args, f.name) for f in fields(Params)})
    names = [n.strip() for n in args.contenders.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONTENDER_BY_NAME]
    if unknown or args.seeds < 1:
        print(
            f"unknown contender(s): {', '.join(unknown)}" if unknown else "--seeds must be >= 1",
            file=sys.stderr,
        )
        return 2
    seeds = list(range(args.seed, args.seed + args.seeds))
    trace = make_trace(args.trace, args.seed, params)
    print("SIMULATION of scaling.decide over a modelled cluster (see the docstring's assumptions)")
    print(
        f"trace={trace.name} seed={args.seed} jobs={len(trace.jobs)} "
        + " ".join(f"{k}={v:g}" for k, v in asdict(params).items())
    )
    for c in (CONTENDER_BY_NAME[n] for n in names):
        print(f"  {c.name}: metric {c.metric}; victims {c.victims}; worker {c.worker}")
    started = time.perf_counter()
    if len(seeds) > 1:
        per_contender: dict[str, list[Result]] = {name: [] for name in names}
        for seed in seeds:
            seeded = make_trace(args.trace, seed, params)
            for name in names:
                per_contender[name].append(simulate(name, seeded, params, seed))
        aggregates = {name: _aggregate(runs) for name, runs in per_contender.items()}
        print(f"\nseeds {seeds[0]}-{seeds[-1]} ({len(seeds)} runs per contender)\n")
        print(_aggregate_table(aggregates))
        print(f"\nsimulated in {time.perf_counter() - started:.2f} s of wall time")
        combined: dict[str, object] = {"trace": trace.name, "seeds": [seeds[0], seeds[-1]]}
        combined.update(aggregates)
        print(json.dumps(combined))
        return 0
    results = [simulate(name, trace, params, args.seed) for name in names]
    elapsed = time.perf_counter() - started
    if args.changes:
        for r in results:
            print(f"\n{r.contender} replica changes:")
            for ch in r.changes:
                print(
                    f"  t={ch.time:7.1f} {ch.before:2d} -> {ch.after:2d} {ch.reason:<10} "
                    f"(unlocked {ch.unlocked}, locked {ch.locked})"
                )
    print()
    print(_table(results))
    print(f"\nsimulated in {elapsed:.2f} s of wall time")
    summary: dict[str, object] = {"trace": trace.name, "seed": args.seed, "jobs": len(trace.jobs)}
    summary.update({r.contender: r.summary() for r in results})
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
