"""Startup and shutdown hooks: what a worker runs once before its first acquire and after its last
report (open and close a database pool, say).

A startup hook that fails stops the start before anything is acquired (`WorkerStartupError`, the
CLI exits 1 with one line); a shutdown hook that fails is logged and the others still run, because
by then every job is reported or given back and nothing is left to protect.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("flowable_worker.runtime")

Hook = Callable[[], Any]
"""A startup or shutdown hook: no arguments, sync or async."""


class WorkerStartupError(RuntimeError):
    """An `on_startup` hook failed: the worker did not start (the CLI exits 1 with one line)."""


async def run_hooks(hooks: list[Hook], stage: str, *, raise_errors: bool) -> None:
    """Run startup or shutdown hooks in order, sync ones on the loop (they run once)."""
    for hook in hooks:
        name = getattr(hook, "__qualname__", repr(hook))
        try:
            returned = hook()
            if inspect.isawaitable(returned):
                await returned
        except Exception as error:
            if raise_errors:
                raise WorkerStartupError(
                    f"{stage} hook {name} failed: {type(error).__name__}: {error}"
                ) from error
            log.exception("%s hook %s failed", stage, name)
