"""The operator's configuration: every option declared once, read from flags and the environment.

Declared as the worker's are (`flowable_worker.options`): one `Option` per setting holds its flag,
environment variable, default and help, and both `--help` and the reading are built from the
table. A flag wins over its variable; anything unusable, wherever it came from, raises
`ConfigError` with one line naming the flag or the variable (`main` exits 2 with it). Files the
metrics port needs are loaded once here, so a bad one is refused before kopf starts.

Its own module so that `serve` (which runs the operator with it) and `main` (which reads it) both
depend on it and never on each other.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowable_worker import __version__
from flowable_worker.metrics_access import read_token, server_tls_context
from flowable_worker.options import (
    ConfigError,
    Option,
    build_parser,
    int_between,
    one_of,
    parse_list,
    parse_lower,
    parse_upper,
    read_options,
    seconds,
)
from flowable_worker_operator.leader import default_identity
from flowable_worker_operator.podsecurity import LEVELS, Level

__all__ = [
    "ConfigError",
    "LeaderElectionConfig",
    "OperatorConfig",
    "ShardingConfig",
    "build_operator_parser",
    "load_config",
]

PROG = "flowable-worker-operator"

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_LEASE_NAME = "flowable-worker-operator"
DEFAULT_MAX_REPLICAS_LIMIT = 1000
"""A pool's maxReplicas above this is refused unless the operator is told otherwise: one typo of
zeros (`maxReplicas: 1000000000`) must not ask a cluster for a billion pods."""


WORKER_IMAGE_REPOSITORY = "ghcr.io/flowable-worker-operator/worker"
"""Where .github/workflows/release.yml publishes the worker image (Dockerfile target `worker`)."""
DEFAULT_WORKER_IMAGE = f"{WORKER_IMAGE_REPOSITORY}:{__version__}"
"""The worker of the same release: the tag is the package version, never `latest`, so a pool that
names no image runs the worker this operator was released and tested with."""


@dataclass(frozen=True)
class OperatorConfig:
    """Everything `main` needs, checked."""

    namespaces: tuple[str, ...]
    worker_image: str
    metrics_host: str
    metrics_port: int
    probe_share_seconds: float
    discovery_interval_seconds: float
    log_format: str
    log_level: str
    leader_election: LeaderElectionConfig | None = None
    """None: no leader election, this process acts alone (kopf standalone)."""
    pod_security: Level = "privileged"
    """The Pod Security Standard worker pod templates must meet; privileged: any template."""
    metrics_tls_cert: str | None = None
    """PEM certificate (and key, without `metrics_tls_key`): serve the metrics port over HTTPS."""
    metrics_tls_key: str | None = None
    metrics_auth_token_file: str | None = None
    """File holding the bearer token `/metrics` requires; None: `/metrics` is open."""
    max_replicas_limit: int = DEFAULT_MAX_REPLICAS_LIMIT
    """The most replicas any pool may ask for; a pool above it is Ready=False/InvalidSpec."""
    sharding: ShardingConfig | None = None
    """None: this process ticks every pool (alone, or as the leader)."""


@dataclass(frozen=True)
class LeaderElectionConfig:
    """The Lease that decides which of several operator replicas acts."""

    namespace: str
    name: str
    identity: str


@dataclass(frozen=True)
class ShardingConfig:
    """Several replicas share the pools: `shards` Leases named `<prefix>-shard-<i>` (`shards`)."""

    shards: int
    namespace: str
    prefix: str
    identity: str
    lease_seconds: int
    """The Leases' duration; renewals every third of it, acting stops at two thirds."""


EPILOG = """\
Each flag can also be set by the environment variable shown in brackets in its help; a flag wins
over the variable. Examples:

  # every namespace, JSON logs, metrics and /healthz on :8080 (the in-cluster default)
  flowable-worker-operator --all-namespaces

  # two namespaces, readable logs, a kubeconfig from $KUBECONFIG (a laptop)
  flowable-worker-operator -n billing -n shipping --log-format text

  # one of several replicas: only the holder of the Lease in its own namespace acts
  flowable-worker-operator --all-namespaces --leader-election

  # one of several replicas sharing the pools: 16 shards, each held by one replica at a time
  flowable-worker-operator --all-namespaces --shards 16

Pools are ExternalWorkerPool resources (kubectl explain ewp.spec); docs/operator.md explains
every decision the operator takes and the conditions and Events it reports.
"""

LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

