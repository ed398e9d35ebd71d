"""`flowable-worker-operator`: run the operator from flags and environment variables.

A bad configuration exits with code 2 and one line saying what is wrong, before anything connects
to Kubernetes. SIGTERM/SIGINT stop kopf cleanly (daemons are stopped, connections closed): exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn, TypeVar

from flowable_worker import __version__
from flowable_worker.logs import configure_logging
from flowable_worker.metrics_access import read_token, server_tls_context
from flowable_worker_operator.config import (
    DEFAULT_LEASE_NAME,
    DEFAULT_MAX_REPLICAS_LIMIT,
    DEFAULT_WORKER_IMAGE,
    SERVICE_ACCOUNT_NAMESPACE,
    LeaderElectionConfig,
    OperatorConfig,
)
from flowable_worker_operator.podsecurity import LEVELS

__all__ = ["main", "parse_args"]

PROG = "flowable-worker-operator"
EXIT_LEADERSHIP_LOST = 1
"""Exit code after losing the leader-election Lease: Kubernetes restarts the pod as a standby."""
EPILOG = """\
Each flag can also be set by the environment variable shown in its help; a flag wins over the
variable. Examples:

  # every namespace, JSON logs, metrics and /healthz on :8080 (the in-cluster default)
  flowable-worker-operator --all-namespaces

  # two namespaces, readable logs, a kubeconfig from $KUBECONFIG (a laptop)
  flowable-worker-operator -n billing -n shipping --log-format text

  # one of several replicas: only the holder of the Lease in its own namespace acts
  flowable-worker-operator --all-namespaces --leader-election

