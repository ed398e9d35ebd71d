"""`flowable-worker`: run a worker from flags and environment variables (`command.py` says how).

The entry point builds the `Worker` that `--handler`, `--handler-url` or `--handler-command` fill
in; a script that built its own calls `worker.run()`, which ends in the same place.
"""

from __future__ import annotations

from collections.abc import Sequence

from flowable_worker.command import prepare_worker, run_command
from flowable_worker.runtime import Worker


def prepare(argv: Sequence[str] | None = None, worker: Worker | None = None) -> Worker:
    """Read and check the configuration, returning a worker ready to serve; raises ConfigError."""
    worker = worker or Worker()
    prepare_worker(argv, worker)
    return worker


def run(argv: Sequence[str] | None = None, worker: Worker | None = None) -> int:
    """Configure, serve until signalled, and return the process exit code."""
    return run_command(argv, worker or Worker())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `flowable-worker` command."""
    return run(argv)
