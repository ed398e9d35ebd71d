"""Askers of one question ask in the same instant (`phase_delay`), so that one request answers
them all once per period, however their own starts were spread; answers stay as fresh as the
sharing window (`SharedAnswers.max_age`), not a fraction of the period."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowable_worker_operator.shared_answers import SharedAnswers, phase_delay

EPOCH = 1_796_000_000.0  # late 2026, seconds since the epoch


@given(
    period=st.sampled_from([1.0, 5.0, 15.0, 30.0, 60.0]),
    key=st.text(max_size=20),
    now=st.floats(min_value=EPOCH, max_value=EPOCH + 86_400),
)
def test_the_delay_ends_at_the_keys_moment_within_one_period(
    period: float, key: str, now: float
) -> None:
    delay = phase_delay(period, key, now)
    assert 0 < delay <= period
    # Whenever it is asked, the moment it names is the same moment modulo the period.
    later = now + random.Random(key).uniform(0, 10 * period)
    moment, other = now + delay, later + phase_delay(period, key, later)
    assert (other - moment) / period == pytest.approx(round((other - moment) / period), abs=1e-6)


def test_keys_keep_their_phase_and_nested_periods_meet() -> None:
    now = EPOCH + 7.25
    every_15, every_30 = now + phase_delay(15, "t", now), now + phase_delay(30, "t", now)
    assert (every_30 - every_15) % 15 == pytest.approx(0, abs=1e-6)
    phases = {round((now + phase_delay(15, f"topic-{n}", now)) % 15) for n in range(200)}
    assert len(phases) >= 10  # questions spread over the period, not all in one instant
    assert phase_delay(0, "t", now) == 0


async def test_pools_started_at_random_times_ask_once_per_interval() -> None:
    """Five pools on one topic, created at random moments, each ticking every 15 s at its
    phase: after their first ticks, one request per interval for all five (the 1 s memory of
    `--probe-share-seconds`); without the phase, about one per pool."""
    rng = random.Random(11)
    period, intervals = 15.0, 20

    async def count_requests(phased: bool) -> int:
        clock = [0.0]
        shared: SharedAnswers[str, int] = SharedAnswers(max_age=1.0, clock=lambda: clock[0])
        requests = 0

        async def fetch() -> int:
            nonlocal requests
            requests += 1
            return 1

        ticks: list[float] = []
        for _ in range(5):
            at = EPOCH + rng.uniform(0, period)
            ticks.append(at)
            for _ in range(intervals):
                at += phase_delay(period, "engine invoices", at) if phased else period
                ticks.append(at)
        for at in sorted(ticks):
            clock[0] = at
            await shared.get("invoices", fetch)
        return requests

    phased, drifting = await count_requests(True), await count_requests(False)
    assert phased <= 5 + intervals  # the five first ticks, then one per interval
    assert drifting >= 4 * intervals
