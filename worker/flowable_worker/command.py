"""The command line around a worker: read flags and environment, serve until signalled, exit code.

`flowable-worker` (cli.py) and `Worker.run()` both end here. A bad configuration (unknown flag, bad
value, missing handler, handler that can't be imported, handler timeout not shorter than the lock)
exits with code 2 and one line saying what is wrong, before anything connects to Flowable. A clean
stop after SIGTERM/SIGINT exits 0. `--version` prints `flowable-worker <version>` and exits 0
without reading any configuration. `run-once --job job.json` runs a handler for one job and prints
its answer (`run_once.py`). An `on_startup` hook that fails exits 1 with one line.

The worker is passed in (the `Servable` it must be), so this module never imports the `Worker`
that calls it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from typing import Protocol

from flowable_worker._version import __version__
from flowable_worker.config import ConfigError, WorkerSettings, load_settings
from flowable_worker.hooks import WorkerStartupError
from flowable_worker.logs import configure_logging
from flowable_worker.redaction import redact
from flowable_worker.shutdown import install_stop_signals


class Servable(Protocol):
    """What the command line needs of a worker (`runtime.Worker` is one)."""

    @property
    def settings(self) -> WorkerSettings: ...

    def configure(self, settings: WorkerSettings) -> None: ...

    async def serve(self, *, ready: Callable[[], None] | None = None) -> None: ...

    def stop(self) -> None: ...


def prepare_worker(argv: Sequence[str] | None, worker: Servable) -> None:
    """Read and check the configuration into `worker`; raises ConfigError.

    The handler is resolved here, once (`Worker.configure`), so a bad one stops the start with
    one line before anything connects.
    """
    worker.configure(load_settings(argv, require_handler=False, require_topics=False))


async def serve_until_signalled(worker: Servable) -> None:
    """Serve with SIGTERM/SIGINT wired to a graceful stop."""
    restore = install_stop_signals(worker.stop)
    try:
        await worker.serve()
    finally:
        restore()


def _asks_for_version(argv: Sequence[str] | None) -> bool:
    """True when the command line holds `--version`.

    Looked for before the configuration is read: the command's options are the settings parser's
    (config.py), and `flowable-worker --version` must answer in an image or a shell that sets no
    topic or handler (a release check, a bug report), where reading the settings would fail first.
    """
    probe = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    probe.add_argument("--version", action="store_true")
    known, _ = probe.parse_known_args(sys.argv[1:] if argv is None else list(argv))
    return bool(known.version)


def run_command(argv: Sequence[str] | None, worker: Servable) -> int:
    """Configure `worker`, serve until signalled, and return the process exit code."""
    words = sys.argv[1:] if argv is None else list(argv)
    if words[:1] == ["run-once"]:
        from flowable_worker.run_once import main as run_once

        return run_once(words[1:])
    if _asks_for_version(argv):
        print(f"flowable-worker {__version__}")
        return 0
    try:
        prepare_worker(argv, worker)
    except ConfigError as error:
        print_error(error)
        return 2
    settings = worker.settings
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    try:
        asyncio.run(serve_until_signalled(worker))
    except ValueError as error:  # a shared handler that could not be built (an empty command)
        print_error(error)
        return 2
    except OSError as error:  # e.g. the metrics port is taken
        print_error(error)
        return 2
    except WorkerStartupError as error:  # an on_startup hook failed: nothing was acquired
        print_error(error)
        return 1
    return 0


def print_error(error: BaseException) -> None:
    """The one stderr line of a failed start: whitespace collapsed, URL credentials redacted."""
    print(f"flowable-worker: error: {redact(' '.join(str(error).split()))}", file=sys.stderr)
