"""Reading a pool resource: defaults, the checks a schema cannot make, and one-line errors."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from flowable_worker_operator.scaling import (
    FallbackBehavior,
    PolicyType,
    SelectPolicy,
    default_scale_down_rules,
)
from flowable_worker_operator.spec import (
    PAUSED_REPLICAS_ANNOTATION,
    PoolSpec,
    SpecError,
    parse_pool,
)


def pool_body(spec: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    base: dict[str, Any] = {
        "engine": {"url": "http://flowable:8080/flowable-rest/"},
        "topic": "invoices",
        "worker": {"handler": {"python": "invoices.handlers:check"}},
    }
    base.update(spec)
    return {
        "metadata": {
            "name": "invoices",
            "namespace": "billing",
            "uid": "u-1",
            "generation": 3,
            "annotations": annotations or {},
        },
        "spec": base,
    }


def test_a_minimal_pool_gets_every_default() -> None:
    pool = parse_pool(pool_body({}))
    assert (pool.namespace, pool.name, pool.uid, pool.generation) == (
        "billing",
        "invoices",
        "u-1",
        3,
    )
    spec = pool.spec
    assert spec.engine.url == "http://flowable:8080/flowable-rest"
    assert spec.engine.external_job_api_path == "/external-job-api"
    assert spec.engine.process_api_path == "/process-api"
    assert spec.backlog.selectors == ()
    assert spec.worker is not None
    assert spec.worker.concurrency == 16
    assert spec.worker.lock_duration == timedelta(minutes=5)
    assert spec.scaling.polling_interval == timedelta(seconds=15)
    scaling = pool.scaling_spec
    assert (scaling.min_replicas, scaling.max_replicas) == (0, 10)
    assert scaling.jobs_per_replica == 16  # the worker's concurrency
    assert scaling.cooldown_period == timedelta(seconds=300)
    # A pool's scale-down window is 60 s, not HPA's 300 s: its backlog counts jobs in flight.
    assert scaling.behavior.scale_down.stabilization_window == timedelta(seconds=60)
    assert scaling.behavior.scale_down.policies == default_scale_down_rules().policies
    assert scaling.release_idle_after == timedelta(seconds=20)
    assert scaling.defer_small_queues
    assert not scaling.paused


def test_defer_small_queues_can_be_turned_off() -> None:
    pool = parse_pool(pool_body({"scaling": {"deferSmallQueues": False}}))
    assert not pool.scaling_spec.defer_small_queues


def test_release_idle_after_reads_a_duration() -> None:
    pool = parse_pool(pool_body({"scaling": {"releaseIdleAfter": "5m"}}))
    assert pool.scaling_spec.release_idle_after == timedelta(minutes=5)


def test_durations_read_go_and_iso_spellings() -> None:
    pool = parse_pool(
        pool_body(
            {
                "scaling": {"pollingInterval": "1m30s", "cooldownPeriod": "PT2M"},
                "worker": {
                    "handler": {"command": ["./run.sh"]},
                    "lockDuration": "PT10M",
                    "handlerTimeout": "9m",
                },
            }
        )
    )
    assert pool.spec.scaling.polling_interval == timedelta(seconds=90)
    assert pool.scaling_spec.cooldown_period == timedelta(minutes=2)
    assert pool.spec.worker is not None
    assert pool.spec.worker.handler_timeout == timedelta(minutes=9)


def test_behavior_fills_unset_fields_with_hpa_defaults() -> None:
    pool = parse_pool(
        pool_body(
            {
                "scaling": {
                    "behavior": {
                        "scaleDown": {
                            "stabilizationWindowSeconds": 30,
                            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
                        },
                        "scaleUp": {"selectPolicy": "Min"},
                    }
                }
            }
        )
    )
    behavior = pool.scaling_spec.behavior
    assert behavior.scale_down.stabilization_window == timedelta(seconds=30)
    (policy,) = behavior.scale_down.policies
    assert (policy.type, policy.value, policy.period) == (
        PolicyType.PODS,
        1,
        timedelta(seconds=60),
    )
    assert behavior.scale_up.select_policy is SelectPolicy.MIN
    assert len(behavior.scale_up.policies) == 2  # HPA's two default scale-up policies


def test_fallback_and_explicit_jobs_per_replica() -> None:
    pool = parse_pool(
        pool_body(
            {
                "scaling": {
                    "jobsPerReplica": 4,
                    "fallback": {
                        "failureThreshold": 3,
                        "replicas": 2,
                        "behavior": "currentReplicasIfHigher",
                    },
                }
            }
        )
    )
    scaling = pool.scaling_spec
    assert scaling.jobs_per_replica == 4
    assert scaling.fallback is not None
    assert scaling.fallback.behavior is FallbackBehavior.CURRENT_REPLICAS_IF_HIGHER


@pytest.mark.parametrize(
    ("annotations", "paused", "expected"),
    [
        ({PAUSED_REPLICAS_ANNOTATION: "2"}, False, (True, 2)),
        ({}, True, (True, None)),
        ({PAUSED_REPLICAS_ANNOTATION: " 0 "}, True, (True, 0)),
        ({}, False, (False, None)),
    ],
)
def test_pause_comes_from_the_spec_or_the_annotation(
    annotations: dict[str, str], paused: bool, expected: tuple[bool, int | None]
) -> None:
    scaling = parse_pool(pool_body({"paused": paused}, annotations)).scaling_spec
    assert (scaling.paused, scaling.paused_replicas) == expected


def test_a_scale_target_needs_jobs_per_replica() -> None:
    body = pool_body({"scaleTargetRef": {"name": "legacy-workers"}})
    del body["spec"]["worker"]
    with pytest.raises(SpecError, match="jobsPerReplica is required with scaleTargetRef"):
        parse_pool(body)
    body["spec"]["scaling"] = {"jobsPerReplica": 8}
    pool = parse_pool(body)
    assert pool.spec.scale_target_ref is not None
    assert (pool.spec.scale_target_ref.api_version, pool.spec.scale_target_ref.kind) == (
        "apps/v1",
        "Deployment",
    )


@pytest.mark.parametrize(
    ("change", "annotations", "message"),
    [
        ({"engine": {"url": "flowable:8080"}}, {}, "spec.engine.url: must start with http"),
        ({"topic": ""}, {}, "spec.topic"),
        ({"scaling": {"minReplicas": 3, "maxReplicas": 2}}, {}, "minReplicas must not exceed"),
        ({"scaling": {"pollingInterval": "soon"}}, {}, "pollingInterval: not a duration"),
        ({"scaling": {"pollingInterval": "100ms"}}, {}, "at least 1s"),
        (
            {"worker": {"handler": {"python": "a:b", "http": {"url": "http://h"}}}},
            {},
            "exactly one of python, http, command",
        ),
        (
            {"worker": {"handler": {"python": "a:b"}, "handlerTimeout": "PT5M"}},
            {},
            "handlerTimeout must be shorter than lockDuration",
        ),
        (
            {"worker": {"handler": {"http": {"url": "http://h", "timeoutSeconds": 300}}}},
            {},
            "timeoutSeconds must be shorter than lockDuration",
        ),
        (
            {"backlog": {"selectors": [{"elementId": "task"}]}},
            {},
            "exactly one of processDefinitionId, scopeDefinitionId",
        ),
        ({"scaleTargetRef": {"name": "x"}}, {}, "exactly one of worker, scaleTargetRef"),
        ({}, {PAUSED_REPLICAS_ANNOTATION: "many"}, "paused-replicas must be a whole number"),
        (
            {
                "scaling": {
                    "behavior": {"scaleUp": {"policies": [], "selectPolicy": "Max"}},
                }
            },
            {},
            "at least one policy",
        ),
    ],
)
def test_bad_specs_raise_one_line_naming_the_field(
    change: dict[str, Any], annotations: dict[str, str], message: str
) -> None:
    with pytest.raises(SpecError) as caught:
        parse_pool(pool_body(change, annotations))
    text = str(caught.value)
    assert message in text
    assert "\n" not in text


def test_every_problem_is_reported_at_once() -> None:
    body = pool_body({"engine": {"url": "nope"}}, {PAUSED_REPLICAS_ANNOTATION: "-1"})
    with pytest.raises(SpecError) as caught:
        parse_pool(body)
    assert "engine.url" in str(caught.value)
    assert "paused-replicas" in str(caught.value)


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    pool = parse_pool(pool_body({"futureField": {"x": 1}}))
    assert pool.spec.topic == "invoices"


def test_a_client_certificate_defaults_to_the_kubernetes_tls_secret_layout() -> None:
    spec = {
        "engine": {"url": "https://f", "tls": {"clientCertSecretRef": {"name": "mtls"}}},
        "topic": "t",
        "worker": {"handler": {"python": "m:f"}},
    }
    ref = parse_pool(pool_body(spec)).spec.engine.tls.client_cert_secret_ref
    assert ref is not None
    assert (ref.name, ref.cert_key, ref.key_key) == ("mtls", "tls.crt", "tls.key")
    assert parse_pool(pool_body({**spec, "engine": {"url": "https://f"}})).spec.engine.tls == (
        parse_pool(pool_body({**spec, "engine": {"url": "https://f", "tls": {}}})).spec.engine.tls
    )


def test_a_client_certificate_needs_a_secret_name() -> None:
    spec = {
        "engine": {"url": "https://f", "tls": {"clientCertSecretRef": {"certKey": "c"}}},
        "topic": "t",
        "worker": {"handler": {"python": "m:f"}},
    }
    with pytest.raises(SpecError, match="clientCertSecretRef"):
        parse_pool(pool_body(spec))


# --- hostile but schema-valid specs (issue 10): each one a clear SpecError, never an exception ---

WORKER = {"handler": {"python": "a:b"}}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"scaling": {"pollingInterval": "99999999999h"}}, "pollingInterval: must be at most"),
        ({"scaling": {"cooldownPeriod": "8761h"}}, "cooldownPeriod: must be at most 8760h"),
        ({"engine": {"url": "http://[::1"}}, "spec.engine.url: is not a usable URL"),
        ({"engine": {"url": "http://"}}, "spec.engine.url: names no host"),
        ({"engine": {"url": "http://localhost:99999"}}, "port 99999, outside 1..65535"),
        (
            {"worker": {**WORKER, "template": {"spec": {"containers": "oops"}}}},
            "template.spec.containers: must be a list, got a string",
        ),
        (
            {"worker": {**WORKER, "template": {"spec": "nope"}}},
            "template.spec: must be an object",
        ),
        (
            {"worker": {**WORKER, "template": {"spec": {"terminationGracePeriodSeconds": "soon"}}}},
            "template.spec.terminationGracePeriodSeconds: must be a whole number",
        ),
        (
            {
                "worker": {
                    **WORKER,
                    "template": {
                        "spec": {
                            "containers": [
                                {"name": "worker", "env": [{"name": "A", "valueFrom": 7}]}
                            ]
                        }
                    },
                }
            },
            "containers[0].env[0].valueFrom: must be an object",
        ),
        (
            {"worker": {**WORKER, "env": [{"name": "A", "valueFrom": {"bogus": 1}}]}},
            "env[0].valueFrom: must hold exactly one of secretKeyRef",
        ),
        (
            {"worker": {**WORKER, "env": [{"name": "A", "valueFrom": {"secretKeyRef": {}}}]}},
            "env[0].valueFrom.secretKeyRef.name: must be a non-empty string",
        ),
        ({"scaling": {"maxReplicas": 2**31}}, "spec.scaling.maxReplicas"),
        ({"scaling": {"fallback": {"failureThreshold": 1, "replicas": 2**53}}}, "fallback.repl"),
        ({"worker": {**WORKER, "terminationGracePeriodSeconds": 2**40}}, "terminationGrace"),
    ],
)
def test_hostile_values_are_spec_errors_naming_the_field(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpecError) as caught:
        parse_pool(pool_body(change))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_worker_pool_name_longer_than_a_label_value_is_refused() -> None:
    body = pool_body({})
    body["metadata"]["name"] = "c" * 70
    with pytest.raises(SpecError, match="at most 63 bytes \\(this one has 70\\)"):
        parse_pool(body)
    body["metadata"]["name"] = "c" * 63
    assert parse_pool(body).name == "c" * 63


def test_max_replicas_above_the_operator_limit_is_refused_naming_the_limit() -> None:
    body = pool_body({"scaling": {"minReplicas": 10**9, "maxReplicas": 10**9}})
    with pytest.raises(SpecError) as caught:
        parse_pool(body, max_replicas_limit=1000)
    assert "maxReplicas 1000000000 is above the operator's --max-replicas-limit of 1000" in str(
        caught.value
    )
    assert parse_pool(pool_body({"scaling": {"maxReplicas": 1000}}), max_replicas_limit=1000)
    with pytest.raises(SpecError, match="paused-replicas 5000 is above"):
        parse_pool(pool_body({}, {PAUSED_REPLICAS_ANNOTATION: "5000"}), max_replicas_limit=1000)


def test_secret_key_refs_of_env_and_template_are_listed_once() -> None:
    ref = {"valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
    worker = {
        **WORKER,
        "env": [{"name": "A", **ref}, {"name": "B", "value": "x"}],
        "template": {
            "spec": {
                "containers": [
                    {"name": "worker", "env": [{"name": "C", **ref}]},
                    {
                        "name": "side",
                        "env": [
                            {"name": "D", "valueFrom": {"secretKeyRef": {"name": "t", "key": "u"}}}
                        ],
                    },
                ]
            }
        },
    }
    spec = parse_pool(pool_body({"worker": worker})).spec.worker
    assert spec is not None
    assert spec.secret_key_refs() == (("s", "k"), ("t", "u"))


def test_pools_alike_share_their_models_fields_sets_and_lose_nothing() -> None:
    spec = {"scaling": {"maxReplicas": 7, "behavior": {"scaleUp": {"policies": [
        {"type": "Pods", "value": 2, "periodSeconds": 15}]}}}}  # fmt: skip
    one, two = parse_pool(pool_body(spec)), parse_pool(pool_body(spec))
    assert one == two
    assert one.spec.engine.model_fields_set is two.spec.engine.model_fields_set
    assert one.spec.scaling.model_fields_set is two.spec.scaling.model_fields_set
    assert one.spec.scaling.model_fields_set == {"max_replicas", "behavior"}
    unshared = PoolSpec.model_validate(pool_body(spec)["spec"])  # as pydantic alone makes it
    assert one.spec.model_dump(exclude_unset=True) == unshared.model_dump(exclude_unset=True)
    other = parse_pool(pool_body({"scaling": {"minReplicas": 1}}))
    assert other.spec.scaling.model_fields_set == {"min_replicas"}
    copied = one.spec.model_copy(update={"paused": True})  # copies the set before adding to it
    assert "paused" in copied.model_fields_set
    assert "paused" not in two.spec.model_fields_set
