"""The scaling simulation's MODEL (bench/scaling_sim.py): its mechanics, not its figures.

Tiny constructed scenarios check what each contender's pieces do: who gets deleted, what a
deleted worker does with its jobs, that every job completes exactly once, that a seed fixes the
run. No wall-clock timing is asserted.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import scaling_sim as sim

CONTENDERS = [c.name for c in sim.CONTENDERS]


def fixed_jobs(count: int, duration: float, at: float = 0.0) -> sim.Trace:
    return sim.Trace("tiny", ((at, duration),) * count, (at,), horizon=0.0)


def small_bursts(seed: int = 7) -> sim.Trace:
    """The default trace's shape at a tenth of the size, for fast end-to-end runs."""
    params = sim.Params()
    full = sim.make_trace("bursts", seed, params)
    return sim.Trace("small", full.jobs[::10], full.burst_starts, full.horizon)


def test_the_default_trace_is_the_one_described() -> None:
    trace = sim.make_trace("bursts", 1, sim.Params())
    arrivals = [a for a, _ in trace.jobs]
    assert arrivals.count(0.0) == 400
    assert arrivals.count(300.0) == 150
    assert sorted(a for a in arrivals if a >= 600) == [float(t) for t in range(600, 900)]
    assert trace.horizon == 1500.0
    assert all(0 < d <= sim.Params().max_duration for _, d in trace.jobs)


@pytest.mark.parametrize("contender", CONTENDERS)
def test_without_scale_down_no_job_is_interrupted(contender: str) -> None:
    params = sim.Params(min_replicas=3, max_replicas=3)
    result = sim.simulate(contender, small_bursts(), params, seed=3)
    assert result.scale_downs == 0
    assert (result.jobs_on_deleted_pods, result.interrupted, result.work_seconds_lost) == (0, 0, 0)
    assert result.completed == result.jobs


def two_busy_pods(contender: str) -> sim.Simulation:
    """8 jobs of 100 s: two pods take 4 each and the queue is empty (no scale-down window)."""
    params = sim.Params(scale_down_window=0.0)
    simulation = sim.Simulation(
        sim.CONTENDER_BY_NAME[contender], fixed_jobs(8, 100.0), params, seed=1
    )
    simulation.advance(10.0)
    busy = [len(p.jobs) for p in simulation.live]
    assert busy == [4, 4]
    assert (len(simulation.waiting), simulation.running) == (0, 8)
    return simulation


def test_queue_only_scaler_scales_down_busy_pods_and_the_killed_client_strands_their_jobs() -> None:
    simulation = two_busy_pods("keda_hpa")
    simulation.advance(20.0)
    down = [c for c in simulation.changes if c.after < c.before]
    assert down, "the queue-only metric sees 0 waiting jobs and scales down"
    assert (down[0].before, down[0].after, down[0].unlocked, down[0].locked) == (2, 1, 0, 8)
    assert simulation.interrupted == 4
    assert simulation.orphaned == 4  # still locked: nobody may redo them before the lock expires
    assert len(simulation.waiting) == 0
    simulation.advance(299.0)
    assert simulation.orphaned == 4
    simulation.advance(320.0)
    assert simulation.orphaned == 0  # lock expired: unlocked, the queue wakes the pool up again
    result = simulation.run()
    assert result.completed == 8
    assert result.interrupted == 4
    assert result.latency_max > sim.Params().lock_duration


def test_our_scaler_keeps_busy_pods_while_their_jobs_are_locked() -> None:
    simulation = two_busy_pods("ours")
    simulation.advance(90.0)
    assert simulation.changes[-1].after == 2
    assert simulation.on_deleted == 0
    result = simulation.run()
    assert (result.completed, result.interrupted, result.jobs_on_deleted_pods) == (8, 0, 0)
    assert result.latency_max < 110.0


def test_our_worker_gives_back_what_it_cannot_finish_within_the_grace_period() -> None:
    simulation = two_busy_pods("keda_hpa_our_worker")
    simulation.advance(16.0)
    terminating = [p for p in simulation.live if p.state == sim.TERMINATING]
    assert len(terminating) == 1
    assert len(terminating[0].jobs) == 4
    simulation.advance(15.0 + sim.Params().grace_period)
    assert simulation.interrupted == 4
    assert simulation.orphaned == 0  # given back, not left locked
    assert len(simulation.waiting) == 4
    assert all(p.state != sim.TERMINATING for p in simulation.live)
    result = simulation.run()
    assert result.completed == 8
    # started at 5-6 s (pods Running at 5 s, polling once a second), given back at 15 + 25 s
    assert 4 * 34.0 <= result.work_seconds_lost <= 4 * 35.0


