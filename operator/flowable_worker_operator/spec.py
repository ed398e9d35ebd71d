"""An `ExternalWorkerPool` resource, read into typed values the rest of the operator can trust.

The CRD's schema and CEL rules reject most bad specs at `kubectl apply` time
(deploy/crds/externalworkerpools.flowable-worker.io.yaml); this module is the second line: it
defaults what the API server did not (an operator may see objects stored before a default
existed), checks what a schema cannot (durations that parse, a handler timeout shorter than the
lock, `jobsPerReplica` for a target whose concurrency the operator cannot know), and turns every
problem into one `SpecError` whose message becomes a `Ready=False` condition and a Warning Event.

Field names follow the resource (camelCase aliases); Python code uses snake_case.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from functools import cached_property
from typing import Annotated, Any, Literal

import httpx
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from flowable_worker.client.durations import parse_duration
from flowable_worker_operator.scaling import (
    FallbackBehavior,
    FallbackSpec,
    PolicyType,
    ScalingBehavior,
    ScalingPolicy,
    ScalingRules,
    ScalingSpec,
    SelectPolicy,
    default_scale_up_rules,
    pool_scale_down_rules,
)
from flowable_worker_operator.template_checks import check_env, check_template

__all__ = [
    "GROUP",
    "KIND",
    "PAUSED_REPLICAS_ANNOTATION",
    "PLURAL",
    "VERSION",
    "EngineSpec",
    "HandlerSpec",
    "Pool",
    "PoolSpec",
    "SelectorSpec",
    "SpecError",
    "TargetRef",
    "WorkerSpec",
    "parse_pool",
]

GROUP = "flowable-worker.io"
VERSION = "v1alpha1"
KIND = "ExternalWorkerPool"
PLURAL = "externalworkerpools"
PAUSED_REPLICAS_ANNOTATION = f"{GROUP}/paused-replicas"
INT32_MAX = 2**31 - 1
"""Replica counts end up in a `/scale` subresource's int32 field."""
MAX_DURATION = timedelta(hours=8760)
"""The longest Go-style duration a pool may give (a year; the CRD's CEL rule says the same)."""
MAX_LABEL_NAME = 63
"""A pool with `spec.worker` puts its name into label values, which Kubernetes caps at 63."""


class SpecError(ValueError):
    """The pool's spec cannot be acted on; `str(error)` is one line saying every problem found."""


class _Model(BaseModel):
    # Unknown fields are ignored, not refused: the API server prunes what the CRD does not know,
    # and an older operator must still read a pool written for a newer CRD.
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="ignore"
    )


def _parse_duration(value: object) -> object:
    """Go-style (`15s`, `1h30m`) or ISO-8601 (`PT5M`) text -> timedelta; other values pass on."""
    if isinstance(value, str):
        try:
            parsed = parse_duration(value)
        except OverflowError:
            # `99999999999h` parses as a number but overflows timedelta: too long, not a crash.
            raise ValueError("must be at most 8760h") from None
        if parsed < timedelta(0):
            raise ValueError("must not be negative")
        if parsed > MAX_DURATION:
            raise ValueError("must be at most 8760h")
        return parsed
    return value


Duration = Annotated[timedelta, BeforeValidator(_parse_duration)]
"""A duration field: the resource writes text, the operator works with timedelta."""


class SecretRef(_Model):
    name: str = Field(min_length=1)


class KeyedSecretRef(_Model):
    name: str = Field(min_length=1)
    key: str = "ca.crt"


class ClientCertSecretRef(_Model):
    """A client certificate for mutual TLS: the `kubernetes.io/tls` Secret layout by default."""

    name: str = Field(min_length=1)
    cert_key: str = Field(default="tls.crt", min_length=1)
    key_key: str = Field(default="tls.key", min_length=1)


class TLSSpec(_Model):
    ca_secret_ref: KeyedSecretRef | None = None
    client_cert_secret_ref: ClientCertSecretRef | None = None
    insecure_skip_verify: bool = False


