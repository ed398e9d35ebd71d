"""Polling backoff (bounded, jittered) and handler slots (never more than the capacity)."""

from __future__ import annotations

import asyncio

import pytest

from flowable_worker.client.backoff import Backoff
from flowable_worker.slots import Slots


def test_backoff_doubles_up_to_its_bound_with_jitter_below_each_step() -> None:
    backoff = Backoff(initial=0.1, maximum=1.0, jitter="equal", uniform=lambda low, high: high)
    assert [round(backoff.next_delay(), 3) for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    backoff.reset()
    assert backoff.next_delay() == pytest.approx(0.1)


def test_backoff_jitter_stays_within_half_to_full_delay() -> None:
    backoff = Backoff(initial=1.0, maximum=1.0, jitter="equal")
    delays = [backoff.next_delay() for _ in range(200)]
    assert all(0.5 <= d <= 1.0 for d in delays)
    assert len(set(delays)) > 100


def test_backoff_stops_counting_at_its_bound_however_long_the_run() -> None:
    backoff = Backoff(initial=0.1, maximum=1.0, jitter="equal", uniform=lambda low, high: low)
    delays = [backoff.next_delay() for _ in range(10_000)]
    assert backoff.attempts == 4  # 0.1, 0.2, 0.4, 0.8 grew; 1.0 is the bound
    assert delays[-1] == pytest.approx(0.5)  # equal jitter: never below half the bound


async def test_reserve_takes_at_most_what_is_free() -> None:
    slots = Slots(4)
    assert await slots.reserve(10) == 4
    slots.release(3)
    assert await slots.reserve(2) == 2
    assert slots.free == 1


async def test_reserve_waits_for_a_release() -> None:
    slots = Slots(1)
    await slots.reserve(1)
    waiting = asyncio.create_task(slots.reserve(5))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    slots.release(1)
    assert await asyncio.wait_for(waiting, 1) == 1


async def test_wait_all_free_returns_once_everything_is_released() -> None:
    slots = Slots(2)
    await slots.reserve(2)
    waiting = asyncio.create_task(slots.wait_all_free())
    slots.release(1)
    await asyncio.sleep(0.01)
    assert not waiting.done()
    slots.release(1)
    await asyncio.wait_for(waiting, 1)


async def test_reserve_never_returns_zero_when_others_take_the_slots_it_waited_for() -> None:
    # Two pollers gather: one frees a slot, the other takes it during the first's patience.
    slots = Slots(4)
    await slots.reserve(4)
    slots.release(1)
    patient = asyncio.create_task(slots.reserve(4, gather=2, patience=0.05))
    await asyncio.sleep(0)  # the patient one now waits for a second free slot
    assert await slots.reserve(1) == 1  # another topic's poller takes the one free slot
    await asyncio.sleep(0.1)  # past the patience: nothing free
    assert not patient.done()  # it goes on waiting instead of giving up with 0
    slots.release(2)
    assert await asyncio.wait_for(patient, 1) == 2
