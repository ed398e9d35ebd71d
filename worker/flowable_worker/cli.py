"""`flowable-worker`: run a worker from flags and environment variables.

A bad configuration (unknown flag, bad value, missing handler, handler that can't be imported,
handler timeout not shorter than the lock) exits with code 2 and one line saying what is wrong,
before anything connects to Flowable. A clean stop after SIGTERM/SIGINT exits 0.
`--version` prints `flowable-worker <version>` and exits 0 without reading any configuration.
`flowable-worker run-once --job job.json` runs a handler for one job and prints its answer
(`run_once.py`). An `on_startup` hook that fails exits 1 with one line.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from flowable_worker._version import __version__
from flowable_worker.config import ConfigError, load_settings
from flowable_worker.logs import configure_logging
from flowable_worker.redaction import redact
from flowable_worker.runtime import Worker, WorkerStartupError
from flowable_worker.shutdown import install_stop_signals


def prepare(argv: Sequence[str] | None = None, worker: Worker | None = None) -> Worker:
    """Read and check the configuration, returning a worker ready to serve; raises ConfigError.

    The handler is resolved here, once (`Worker.configure`), so a bad one stops the start with
    one line before anything connects.
    """
    settings = load_settings(argv, require_handler=False, require_topics=False)
    worker = worker or Worker()
    worker.configure(settings)
    return worker


async def serve_until_signalled(worker: Worker) -> None:
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


def run(argv: Sequence[str] | None = None, worker: Worker | None = None) -> int:
    """Configure, serve until signalled, and return the process exit code."""
    words = sys.argv[1:] if argv is None else list(argv)
    if words[:1] == ["run-once"]:
        from flowable_worker.run_once import main as run_once

        return run_once(words[1:])
    if _asks_for_version(argv):
        print(f"flowable-worker {__version__}")
        return 0
    try:
        prepared = prepare(argv, worker)
    except ConfigError as error:
        _print_error(error)
        return 2
    settings = prepared.settings
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    try:
        asyncio.run(serve_until_signalled(prepared))
    except ValueError as error:  # a shared handler that could not be built (an empty command)
        _print_error(error)
        return 2
    except OSError as error:  # e.g. the metrics port is taken
        _print_error(error)
        return 2
    except WorkerStartupError as error:  # an on_startup hook failed: nothing was acquired
        _print_error(error)
        return 1
    return 0


def _print_error(error: BaseException) -> None:
    """The one stderr line of a failed start: whitespace collapsed, URL credentials redacted."""
    print(f"flowable-worker: error: {redact(' '.join(str(error).split()))}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `flowable-worker` command."""
    return run(argv)