OPTIONS: tuple[Option, ...] = (
    Option("namespaces", "--namespace", "FLOWABLE_OPERATOR_NAMESPACES",
           "watch this namespace (repeat, or comma-separate, for several); default: all "
           "namespaces", parse_list, repeat=True, metavar="NS", short="-n"),
    Option("all_namespaces", "--all-namespaces", None,
           "watch every namespace (needs the ClusterRole in deploy/rbac)", short="-A",
           switch=True),
    Option("worker_image", "--worker-image", "FLOWABLE_OPERATOR_WORKER_IMAGE",
           "image for pools that name none", metavar="IMAGE", default=DEFAULT_WORKER_IMAGE),
    Option("metrics_host", "--metrics-host", "FLOWABLE_OPERATOR_METRICS_HOST",
           "address for /metrics and /healthz", metavar="HOST", default="0.0.0.0"),
    Option("metrics_port", "--metrics-port", "FLOWABLE_OPERATOR_METRICS_PORT",
           "port for /metrics and /healthz, 0 to disable", int_between(0, 65535),
           metavar="PORT", default=8080),
    Option("metrics_tls_cert", "--metrics-tls-cert", "FLOWABLE_OPERATOR_METRICS_TLS_CERT",
           "serve /metrics and /healthz over HTTPS with this PEM certificate, which may also "
           "hold the key (default: plain HTTP)", metavar="FILE"),
    Option("metrics_tls_key", "--metrics-tls-key", "FLOWABLE_OPERATOR_METRICS_TLS_KEY",
           "PEM private key of --metrics-tls-cert", metavar="FILE"),
    Option("metrics_auth_token_file", "--metrics-auth-token-file",
           "FLOWABLE_OPERATOR_METRICS_AUTH_TOKEN_FILE",
           "/metrics answers 401 unless the request carries 'Authorization: Bearer <token in "
           "this file>'; /healthz stays open for the kubelet (default: no token)",
           metavar="FILE"),
    Option("probe_share_seconds", "--probe-share-seconds", "FLOWABLE_OPERATOR_PROBE_SHARE_SECONDS",
           "answer pools asking Flowable the same question within this many seconds with one "
           "request", seconds(positive=False), metavar="SECONDS", default=1.0),
    Option("discovery_interval_seconds", "--discovery-interval",
           "FLOWABLE_OPERATOR_DISCOVERY_INTERVAL",
           "re-list deployed process/case definitions at most this often to find the elements "
           "that use a pool's topic", seconds(positive=True), metavar="SECONDS", default=60.0),
    Option("log_format", "--log-format", "FLOWABLE_OPERATOR_LOG_FORMAT",
           "log lines as JSON objects or text: json or text", one_of(LOG_FORMATS, parse_lower),
           metavar="FORMAT", default="json"),
    Option("log_level", "--log-level", "FLOWABLE_OPERATOR_LOG_LEVEL",
           "DEBUG, INFO, WARNING or ERROR", one_of(LOG_LEVELS, parse_upper), metavar="LEVEL",
           default="INFO"),
    Option("leader_election", "--leader-election", "FLOWABLE_OPERATOR_LEADER_ELECTION",
           "act only while holding a coordination.k8s.io Lease, so that several replicas can "
           "run and one acts", switch=True, default=False),
    Option("leader_election_namespace", "--leader-election-namespace",
           "FLOWABLE_OPERATOR_LEADER_ELECTION_NAMESPACE",
           "namespace of the Lease (default: the pod's own namespace, required outside a pod)",
           metavar="NS"),
    Option("leader_election_name", "--leader-election-name",
           "FLOWABLE_OPERATOR_LEADER_ELECTION_NAME", "name of the Lease", metavar="NAME",
           default=DEFAULT_LEASE_NAME),
    Option("shards", "--shards", "FLOWABLE_OPERATOR_SHARDS",
           "split the pools into N shards, each a coordination.k8s.io Lease that one replica at "
           "a time holds, so that several replicas share the work (0: off, this process ticks "
           "every pool; excludes --leader-election)", int_between(0, 1024), metavar="N",
           default=0),
    Option("shard_lease_namespace", "--shard-lease-namespace",
           "FLOWABLE_OPERATOR_SHARD_LEASE_NAMESPACE",
           "namespace of the shard Leases (default: the pod's own namespace, required outside a "
           "pod)", metavar="NS"),
    Option("shard_lease_prefix", "--shard-lease-prefix", "FLOWABLE_OPERATOR_SHARD_LEASE_PREFIX",
           "the shard Leases are <prefix>-shard-<i>, each replica's <prefix>-member-<hash>",
           metavar="NAME", default=DEFAULT_LEASE_NAME),
    Option("shard_lease_seconds", "--shard-lease-duration",
           "FLOWABLE_OPERATOR_SHARD_LEASE_DURATION",
           "seconds a shard Lease lasts unrenewed: a dead replica's pools move within about "
           "this long", int_between(3, 3600), metavar="SECONDS", default=15),
    Option("pod_security", "--pod-security", "FLOWABLE_OPERATOR_POD_SECURITY",
           "refuse pools whose worker pod template is outside this Pod Security Standard "
           "(Ready=False, reason PodSecurityViolation): privileged, baseline or restricted; "
           "privileged accepts any template, as a Deployment's author could write it",
           one_of(LEVELS), metavar="LEVEL", default="privileged"),
    Option("max_replicas_limit", "--max-replicas-limit", "FLOWABLE_OPERATOR_MAX_REPLICAS_LIMIT",
           "refuse pools whose scaling.maxReplicas (or paused-replicas annotation) is above N: "
           "Ready=False, reason InvalidSpec, nothing scaled", int_between(1, 2**31 - 1),
           metavar="N", default=DEFAULT_MAX_REPLICAS_LIMIT),
)


