"""`ticker.Ticker`: one clock for many pools, on a real event loop with short pauses."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from flowable_worker_operator.ticker import Ticker


class Ticks:
    """A tick function that records each call, returns its pause, and can be held or fail."""

    def __init__(self, pause: float = 3600.0) -> None:
        self.pause = pause
        self.calls: list[str] = []
        self.hold: dict[str, asyncio.Event] = {}
        self.fail: set[str] = set()
        self.seen = asyncio.Event()

    async def __call__(self, key: str) -> float:
        self.calls.append(key)
        self.seen.set()
        held = self.hold.get(key)
        if held is not None:
            await held.wait()
        if key in self.fail:
            self.fail.discard(key)
            raise RuntimeError("API server said no")
        return self.pause

    async def wait_for(self, count: int, key: str | None = None) -> None:
        async def enough() -> None:
            while sum(1 for c in self.calls if key is None or c == key) < count:
                self.seen.clear()
                await self.seen.wait()

        await asyncio.wait_for(enough(), timeout=5)


async def test_a_key_ticks_at_once_then_after_the_pause_its_tick_returns() -> None:
    ticks = Ticks(pause=0.05)
    ticker = Ticker(ticks)
    ticker.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    ticker.add("a")
    await ticks.wait_for(3)
    assert 0.09 < loop.time() - started < 2
    assert ticks.calls[:3] == ["a", "a", "a"]
    await ticker.stop()


async def test_keys_tick_in_the_order_they_are_due_on_one_timer() -> None:
    order: list[str] = []
    pauses = {"slow": 0.2, "fast": 0.02}

    async def tick(key: str) -> float:
        order.append(key)
        return pauses[key]

    ticker = Ticker(tick)
    ticker.start()
    ticker.add("slow")
    ticker.add("fast")
    await asyncio.sleep(0.3)
    await ticker.stop()
    assert order[:2] == ["slow", "fast"]  # both at once, in the order added
    counts = Counter(order)
    assert counts["fast"] >= 5
    assert 2 <= counts["slow"] <= 3


async def test_a_thousand_keys_due_together_all_tick() -> None:
    ticks = Ticks()
    ticker = Ticker(ticks)
    ticker.start()
    for index in range(1000):
        ticker.add(f"p{index}")
    await ticks.wait_for(1000)
    assert len(set(ticks.calls)) == 1000
    assert len(ticker) == 1000
    await ticker.stop()


async def test_a_wake_up_ticks_a_waiting_key_now() -> None:
    ticks = Ticks(pause=3600)
    ticker = Ticker(ticks)
    ticker.start()
    ticker.add("a")
    await ticks.wait_for(1)
    await asyncio.sleep(0.01)
    due = ticker.due_in("a")
    assert due is not None
    assert due > 3000
    ticker.wake("a")
    await ticks.wait_for(2)
    ticker.wake("unknown")  # no effect, no error
    await ticker.stop()


async def test_woken_while_ticking_the_next_tick_follows_at_once() -> None:
    ticks = Ticks(pause=3600)
    gate = asyncio.Event()
    ticks.hold["a"] = gate
    ticker = Ticker(ticks)
    ticker.start()
    ticker.add("a")
    await ticks.wait_for(1)
    ticker.wake("a")
    ticker.wake("a")
    del ticks.hold["a"]
    gate.set()
    await ticks.wait_for(2)
    await asyncio.sleep(0.05)
    assert ticks.calls == ["a", "a"]  # two wake-ups during one tick: one more tick, not two
    due = ticker.due_in("a")
    assert due is not None
    assert due > 3000
    await ticker.stop()


async def test_a_failed_tick_is_logged_and_tried_again_after_the_error_pause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ticks = Ticks(pause=3600)
    ticks.fail.add("a")
    ticker = Ticker(ticks, error_pause=0.02)
    ticker.start()
    ticker.add("a")
    await ticks.wait_for(2)
    assert "tick of a failed" in caplog.text
    await ticker.stop()


async def test_remove_waits_for_the_tick_in_flight_and_ticks_no_more() -> None:
    ticks = Ticks(pause=0.01)
    gate = asyncio.Event()
    ticks.hold["a"] = gate
    ticker = Ticker(ticks)
    ticker.start()
    ticker.add("a")
    await ticks.wait_for(1)
    removing = asyncio.ensure_future(ticker.remove("a"))
    await asyncio.sleep(0.02)
    assert not removing.done()  # the tick is still running
    gate.set()
    await asyncio.wait_for(removing, timeout=5)
    await asyncio.sleep(0.05)
    assert ticks.calls == ["a"]
    assert "a" not in ticker
    await ticker.stop()


async def test_a_tick_past_its_grace_is_cancelled() -> None:
    ticks = Ticks()
    ticks.hold["a"] = asyncio.Event()  # never set
    ticker = Ticker(ticks, grace=0.02)
    ticker.start()
    ticker.add("a")
    await ticks.wait_for(1)
    running = ticker._running["a"]
    await asyncio.wait_for(ticker.remove("a"), timeout=5)
    assert running.cancelled()
    await ticker.stop()


async def test_a_key_added_again_while_its_last_tick_ends_ticks_right_after_it() -> None:
    ticks = Ticks(pause=3600)
    gate = asyncio.Event()
    ticks.hold["a"] = gate
    ticker = Ticker(ticks)
    ticker.start()
    ticker.add("a")
    await ticks.wait_for(1)
    removing = asyncio.ensure_future(ticker.remove("a"))
    await asyncio.sleep(0)
    ticker.add("a")  # the same name, made again
    del ticks.hold["a"]
    gate.set()
    await asyncio.wait_for(removing, timeout=5)
    await ticks.wait_for(2)
    assert "a" in ticker
    await ticker.stop()


async def test_stop_ends_the_clock_and_the_ticks_in_flight() -> None:
    ticks = Ticks(pause=0.01)
    ticks.hold["b"] = asyncio.Event()  # never set
    ticker = Ticker(ticks, grace=0.02)
    ticker.start()
    ticker.add("a")
    ticker.add("b")
    await ticks.wait_for(1, "b")
    await asyncio.wait_for(ticker.stop(), timeout=5)
    calls = len(ticks.calls)
    await asyncio.sleep(0.05)
    assert len(ticks.calls) == calls
    assert len(ticker) == 0


async def test_keys_added_before_the_start_tick_once_it_starts() -> None:
    ticks = Ticks()
    ticker = Ticker(ticks)
    ticker.add("a")
    await asyncio.sleep(0.02)
    assert ticks.calls == []
    ticker.start()
    await ticks.wait_for(1)
    await ticker.stop()


async def test_a_cancelled_stop_cancels_the_ticks_in_flight_at_once() -> None:
    ticks = Ticks()
    ticks.hold["a"] = asyncio.Event()  # never set
    ticker = Ticker(ticks, grace=3600)
    ticker.start()
    ticker.add("a")
    await ticks.wait_for(1)
    running = ticker._running["a"]
    stopping = asyncio.ensure_future(ticker.stop())
    await asyncio.sleep(0.02)
    stopping.cancel()  # e.g. kopf cancelled after a lost Lease
    with pytest.raises(asyncio.CancelledError):
        await stopping
    await asyncio.sleep(0)
    assert running.cancelled()
