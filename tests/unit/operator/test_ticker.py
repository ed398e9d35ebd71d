"""`ticker.Ticker`: one clock for many pools, on a real event loop with short pauses."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

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


class Concurrent:
    """A tick function that counts the ticks in flight (the most at once, per call number) and
    holds each until released; `pause` is the pause each returns."""

    def __init__(self, pause: float = 3600.0) -> None:
        self.pause = pause
        self.now = 0
        self.most = 0
        self.calls: list[str] = []
        self.gate = asyncio.Event()

    async def __call__(self, key: str) -> float:
        self.calls.append(key)
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await self.gate.wait()
        finally:
            self.now -= 1
        return self.pause


async def _until(condition: Callable[[], bool]) -> None:
    """Let the loop run until `condition` holds, for 5 s at most."""
    for _ in range(5000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("not within 5 s")


async def test_without_a_bound_every_new_key_ticks_at_once() -> None:
    # What the bound below changes: a thousand new keys, a thousand first ticks in flight.
    ticks = Concurrent()
    ticker = Ticker(ticks)
    ticker.start()
    for index in range(1000):
        ticker.add(f"p{index}")
    await _until(lambda: len(ticks.calls) == 1000)
    assert ticks.most == 1000
    ticks.gate.set()
    await ticker.stop()


async def test_first_ticks_in_flight_are_bounded_and_the_rest_wait_in_line_in_order() -> None:
    ticks = Concurrent()
    ticker = Ticker(ticks, first_ticks=8)
    ticker.start()
    keys = [f"p{index}" for index in range(1000)]
    for key in keys:
        ticker.add(key)
    await _until(lambda: len(ticks.calls) == 8)
    await asyncio.sleep(0.05)
    assert len(ticks.calls) == 8
    assert ticker.waiting_first == 992
    assert ticker.due_in("p999") is None  # waiting in line counts as ticking
    ticks.gate.set()
    await _until(lambda: len(ticks.calls) == 1000)
    assert ticks.most == 8
    assert ticks.calls == keys  # in the order they came due
    assert ticker.waiting_first == 0
    await ticker.stop()


async def test_later_ticks_do_not_wait_for_the_line() -> None:
    # An old key's next tick runs although every first-tick slot is taken.
    held = Concurrent()
    old_ticks: list[str] = []

    async def tick(key: str) -> float:
        if key == "old":
            old_ticks.append(key)
            return 0.01
        return await held(key)

    ticker = Ticker(tick, first_ticks=2)
    ticker.start()
    ticker.add("old")
    await _until(lambda: len(old_ticks) == 1)
    for index in range(10):
        ticker.add(f"new{index}")
    await _until(lambda: len(held.calls) == 2)
    count = len(old_ticks)
    await _until(lambda: len(old_ticks) >= count + 5)
    assert len(held.calls) == 2
    assert ticker.waiting_first == 8
    held.gate.set()
    await _until(lambda: len(held.calls) == 10)
    await ticker.stop()


async def test_a_key_removed_while_in_line_never_ticks_and_its_slot_goes_to_the_next() -> None:
    ticks = Concurrent()
    ticker = Ticker(ticks, first_ticks=1)
    ticker.start()
    for key in ("a", "b", "c"):
        ticker.add(key)
    await _until(lambda: ticks.calls == ["a"])
    await ticker.remove("b")
    ticker.wake("c")  # in line: no second entry, no error
    ticks.gate.set()
    await _until(lambda: ticks.calls == ["a", "c"])
    await asyncio.sleep(0.05)
    assert ticks.calls == ["a", "c"]
    assert "b" not in ticker
    await ticker.stop()


async def test_a_key_added_again_after_leaving_the_line_ticks_once() -> None:
    ticks = Concurrent()
    ticker = Ticker(ticks, first_ticks=1)
    ticker.start()
    ticker.add("a")
    ticker.add("b")
    await _until(lambda: ticks.calls == ["a"])
    await ticker.remove("b")
    ticker.add("b")  # in line again, behind its stale place
    await asyncio.sleep(0.01)
    ticks.gate.set()
    await _until(lambda: ticks.calls == ["a", "b"])
    await asyncio.sleep(0.05)
    assert ticks.calls == ["a", "b"]
    await ticker.stop()


async def test_a_failed_or_cancelled_first_tick_gives_its_slot_back() -> None:
    calls: list[str] = []
    gate = asyncio.Event()

    async def tick(key: str) -> float:
        calls.append(key)
        if key == "fails":
            raise RuntimeError("no")
        if key == "hangs":
            await asyncio.sleep(3600)
        await gate.wait()
        return 3600

    ticker = Ticker(tick, first_ticks=1, grace=0.01, error_pause=3600)
    ticker.start()
    for key in ("fails", "hangs", "next"):
        ticker.add(key)
    await _until(lambda: calls == ["fails", "hangs"])
    await ticker.remove("hangs")  # cancelled after its grace
    await _until(lambda: calls == ["fails", "hangs", "next"])
    gate.set()
    await ticker.stop()


def test_the_bound_is_at_least_one() -> None:
    async def tick(key: str) -> float:
        return 1.0

    with pytest.raises(ValueError, match="first_ticks"):
        Ticker(tick, first_ticks=0)
