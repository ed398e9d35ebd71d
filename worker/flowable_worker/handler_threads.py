"""Threads for synchronous handlers: a free one for every job, even while handlers hang.

Python cannot kill a thread. With a fixed-size pool (`concurrent.futures.ThreadPoolExecutor`) a
sync handler that never returns keeps its thread for good, every later job queues behind it with
its timeout already running, and is failed "timed out" without having run; and at exit the
interpreter joins the pool's threads, so the process outlives its grace period and is SIGKILLed.

So this pool:

* starts a thread whenever a call arrives and none is idle, and reuses idle ones, so a call never
  waits for a thread and a handler's timeout counts from when it really starts (live threads never
  outnumber the calls in flight, which the worker's slots bound by its concurrency);
* writes a thread off when the call it runs is abandoned (the runtime cancels it on timeout or at
  the end of the grace period): the thread is counted as hung (`hung`, exported as a gauge and read
  by the probes) and no longer counts as the pool's; when, if ever, its call returns, the result
  is dropped and the thread ends;
* runs daemon threads, so a hung handler never keeps the process alive once the worker has
  drained: the grace period is the worker's to keep, not the handler's.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

log = logging.getLogger("flowable_worker.handler_threads")

T = TypeVar("T")


@dataclass(eq=False)
class _Call:
    """One function to run on a pool thread, and where its result goes."""

    function: Callable[[], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    # The rest is guarded by the pool's lock.
    started: bool = field(default=False)
    finished: bool = field(default=False)
    abandoned: bool = field(default=False)


class HandlerThreads:
    """Runs sync functions on daemon threads for the event loop; see the module docstring."""

    def __init__(self, *, name: str = "flowable-handler") -> None:
        self._name = name
        self._numbers = itertools.count(1)
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads blocked on the queue, not yet promised a call
        self._live = 0  # threads of the pool (hung ones excluded)
        self._hung = 0
        self._closed = False

    @property
    def hung(self) -> int:
        """Threads still running a call that was abandoned (a timed-out or cut-off handler)."""
        return self._hung

    @property
    def live(self) -> int:
        """Threads of the pool, busy or idle (hung ones excluded)."""
        return self._live

    async def run(self, function: Callable[[], T]) -> T:
        """Run `function()` on a pool thread and return (or raise) what it does.

        Cancelling the await abandons the call: if it has started, its thread is written off as
        hung and the next call gets a new thread.
        """
        loop = asyncio.get_running_loop()
        call = _Call(function=function, loop=loop, future=loop.create_future())
        with self._lock:
            if self._closed:
                raise RuntimeError("handler threads are shut down")
            if self._idle > 0:
                self._idle -= 1  # that idle thread will take this call
            else:
                self._start_thread_locked()
            self._queue.put(call)
        try:
            return await call.future  # type: ignore[no-any-return]
        except asyncio.CancelledError:
            self._abandon(call)
            raise

    def shutdown(self) -> None:
        """Let idle threads end; busy ones end after their call. Never waits (daemon threads)."""
        with self._lock:
            self._closed = True
            for _ in range(self._live):
                self._queue.put(None)

    def _abandon(self, call: _Call) -> None:
        with self._lock:
            if call.finished or call.abandoned:
                return
            call.abandoned = True
            if call.started:
                self._hung += 1
                self._live -= 1
        if call.started:
            log.warning(
                "a handler thread is hung (its call was abandoned but has not returned); "
                "%d hung now",
                self._hung,
            )

    def _start_thread_locked(self) -> None:
        thread = threading.Thread(
            target=self._serve, name=f"{self._name}-{next(self._numbers)}", daemon=True
        )
        self._live += 1
        thread.start()

    def _serve(self) -> None:
        """A pool thread: take calls until shut down, or until written off as hung."""
        while True:
            call = self._queue.get()
            if call is None:
                return
            with self._lock:
                if call.abandoned:  # cancelled before it started: stay idle for the next one
                    self._idle += 1
                    continue
                call.started = True
            outcome: tuple[bool, Any]
            try:
                outcome = (True, call.function())
            except BaseException as error:  # handed to the awaiting side, like an executor does
                outcome = (False, error)
            with self._lock:
                call.finished = True
                written_off = call.abandoned
                if written_off:
                    self._hung -= 1
                else:
                    self._idle += 1
            if written_off:
                log.info("a hung handler thread returned at last; its result is dropped")
                return
            try:
                call.loop.call_soon_threadsafe(_settle, call.future, outcome)
            except RuntimeError:  # the loop is closed: nobody waits for this result any more
                return


def _settle(future: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    if future.done():
        return
    ok, value = outcome
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
