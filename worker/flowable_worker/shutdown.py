"""Signals to graceful stop: SIGTERM (Kubernetes deleting the pod) and SIGINT (Ctrl-C).

The first signal asks the worker to drain (stop acquiring, give back unstarted jobs, let running
handlers finish within the grace period); a second one cuts the grace period short, so an operator
can always get a prompt exit. Handlers are restored afterwards so an embedding program gets its
own signal behaviour back.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

log = logging.getLogger("flowable_worker.shutdown")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def install_stop_signals(stop: Callable[[], None]) -> Callable[[], None]:
    """Call `stop` on SIGTERM/SIGINT in the running loop; returns a function that undoes it."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []

    def on_signal(received: signal.Signals) -> None:
        log.info("received %s", received.name)
        stop()

    for sig in STOP_SIGNALS:
        try:
            loop.add_signal_handler(sig, on_signal, sig)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # not the main thread, or no Unix signals
            log.debug("cannot install a handler for %s", sig.name)

    def restore() -> None:
        for sig in installed:
            loop.remove_signal_handler(sig)

    return restore
