"""`flowable-worker-operator`: run the operator from flags and environment variables.

A bad configuration exits with code 2 and one line saying what is wrong, before anything connects
to Kubernetes (the options and their checks are `config`'s). SIGTERM/SIGINT stop kopf cleanly
(the pools' ticks are stopped, connections closed): exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence

from flowable_worker.logs import configure_logging
from flowable_worker_operator.config import PROG, ConfigError, OperatorConfig, load_config

__all__ = ["main", "parse_args"]

EXIT_LEADERSHIP_LOST = 1
"""Exit code after losing the leader-election Lease: Kubernetes restarts the pod as a standby."""


def parse_args(argv: Sequence[str] | None = None) -> OperatorConfig:
    """Flags over environment variables; exits 2 with one line on anything unusable."""
    try:
        return load_config(argv)
    except ConfigError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, connect, and run kopf until a signal stops it."""
    config = parse_args(argv)
    configure_logging(fmt=config.log_format, level=config.log_level)
    # Imported here so `--help` and configuration errors answer without loading kopf.
    from flowable_worker_operator.leader import LeadershipLostError
    from flowable_worker_operator.serve import NoClusterError, serve

    try:
        asyncio.run(serve(config))
    except KeyboardInterrupt:
        pass
    except LeadershipLostError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return EXIT_LEADERSHIP_LOST
    except NoClusterError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # e.g. the metrics port is taken
        logging.getLogger(__name__).error("cannot run: %s", error)
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