def test_our_worker_finishes_short_jobs_within_the_grace_period() -> None:
    params = sim.Params(scale_down_window=0.0)
    simulation = sim.Simulation(
        sim.CONTENDER_BY_NAME["keda_hpa_our_worker"], fixed_jobs(8, 18.0), params, seed=1
    )
    result = simulation.run()
    assert result.jobs_on_deleted_pods > 0
    assert (result.interrupted, result.work_seconds_lost) == (0, 0)


def test_ours_deletes_the_idle_pod_where_newest_first_deletes_the_busy_one() -> None:
    for name, interrupted in (("ours", 0), ("keda_hpa", 1)):
        simulation = sim.Simulation(
            sim.CONTENDER_BY_NAME[name], fixed_jobs(1, 200.0), sim.Params(), seed=1
        )
        old = sim.Pod(id=0, created=0, ready_at=0, next_poll=0, state=sim.READY)
        new = sim.Pod(id=1, created=10, ready_at=10, next_poll=10, state=sim.READY)
        simulation.pods += [old, new]
        simulation.live += [old, new]
        simulation._unlock(simulation.jobs[0])
        simulation._acquire(new, 10)  # the newest pod holds the only job
        simulation.replicas = 1
        simulation._sync_replicaset(20)
        assert simulation.interrupted == interrupted, name
        assert (new.state == sim.READY) is (name == "ours")
        assert (old.state == sim.READY) is (name != "ours")


def test_pods_still_starting_are_deleted_before_running_ones() -> None:
    for contender in sim.CONTENDERS:
        simulation = sim.Simulation(contender, fixed_jobs(1, 50.0), sim.Params(), seed=1)
        running = sim.Pod(id=0, created=0, ready_at=0, next_poll=0, state=sim.READY)
        starting = sim.Pod(id=1, created=5, ready_at=55, next_poll=55)
        simulation.pods += [running, starting]
        simulation.live += [running, starting]
        simulation.replicas = 1
        simulation._sync_replicaset(10)
        assert simulation.live == [running], contender.name


@pytest.mark.parametrize("contender", CONTENDERS)
def test_every_job_completes_exactly_once(contender: str) -> None:
    simulation = sim.Simulation(
        sim.CONTENDER_BY_NAME[contender], small_bursts(), sim.Params(mean_duration=60.0), seed=5
    )
    result = simulation.run()
    assert result.completed == result.jobs == len(simulation.jobs)
    assert all(job.completions == 1 and job.state == sim.DONE for job in simulation.jobs)
    assert simulation.running == simulation.orphaned == 0
    assert not simulation.waiting
    assert not simulation.live
    assert result.replica_seconds > 0


def test_a_queue_only_scaler_with_a_cooldown_shorter_than_its_jobs_never_finishes_them() -> None:
    params = sim.Params(scale_down_window=0.0, cooldown=30.0, max_time=3000.0)
    with pytest.raises(RuntimeError, match="livelock"):
        sim.simulate("keda_hpa", fixed_jobs(8, 100.0), params)
    assert sim.simulate("ours", fixed_jobs(8, 100.0), params).interrupted == 0


def test_a_seed_fixes_the_run() -> None:
    params = sim.Params()
    for name in ("spiky", "steady"):
        assert sim.make_trace(name, 4, params) == sim.make_trace(name, 4, params)
    assert sim.make_trace("bursts", 4, params) != sim.make_trace("bursts", 5, params)
    runs = [sim.simulate("keda_hpa", small_bursts(seed=2), params, seed=2) for _ in range(2)]
    assert runs[0].summary() == runs[1].summary()
    assert runs[0].changes == runs[1].changes


def test_the_command_line_prints_a_table_and_ends_with_one_json_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    assert sim.main(["--trace", "steady", "--seed", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith("| keda_hpa |") for line in lines)
    summary = json.loads(lines[-1])
    assert set(CONTENDERS) <= summary.keys()
    assert summary["ours"]["completed"] == summary["ours"]["jobs"]


def test_several_seeds_print_totals_and_means(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert sim.main(["--trace", "spiky", "--seeds", "2", "--contenders", "ours,keda_hpa"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["seeds"] == [1, 2]
    assert summary["ours"]["completed_total"] == summary["ours"]["jobs_total"]
    assert "keda_hpa_our_worker" not in summary
