"""The operator's configuration, checked: what `main` reads from flags and the environment.

Its own module so that `serve` (which runs the operator with it) and `main` (which reads it) both
depend on it and never on each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flowable_worker import __version__
from flowable_worker_operator.podsecurity import Level

__all__ = ["LeaderElectionConfig", "OperatorConfig"]

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


@dataclass(frozen=True)
class LeaderElectionConfig:
    """The Lease that decides which of several operator replicas acts."""

    namespace: str
    name: str
    identity: str