class EngineSpec(_Model):
    """Where Flowable is and how to reach it; credentials stay in Secrets, never inline."""

    url: str
    external_job_api_path: str = "/external-job-api"
    process_api_path: str = "/process-api"
    cmmn_api_path: str = "/cmmn-api"
    auth_secret_ref: SecretRef | None = None
    tls: TLSSpec = TLSSpec()
    timeout_seconds: float = Field(default=10.0, gt=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        # What the HTTP client would refuse at the first probe (`http://[::1`, no host, a port
        # past 65535) is refused here, where it becomes InvalidSpec rather than an exception.
        try:
            url = httpx.URL(value)
        except httpx.InvalidURL as exc:
            raise ValueError(f"is not a usable URL ({exc})") from None
        if not url.host:
            raise ValueError("names no host")
        if url.port is not None and not 0 < url.port <= 65535:
            raise ValueError(f"has port {url.port}, outside 1..65535")
        return value.rstrip("/")


class SelectorSpec(_Model):
    """One model element whose jobs belong to the pool's topic (skips discovery when given).

    It names one definition (`processDefinitionId`, `scopeDefinitionId`: that version only) or a
    definition key (`processDefinitionKey`, `caseDefinitionKey`: every version, resolved by the
    operator at each discovery listing, since a pinned id goes stale with the next deployment).
    """

    element_id: str = Field(min_length=1, max_length=255)
    process_definition_id: str | None = Field(default=None, min_length=1, max_length=255)
    scope_definition_id: str | None = Field(default=None, min_length=1, max_length=255)
    process_definition_key: str | None = Field(default=None, min_length=1, max_length=255)
    case_definition_key: str | None = Field(default=None, min_length=1, max_length=255)
    tenant_id: str | None = Field(default=None, max_length=255)

    @model_validator(mode="after")
    def _one_definition(self) -> SelectorSpec:
        named = (
            self.process_definition_id,
            self.scope_definition_id,
            self.process_definition_key,
            self.case_definition_key,
        )
        if sum(value is not None for value in named) != 1:
            raise ValueError(
                "a backlog selector needs exactly one of processDefinitionId, scopeDefinitionId, "
                "processDefinitionKey, caseDefinitionKey"
            )
        return self


class BacklogSpec(_Model):
    selectors: tuple[SelectorSpec, ...] = ()


class HTTPHandlerSpec(_Model):
    url: str
    timeout_seconds: float | None = Field(default=None, gt=0)


class HandlerSpec(_Model):
    """Exactly one way to run a job: a Python callable, an HTTP endpoint, or a command."""

    python: str | None = None
    http: HTTPHandlerSpec | None = None
    command: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> HandlerSpec:
        given = [self.python is not None, self.http is not None, self.command is not None]
        if sum(given) != 1:
            raise ValueError("give exactly one of python, http, command")
        if self.command is not None and not self.command:
            raise ValueError("command must not be empty")
        return self


class PodDisruptionBudgetSpec(_Model):
    """`worker.podDisruptionBudget`: how many worker pods a voluntary eviction (a node drain) may
    take at once. Exactly one field, a count or a percentage, as policy/v1 takes it; the CRD
    checks the same, and this keeps a pool written past an older CRD from reaching the API."""

    max_unavailable: int | str | None = None
    min_available: int | str | None = None

    @field_validator("max_unavailable", "min_available")
    @classmethod
    def _count_or_percent(cls, value: int | str | None) -> int | str | None:
        if value is None:
            return None
        if isinstance(value, int):
            if value < 0:
                raise ValueError("must be a count of at least 0 or a percentage such as 25%")
            return value
        text = value.strip()
        if not (text.endswith("%") and text[:-1].isdigit() and len(text) <= 4):
            raise ValueError(f"{value!r} is neither a count nor a percentage such as 25%")
        return text

    @model_validator(mode="after")
    def _exactly_one(self) -> PodDisruptionBudgetSpec:
        if (self.max_unavailable is None) == (self.min_available is None):
            raise ValueError("give exactly one of maxUnavailable, minAvailable")
        return self

    def budget(self) -> dict[str, int | str]:
        """The policy/v1 spec field this asks for, e.g. `{"maxUnavailable": 1}`."""
        if self.max_unavailable is not None:
            return {"maxUnavailable": self.max_unavailable}
        assert self.min_available is not None  # _exactly_one
        return {"minAvailable": self.min_available}


class WorkerSpec(_Model):
    """The worker Deployment the operator builds and owns."""

    image: str | None = None
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    handler: HandlerSpec
    concurrency: int = Field(default=16, ge=1, le=1024)
    lock_duration: Duration = timedelta(minutes=5)
    handler_timeout: Duration | None = None
    env: tuple[dict[str, Any], ...] = ()
    template: dict[str, Any] = Field(default_factory=dict)
    pod_disruption_budget: PodDisruptionBudgetSpec | None = None
    termination_grace_period_seconds: int = Field(default=30, ge=1, le=INT32_MAX)

    @field_validator("env", mode="before")
    @classmethod
    def _env_shape(cls, value: object) -> object:
        problems = check_env(value, "env")
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @field_validator("template", mode="before")
    @classmethod
    def _template_shape(cls, value: object) -> object:
        problems = check_template(value)
        if problems:
            raise ValueError("; ".join(problems))
        return value

    def secret_key_refs(self) -> tuple[tuple[str, str], ...]:
        """(Secret, key) of every `secretKeyRef` in `env` and in the template's containers:
        the Secrets whose change must roll the worker pods (`secrethash`)."""
        entries = list(self.env)
        for container in (self.template.get("spec") or {}).get("containers") or ():
            entries += container.get("env") or ()
        refs = []
        for entry in entries:
            ref = (entry.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                refs.append((str(ref["name"]), str(ref["key"])))
        return tuple(dict.fromkeys(refs))

    @model_validator(mode="after")
    def _timeout_inside_lock(self) -> WorkerSpec:
        if self.lock_duration < timedelta(seconds=1):
            raise ValueError("lockDuration must be at least 1s")
        if self.handler_timeout is not None and self.handler_timeout >= self.lock_duration:
            raise ValueError(
                "handlerTimeout must be shorter than lockDuration, or a job "
                "still running could be acquired by another worker"
            )
        http_timeout = self.handler.http.timeout_seconds if self.handler.http else None
        if http_timeout is not None and timedelta(seconds=http_timeout) >= self.lock_duration:
            raise ValueError(
                "handler.http.timeoutSeconds must be shorter than lockDuration (the worker "
                "would refuse to start)"
            )
        return self


class TargetRef(_Model):
    """An existing workload to scale instead of a Deployment the operator builds."""

    api_version: str = "apps/v1"
    kind: str = "Deployment"
    name: str = Field(min_length=1)


class PolicySpec(_Model):
    type: PolicyType
    value: int = Field(ge=1)
    period_seconds: int = Field(ge=1, le=1800)


class RulesSpec(_Model):
    stabilization_window_seconds: int | None = Field(default=None, ge=0, le=3600)
    select_policy: SelectPolicy | None = None
    policies: tuple[PolicySpec, ...] | None = None

    def over(self, defaults: ScalingRules) -> ScalingRules:
        """These rules with HPA's defaults for whatever the user left out, as HPA does."""
        window = (
            defaults.stabilization_window
            if self.stabilization_window_seconds is None
            else timedelta(seconds=self.stabilization_window_seconds)
        )
        policies = (
            defaults.policies
            if self.policies is None
            else tuple(
                ScalingPolicy(
                    type=p.type, value=p.value, period=timedelta(seconds=p.period_seconds)
                )
                for p in self.policies
            )
        )
        select = defaults.select_policy if self.select_policy is None else self.select_policy
        return ScalingRules(stabilization_window=window, policies=policies, select_policy=select)


class BehaviorSpec(_Model):
    scale_up: RulesSpec = RulesSpec()
    scale_down: RulesSpec = RulesSpec()


class FallbackSpecModel(_Model):
    failure_threshold: int = Field(ge=1, le=INT32_MAX)
    replicas: int = Field(ge=0, le=INT32_MAX)
    behavior: FallbackBehavior = FallbackBehavior.STATIC


RELEASE_IDLE_AFTER = timedelta(seconds=20)
"""`scaling.releaseIdleAfter`'s default: longer than one tick at the default 15 s interval, so one
empty sample between two jobs releases nothing; two in a row do (`scaling` module docstring)."""


class ScalingSpecModel(_Model):
    min_replicas: int = Field(default=0, ge=0, le=INT32_MAX)
    max_replicas: int = Field(default=10, ge=1, le=INT32_MAX)
    jobs_per_replica: int | None = Field(default=None, ge=1, le=INT32_MAX)
    activation_backlog: int = Field(default=0, ge=0, le=INT32_MAX)
    polling_interval: Duration = timedelta(seconds=15)
    cooldown_period: Duration = timedelta(seconds=300)
    release_idle_after: Duration = RELEASE_IDLE_AFTER
    defer_small_queues: bool = True
    tolerance: float = Field(default=0.1, ge=0, le=1)
    behavior: BehaviorSpec = BehaviorSpec()
    fallback: FallbackSpecModel | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ScalingSpecModel:
        if self.min_replicas > self.max_replicas:
            raise ValueError("minReplicas must not exceed maxReplicas")
        if self.polling_interval < timedelta(seconds=1):
            raise ValueError("pollingInterval must be at least 1s")
        return self


class PoolSpec(_Model):
    """`spec` of an ExternalWorkerPool."""

    engine: EngineSpec
    topic: str = Field(min_length=1, max_length=255)
    backlog: BacklogSpec = BacklogSpec()
    worker: WorkerSpec | None = None
    scale_target_ref: TargetRef | None = None
    scaling: ScalingSpecModel = ScalingSpecModel()
    paused: bool = False

    @model_validator(mode="after")
    def _one_target(self) -> PoolSpec:
        if (self.worker is None) == (self.scale_target_ref is None):
            raise ValueError("give exactly one of worker, scaleTargetRef")
        if self.worker is None and self.scaling.jobs_per_replica is None:
            raise ValueError(
                "scaling.jobsPerReplica is required with scaleTargetRef: the operator cannot "
                "know how many jobs the target's pods work on at once"
            )
        return self

    @property
    def jobs_per_replica(self) -> int:
        """The target outstanding jobs per replica: given, or the worker's concurrency."""
        if self.scaling.jobs_per_replica is not None:
            return self.scaling.jobs_per_replica
        assert self.worker is not None  # guaranteed by _one_target
        return self.worker.concurrency


class Pool(BaseModel):
    """One pool as the operator acts on it: identity, the parsed spec, and the scaling inputs."""

    model_config = ConfigDict(frozen=True)

    namespace: str
    name: str
    uid: str
    generation: int
    spec: PoolSpec
    paused_replicas: int | None

    @property
    def paused(self) -> bool:
        """Paused by `spec.paused`, or by the paused-replicas annotation alone (as KEDA's)."""
        return self.spec.paused or self.paused_replicas is not None

    @cached_property
    def scaling_spec(self) -> ScalingSpec:
        """The pure core's view of this pool's scaling settings; built once per parsed pool (by
        `parse_pool`, whose checks it completes), then read by the tick."""
        scaling = self.spec.scaling
        fallback = (
            None
            if scaling.fallback is None
            else FallbackSpec(
                failure_threshold=scaling.fallback.failure_threshold,
                replicas=scaling.fallback.replicas,
                behavior=scaling.fallback.behavior,
            )
        )
        return ScalingSpec(
            min_replicas=scaling.min_replicas,
            max_replicas=scaling.max_replicas,
            jobs_per_replica=self.spec.jobs_per_replica,
            activation_backlog=scaling.activation_backlog,
            cooldown_period=scaling.cooldown_period,
            release_idle_after=scaling.release_idle_after,
            defer_small_queues=scaling.defer_small_queues,
            polling_interval=scaling.polling_interval,
            tolerance=scaling.tolerance,
            behavior=ScalingBehavior(
                scale_up=scaling.behavior.scale_up.over(default_scale_up_rules()),
                scale_down=scaling.behavior.scale_down.over(pool_scale_down_rules()),
            ),
            fallback=fallback,
            paused=self.paused,
            paused_replicas=self.paused_replicas,
        )


def parse_pool(body: Mapping[str, Any], *, max_replicas_limit: int | None = None) -> Pool:
    """Read a pool object (as the API server returns it) or raise `SpecError` with every problem.

    `max_replicas_limit`: the most replicas this operator lets any pool ask for (its
    `--max-replicas-limit`); a pool whose maxReplicas or paused-replicas annotation is above it
    is refused, so a typo of zeros never reaches a `/scale` subresource.
    """
    metadata = body.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    problems: list[str] = []
    paused_replicas: int | None = None
    raw = annotations.get(PAUSED_REPLICAS_ANNOTATION)
    if raw is not None:
        try:
            paused_replicas = int(str(raw).strip())
            if paused_replicas < 0:
                raise ValueError
        except ValueError:
            problems.append(
                f"annotation {PAUSED_REPLICAS_ANNOTATION} must be a whole number >= 0, got {raw!r}"
            )
    spec: PoolSpec | None = None
    try:
        spec = PoolSpec.model_validate(body.get("spec") or {})
    except ValidationError as exc:
        problems.extend(_describe(exc))
    if spec is not None:
        problems.extend(_operator_limits(spec, metadata, paused_replicas, max_replicas_limit))
    if spec is None or problems:
        raise SpecError("; ".join(problems))
    try:
        pool = Pool(
            namespace=str(metadata.get("namespace", "")),
            name=str(metadata.get("name", "")),
            uid=str(metadata.get("uid", "")),
            generation=int(metadata.get("generation") or 0),
            spec=spec,
            paused_replicas=paused_replicas,
        )
        _ = pool.scaling_spec  # the core's own checks (e.g. policies) must hold too
    except ValueError as exc:
        raise SpecError(str(exc)) from None
    _share_fields_sets(pool)
    return pool


_FIELDS_SETS: dict[frozenset[str], set[str]] = {}
"""One set of each distinct set of field names the parsed models were given, shared by them."""

_FIELDS_SETS_MAX = 4096
"""Distinct sets kept at most: a pool's spec has a few dozen fields, and specs are alike."""


def _share_fields_sets(model: BaseModel) -> None:
    """Make `model` and every frozen model inside it share one `__pydantic_fields_set__` per
    distinct set of names.

    pydantic keeps, in each instance, a `set` of the fields its input gave (for
    `exclude_unset`), and a `set` costs 216 bytes empty and 728 bytes past four names: ten of
    them are 4.6 KB of the 33 KB the operator holds for each pool (docs/benchmarks.md, "Memory
    at 10,000 pools"), while pools are alike and their sets equal. Sharing is safe only where
    pydantic never adds to the set: a frozen model (no assignment; `model_copy` copies the set
    first). A model that is not frozen keeps its own. It stays a `set`, not a frozenset:
    pydantic's serializer refuses anything else."""
    for value in model.__dict__.values():
        for item in value if isinstance(value, list | tuple) else (value,):
            if isinstance(item, BaseModel):
                _share_fields_sets(item)
    if not model.model_config.get("frozen"):
        return
    names = frozenset(model.__pydantic_fields_set__)
    shared = _FIELDS_SETS.get(names)
    if shared is None:
        if len(_FIELDS_SETS) >= _FIELDS_SETS_MAX:
            return
        shared = _FIELDS_SETS[names] = set(names)
    object.__setattr__(model, "__pydantic_fields_set__", shared)


def _operator_limits(
    spec: PoolSpec,
    metadata: Mapping[str, Any],
    paused_replicas: int | None,
    max_replicas_limit: int | None,
) -> list[str]:
    """What this operator refuses though the resource allows it: counts above its limit, and a
    name too long for the labels of the Deployment it would build."""
    problems = []
    name = str(metadata.get("name") or "")
    if spec.worker is not None and len(name.encode()) > MAX_LABEL_NAME:
        problems.append(
            f"metadata.name: a pool with spec.worker labels its Deployment and pods with its "
            f"name, and a label value is at most {MAX_LABEL_NAME} bytes (this one has "
            f"{len(name.encode())}); use a shorter name"
        )
    if max_replicas_limit is not None:
        where = "the operator's --max-replicas-limit"
        if spec.scaling.max_replicas > max_replicas_limit:
            problems.append(
                f"spec.scaling.maxReplicas {spec.scaling.max_replicas} is above {where} of "
                f"{max_replicas_limit} replicas"
            )
        if paused_replicas is not None and paused_replicas > max_replicas_limit:
            problems.append(
                f"annotation {PAUSED_REPLICAS_ANNOTATION} {paused_replicas} is above {where} of "
                f"{max_replicas_limit} replicas"
            )
    return problems


def _describe(error: ValidationError) -> list[str]:
    """pydantic's errors as `spec.path: message` lines, camelCase like the resource."""
    lines = []
    for item in error.errors():
        path = ".".join(to_camel(str(p)) if isinstance(p, str) else str(p) for p in item["loc"])
        message = str(item["msg"]).removeprefix("Value error, ")
        # Our own validators already name their fields; pydantic's need the path in front.
        lines.append(message if not path else f"spec.{path}: {message}")
    return lines