Pools are ExternalWorkerPool resources (kubectl explain ewp.spec); docs/operator.md explains
every decision the operator takes and the conditions and Events it reports.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block: the line is what a pod's log shows first.
        self.exit(2, f"{PROG}: error: {message}\n")


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description=(
            "Scale Flowable external-worker Deployments to the backlog of their topic: watches "
            "ExternalWorkerPool resources, counts each pool's waiting and in-flight jobs in "
            "Flowable, and sets the worker Deployment's replicas (HPA v2 semantics, scale to zero)."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "-n",
        "--namespace",
        action="append",
        dest="namespaces",
        metavar="NS",
        help="watch this namespace (repeat for several; env FLOWABLE_OPERATOR_NAMESPACES, "
        "comma-separated). Default: all namespaces",
    )
    where.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        help="watch every namespace (needs the ClusterRole in deploy/rbac)",
    )
    parser.add_argument(
        "--worker-image",
        default=_env("FLOWABLE_OPERATOR_WORKER_IMAGE", DEFAULT_WORKER_IMAGE),
        help="image for pools that name none (env FLOWABLE_OPERATOR_WORKER_IMAGE; "
        "default %(default)s)",
    )
    parser.add_argument(
        "--metrics-host",
        default=_env("FLOWABLE_OPERATOR_METRICS_HOST", "0.0.0.0"),
        help="address for /metrics and /healthz (env FLOWABLE_OPERATOR_METRICS_HOST; "
        "default %(default)s)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=_int_env("FLOWABLE_OPERATOR_METRICS_PORT", 8080),
        help="port for /metrics and /healthz, 0 to disable (env FLOWABLE_OPERATOR_METRICS_PORT; "
        "default %(default)s)",
    )
    parser.add_argument(
        "--metrics-tls-cert",
        default=_env("FLOWABLE_OPERATOR_METRICS_TLS_CERT", "") or None,
        metavar="FILE",
        help="serve /metrics and /healthz over HTTPS with this PEM certificate, which may also "
        "hold the key (env FLOWABLE_OPERATOR_METRICS_TLS_CERT; default: plain HTTP)",
    )
    parser.add_argument(
        "--metrics-tls-key",
        default=_env("FLOWABLE_OPERATOR_METRICS_TLS_KEY", "") or None,
        metavar="FILE",
        help="PEM private key of --metrics-tls-cert (env FLOWABLE_OPERATOR_METRICS_TLS_KEY)",
    )
    parser.add_argument(
        "--metrics-auth-token-file",
        default=_env("FLOWABLE_OPERATOR_METRICS_AUTH_TOKEN_FILE", "") or None,
        metavar="FILE",
        help="/metrics answers 401 unless the request carries 'Authorization: Bearer <token in "
        "this file>'; /healthz stays open for the kubelet "
        "(env FLOWABLE_OPERATOR_METRICS_AUTH_TOKEN_FILE; default: no token)",
    )
    parser.add_argument(
        "--probe-share-seconds",
        type=float,
        default=_float_env("FLOWABLE_OPERATOR_PROBE_SHARE_SECONDS", 1.0),
        help="answer pools asking Flowable the same question within this many seconds with one "
        "request (env FLOWABLE_OPERATOR_PROBE_SHARE_SECONDS; default %(default)s)",
    )
    parser.add_argument(
        "--discovery-interval",
        type=float,
        default=_float_env("FLOWABLE_OPERATOR_DISCOVERY_INTERVAL", 60.0),
        metavar="SECONDS",
        help="re-list deployed process/case definitions at most this often to find the elements "
        "that use a pool's topic (env FLOWABLE_OPERATOR_DISCOVERY_INTERVAL; default %(default)s)",
    )
    parser.add_argument(
        "--log-format",
        choices=("json", "text"),
        default=_env("FLOWABLE_OPERATOR_LOG_FORMAT", "json"),
        help="log lines as JSON objects or text (env FLOWABLE_OPERATOR_LOG_FORMAT; "
        "default %(default)s)",
    )
    parser.add_argument(
        "--log-level",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        type=str.upper,
        default=_env("FLOWABLE_OPERATOR_LOG_LEVEL", "INFO").upper(),
        help="env FLOWABLE_OPERATOR_LOG_LEVEL; default %(default)s",
    )
    parser.add_argument(
        "--leader-election",
        action=argparse.BooleanOptionalAction,
        default=_bool_env("FLOWABLE_OPERATOR_LEADER_ELECTION", default=False),
        help="act only while holding a coordination.k8s.io Lease, so that several replicas can "
        "run and one acts (env FLOWABLE_OPERATOR_LEADER_ELECTION; default off)",
    )
    parser.add_argument(
        "--leader-election-namespace",
        default=_env("FLOWABLE_OPERATOR_LEADER_ELECTION_NAMESPACE", ""),
        metavar="NS",
        help="namespace of the Lease (env FLOWABLE_OPERATOR_LEADER_ELECTION_NAMESPACE; default: "
        "the pod's own namespace, required outside a pod)",
    )
    parser.add_argument(
        "--leader-election-name",
        default=_env("FLOWABLE_OPERATOR_LEADER_ELECTION_NAME", DEFAULT_LEASE_NAME),
        metavar="NAME",
        help="name of the Lease (env FLOWABLE_OPERATOR_LEADER_ELECTION_NAME; default %(default)s)",
    )
    parser.add_argument(
        "--pod-security",
        choices=LEVELS,
        default=_env("FLOWABLE_OPERATOR_POD_SECURITY", "privileged"),
        help="refuse pools whose worker pod template is outside this Pod Security Standard "
        "(Ready=False, reason PodSecurityViolation); privileged accepts any template, as a "
        "Deployment's author could write it (env FLOWABLE_OPERATOR_POD_SECURITY; "
        "default %(default)s)",
    )
    parser.add_argument(
        "--max-replicas-limit",
        type=int,
        default=_int_env("FLOWABLE_OPERATOR_MAX_REPLICAS_LIMIT", DEFAULT_MAX_REPLICAS_LIMIT),
        metavar="N",
        help="refuse pools whose scaling.maxReplicas (or paused-replicas annotation) is above N: "
        "Ready=False, reason InvalidSpec, nothing scaled "
        "(env FLOWABLE_OPERATOR_MAX_REPLICAS_LIMIT; default %(default)s)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


N = TypeVar("N", int, float)


def _number_env(name: str, default: N, parse: Callable[[str], N], what: str) -> N:
    """`parse($name)`, or `default` when unset; exit 2 naming the variable when it won't parse."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return parse(raw)
    except ValueError:
        _fail(f"{name}={raw!r} is not {what}")


def _int_env(name: str, default: int) -> int:
    return _number_env(name, default, int, "a whole number")


def _float_env(name: str, default: float) -> float:
    return _number_env(name, default, float, "a number")


def _bool_env(name: str, *, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    _fail(f"{name}={raw!r} is not a boolean (true or false)")


def _pod_namespace() -> str:
    """The namespace of the pod this runs in (its service account's), or "" outside a pod."""
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    except OSError:
        return ""


def _fail(message: str) -> NoReturn:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def parse_args(argv: Sequence[str] | None = None) -> OperatorConfig:
    """Flags over environment variables; exits 2 with one line on anything unusable."""
    args = _build_parser().parse_args(argv)
    namespaces: tuple[str, ...] = ()
    if not args.all_namespaces:
        listed = args.namespaces or [
            ns for ns in os.environ.get("FLOWABLE_OPERATOR_NAMESPACES", "").split(",") if ns
        ]
        namespaces = tuple(ns.strip() for ns in listed if ns.strip())
    if not 0 <= args.metrics_port <= 65535:
        _fail(f"--metrics-port must be 0..65535, got {args.metrics_port}")
    if args.probe_share_seconds < 0:
        _fail("--probe-share-seconds must not be negative")
    if args.discovery_interval <= 0:
        _fail("--discovery-interval must be positive")
    if args.pod_security not in LEVELS:  # argparse checks choices of flags, not of defaults
        levels = ", ".join(LEVELS)
        _fail(f"FLOWABLE_OPERATOR_POD_SECURITY={args.pod_security!r} is not one of {levels}")
    if not 1 <= args.max_replicas_limit <= 2**31 - 1:
        _fail(f"--max-replicas-limit must be 1..2147483647, got {args.max_replicas_limit}")
    if not args.worker_image.strip():
        _fail("--worker-image must not be empty")
    leader_election = _leader_election(args) if args.leader_election else None
    _check_metrics_access(args)
    return OperatorConfig(
        namespaces=namespaces,
        worker_image=args.worker_image.strip(),
        metrics_host=args.metrics_host,
        metrics_port=args.metrics_port,
        probe_share_seconds=args.probe_share_seconds,
        discovery_interval_seconds=args.discovery_interval,
        log_format=args.log_format,
        log_level=args.log_level,
        leader_election=leader_election,
        pod_security=args.pod_security,
        metrics_tls_cert=args.metrics_tls_cert,
        metrics_tls_key=args.metrics_tls_key,
        metrics_auth_token_file=args.metrics_auth_token_file,
        max_replicas_limit=args.max_replicas_limit,
    )


def _check_metrics_access(args: argparse.Namespace) -> None:
    """Load the metrics port's certificate and token once now: a bad file exits 2 naming it,
    before kopf starts, instead of failing when the server comes up."""
    if args.metrics_tls_key is not None and args.metrics_tls_cert is None:
        _fail("--metrics-tls-key needs --metrics-tls-cert")
    try:
        if args.metrics_tls_cert is not None:
            server_tls_context(args.metrics_tls_cert, args.metrics_tls_key)
        if args.metrics_auth_token_file is not None:
            read_token(args.metrics_auth_token_file)
    except ValueError as error:
        _fail(str(error))


def _leader_election(args: argparse.Namespace) -> LeaderElectionConfig:
    from flowable_worker_operator.leader import default_identity

    namespace = args.leader_election_namespace.strip() or _pod_namespace()
    if not namespace:
        _fail(
            "--leader-election needs --leader-election-namespace "
            "(or FLOWABLE_OPERATOR_LEADER_ELECTION_NAMESPACE) outside a pod"
        )
    if not _DNS_LABEL.fullmatch(namespace):
        _fail(f"--leader-election-namespace {namespace!r} is not a namespace name")
    name = args.leader_election_name.strip()
    if not _DNS_SUBDOMAIN.fullmatch(name):
        _fail(f"--leader-election-name {name!r} is not a valid Lease name")
    return LeaderElectionConfig(namespace=namespace, name=name, identity=default_identity())


_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(
    r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
)


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