def build_operator_parser() -> argparse.ArgumentParser:
    """The `flowable-worker-operator` command line (also the source of `--help`)."""
    parser = build_parser(
        OPTIONS,
        prog=PROG,
        description=(
            "Scale Flowable external-worker Deployments to the backlog of their topic: watches "
            "ExternalWorkerPool resources, counts each pool's waiting and in-flight jobs in "
            "Flowable, and sets the worker Deployment's replicas (HPA v2 semantics, scale to zero)."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def load_config(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> OperatorConfig:
    """Flags over environment variables over defaults, checked; raises `ConfigError`."""
    environ = os.environ if environ is None else environ
    namespace = build_operator_parser().parse_args(list(argv) if argv is not None else None)
    values, sources = read_options(OPTIONS, namespace, environ)
    if values.get("all_namespaces") and sources.get("namespaces") == "--namespace":
        raise ConfigError("argument -A/--all-namespaces: not allowed with argument -n/--namespace")
    worker_image = str(values["worker_image"]).strip()
    if not worker_image:
        raise ConfigError(f"{sources['worker_image']}: must not be empty")
    _check_metrics_access(values)
    if values["shards"] and values["leader_election"]:
        raise ConfigError(
            "--shards and --leader-election exclude each other: with shards every replica acts "
            "on its share of the pools"
        )
    return OperatorConfig(
        namespaces=() if values.get("all_namespaces") else values.get("namespaces", ()),
        worker_image=worker_image,
        metrics_host=values["metrics_host"],
        metrics_port=values["metrics_port"],
        probe_share_seconds=values["probe_share_seconds"],
        discovery_interval_seconds=values["discovery_interval_seconds"],
        log_format=values["log_format"],
        log_level=values["log_level"],
        leader_election=_leader_election(values) if values["leader_election"] else None,
        sharding=_sharding(values) if values["shards"] else None,
        pod_security=values["pod_security"],
        metrics_tls_cert=values.get("metrics_tls_cert"),
        metrics_tls_key=values.get("metrics_tls_key"),
        metrics_auth_token_file=values.get("metrics_auth_token_file"),
        max_replicas_limit=values["max_replicas_limit"],
    )


def _check_metrics_access(values: Mapping[str, Any]) -> None:
    """Load the metrics port's certificate and token once now: a bad file is refused naming it,
    before kopf starts, instead of failing when the server comes up."""
    cert, key = values.get("metrics_tls_cert"), values.get("metrics_tls_key")
    if key is not None and cert is None:
        raise ConfigError("--metrics-tls-key needs --metrics-tls-cert")
    try:
        if cert is not None:
            server_tls_context(cert, key)
        if values.get("metrics_auth_token_file") is not None:
            read_token(values["metrics_auth_token_file"])
    except ValueError as error:
        raise ConfigError(str(error)) from None


def pod_namespace() -> str:
    """The namespace of the pod this runs in (its service account's), or "" outside a pod."""
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    except OSError:
        return ""


def _lease_namespace(values: Mapping[str, Any], field: str, needed_by: str) -> str:
    """The namespace of the operator's Leases: the option `field`, else the pod's own."""
    option = next(option for option in OPTIONS if option.field == field)
    namespace = str(values.get(field) or "").strip() or pod_namespace()
    if not namespace:
        raise ConfigError(f"{needed_by} needs {option.flag} (or {option.env}) outside a pod")
    if not _DNS_LABEL.fullmatch(namespace):
        raise ConfigError(f"{option.flag} {namespace!r} is not a namespace name")
    return namespace


def _leader_election(values: Mapping[str, Any]) -> LeaderElectionConfig:
    namespace = _lease_namespace(values, "leader_election_namespace", "--leader-election")
    name = str(values["leader_election_name"]).strip()
    if not _DNS_SUBDOMAIN.fullmatch(name):
        raise ConfigError(f"--leader-election-name {name!r} is not a valid Lease name")
    return LeaderElectionConfig(namespace=namespace, name=name, identity=default_identity())


def _sharding(values: Mapping[str, Any]) -> ShardingConfig:
    namespace = _lease_namespace(values, "shard_lease_namespace", "--shards")
    prefix = str(values["shard_lease_prefix"]).strip()
    # the longest name it makes: <prefix>-member-<12 hex>
    if not _DNS_SUBDOMAIN.fullmatch(prefix) or len(prefix) > 200:
        raise ConfigError(f"--shard-lease-prefix {prefix!r} is not a valid Lease name prefix")
    return ShardingConfig(
        shards=values["shards"],
        namespace=namespace,
        prefix=prefix,
        identity=default_identity(),
        lease_seconds=values["shard_lease_seconds"],
    )


_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(
    r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
)
