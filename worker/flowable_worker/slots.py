"""Handler slots: how many more jobs this worker may take, shared by every topic's poller.

A poller *reserves* slots before it acquires and gives back what the server did not fill, so
several topic pollers never hold more than `capacity` jobs between them, even while their acquire
requests are in flight at the same time.
"""

from __future__ import annotations

import asyncio


class Slots:
    """A counter of free handler slots with waiting (asyncio, one loop, no locks needed)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._free = capacity
        self._changed = asyncio.Event()

    @property
    def free(self) -> int:
        """Slots not reserved right now."""
        return self._free

    @property
    def used(self) -> int:
        """Slots reserved right now (acquires in flight plus jobs held)."""
        return self.capacity - self._free

    async def reserve(self, most: int, *, gather: int = 1, patience: float = 0.0) -> int:
        """Wait for at least one free slot, then take up to `most`; returns how many (never 0).

        With `gather` > 1, once one slot is free it waits up to `patience` seconds more for
        `gather` free slots, so that one acquire request fetches several jobs instead of one
        request per job as handlers finish one by one (an acquire costs the server far more than
        a complete). The wait is short and bounded, so slow handlers never leave slots idle long.
        """
        while True:
            while self._free <= 0:
                self._changed.clear()
                await self._changed.wait()
            wanted = min(gather, most)
            if self._free < wanted and patience > 0:
                await self._gather(wanted, patience)
            # No await between the check and the take: nobody else can take the same slots.
            taken = min(most, self._free)
            if taken > 0:
                self._free -= taken
                return taken
            # Another poller took the free slots while we gathered: wait again. Returning 0 here
            # once read as "stop" to a topic's poller, which then never polled again.

    async def _gather(self, wanted: int, patience: float) -> None:
        """Wait up to `patience` seconds for `wanted` free slots (returns early when there are)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience
        while self._free < wanted:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._changed.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._changed.wait()
            except TimeoutError:
                return

    def release(self, count: int = 1) -> None:
        """Give `count` slots back and wake whoever waits."""
        if count <= 0:
            return
        self._free = min(self.capacity, self._free + count)
        self._changed.set()

    async def wait_all_free(self) -> None:
        """Wait until nothing is reserved (every job reported, no acquire in flight)."""
        while self._free < self.capacity:
            self._changed.clear()
            await self._changed.wait()
