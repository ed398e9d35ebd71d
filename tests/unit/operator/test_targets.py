"""Building the worker Deployment: env from the spec, auth and TLS, the template merge, the hash."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any, cast

import pytest
from kubernetes.client.exceptions import ApiException

from flowable_worker.config import load_settings
from flowable_worker_operator import targets
from flowable_worker_operator.deployment_cache import CachedDeployment
from flowable_worker_operator.manifests import (
    CA_MOUNT_PATH,
    CLIENT_CERT_MOUNT_PATH,
    POOL_LABEL,
    TEMPLATE_HASH_ANNOTATION,
    build_deployment,
)
from flowable_worker_operator.spec import Pool, parse_pool
from flowable_worker_operator.targets import (
    DELETION_COST_ANNOTATION,
    NotControlledError,
    Scale,
    cached_scale,
    ensure_deployment,
    live_pods,
    read_scale,
    set_deletion_costs,
)

IMAGE = "ghcr.io/example/flowable-worker:1.0"


def make_pool(worker: dict[str, Any] | None = None, **spec: Any) -> Pool:
    body_spec: dict[str, Any] = {
        "engine": {"url": "http://flowable:8080/flowable-rest"},
        "topic": "invoices",
        "worker": {"handler": {"python": "invoices.handlers:check"}, **(worker or {})},
    }
    body_spec.update(spec)
    return parse_pool(
        {
            "metadata": {"name": "inv", "namespace": "billing", "uid": "uid-1", "generation": 1},
            "spec": body_spec,
        }
    )


def build(pool: Pool, replicas: int = 2) -> dict[str, Any]:
    return build_deployment(pool, default_image=IMAGE, replicas=replicas)


def container(manifest: dict[str, Any], name: str = "worker") -> dict[str, Any]:
    pod = manifest["spec"]["template"]["spec"]
    found: dict[str, Any]
    (found,) = [c for c in pod["containers"] if c["name"] == name]
    return found


def env(manifest: dict[str, Any]) -> dict[str, Any]:
    """Env of the worker container by name (plain values as text, references as dicts)."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(manifest)["env"]}


# --- identity ---------------------------------------------------------------------------------


def test_deployment_is_named_after_the_pool_and_owned_by_it() -> None:
    manifest = build(make_pool(), replicas=3)
    meta = manifest["metadata"]
    assert (meta["name"], meta["namespace"]) == ("inv-worker", "billing")
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "flowable-worker.io/v1alpha1",
            "kind": "ExternalWorkerPool",
            "name": "inv",
            "uid": "uid-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert manifest["spec"]["replicas"] == 3


def test_labels_and_selector() -> None:
    manifest = build(make_pool())
    assert manifest["metadata"]["labels"] == {
        "app.kubernetes.io/name": "flowable-worker",
        "app.kubernetes.io/instance": "inv",
        "app.kubernetes.io/managed-by": "flowable-worker-operator",
        "flowable-worker.io/pool": "inv",
    }
    assert manifest["spec"]["selector"] == {"matchLabels": {POOL_LABEL: "inv"}}
    assert manifest["spec"]["template"]["metadata"]["labels"][POOL_LABEL] == "inv"


# --- the worker container -----------------------------------------------------------------------


def test_python_handler_env_reads_back_as_the_same_worker_settings() -> None:
    pool = make_pool(
        {"concurrency": 4, "lockDuration": "PT2M", "handlerTimeout": "90s"},
        engine={"url": "http://flowable:8080/rest", "timeoutSeconds": 2.5},
    )
    values = env(build(pool))
    settings = load_settings([], {k: v for k, v in values.items() if isinstance(v, str)})
    assert settings.flowable_url == "http://flowable:8080/rest"
    assert settings.topics == ("invoices",)
    assert settings.handler == "invoices.handlers:check"
    assert settings.concurrency == 4
    assert settings.lock_duration.total_seconds() == 120
    assert settings.handler_timeout is not None
    assert settings.handler_timeout.total_seconds() == 90
    assert settings.request_timeout.total_seconds() == 2.5
    assert values["FLOWABLE_WORKER_LOCK_DURATION"] == "PT2M"
    assert values["FLOWABLE_EXTERNAL_JOB_API_PATH"] == "/external-job-api"


def test_no_handler_timeout_env_when_none_is_given() -> None:
    assert "FLOWABLE_WORKER_HANDLER_TIMEOUT" not in env(build(make_pool()))


def test_http_handler_sets_url_and_its_timeout_as_the_handler_timeout() -> None:
    pool = make_pool({"handler": {"http": {"url": "http://svc/jobs", "timeoutSeconds": 20}}})
    values = env(build(pool))
    assert values["FLOWABLE_WORKER_HANDLER_URL"] == "http://svc/jobs"
    assert values["FLOWABLE_WORKER_HANDLER_TIMEOUT"] == "PT20S"
    assert "FLOWABLE_WORKER_HANDLER" not in values


def test_http_timeout_does_not_lengthen_a_shorter_handler_timeout() -> None:
    pool = make_pool(
        {
            "handler": {"http": {"url": "http://svc/jobs", "timeoutSeconds": 60}},
            "handlerTimeout": "PT10S",
        }
    )
    assert env(build(pool))["FLOWABLE_WORKER_HANDLER_TIMEOUT"] == "PT10S"


def test_command_handler_is_quoted_so_the_worker_splits_it_back() -> None:
    argv = ["/bin/run", "--name", "two words", "it's"]
    values = env(build(make_pool({"handler": {"command": argv}})))
    assert tuple(shlex.split(values["FLOWABLE_WORKER_HANDLER_COMMAND"])) == tuple(argv)
    settings = load_settings(
        [],
        {
            "FLOWABLE_URL": "http://f",
            "FLOWABLE_TOPIC": "t",
            **{k: v for k, v in values.items() if isinstance(v, str)},
        },
    )
    assert settings.handler_command == tuple(argv)


def test_grace_period_ends_before_the_kubelet_kills() -> None:
    manifest = build(make_pool({"terminationGracePeriodSeconds": 60}))
    assert manifest["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 60
    assert env(manifest)["FLOWABLE_WORKER_GRACE_PERIOD"] == "PT55S"
    assert env(build(make_pool()))["FLOWABLE_WORKER_GRACE_PERIOD"] == "PT25S"
    # A short grace keeps most of it for handlers, still below the kill.
    assert (
        env(build(make_pool({"terminationGracePeriodSeconds": 5})))["FLOWABLE_WORKER_GRACE_PERIOD"]
        == "PT4S"
    )


def test_image_defaults_and_pull_policy() -> None:
    assert container(build(make_pool()))["image"] == IMAGE
    assert "imagePullPolicy" not in container(build(make_pool()))
    own = container(build(make_pool({"image": "mine:2", "imagePullPolicy": "Always"})))
    assert (own["image"], own["imagePullPolicy"]) == ("mine:2", "Always")


def test_metrics_port_probes_scrape_annotations_and_non_root() -> None:
    manifest = build(make_pool())
    worker = container(manifest)
    assert worker["ports"] == [{"name": "metrics", "containerPort": 9464, "protocol": "TCP"}]
    assert worker["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert worker["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert worker["securityContext"]["allowPrivilegeEscalation"] is False
    template = manifest["spec"]["template"]
    assert template["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9464",
        "prometheus.io/path": "/metrics",
    }
    assert template["spec"]["securityContext"]["runAsNonRoot"] is True


def test_a_worker_serving_metrics_over_tls_is_probed_and_scraped_over_https() -> None:
    tls_env = [
        {"name": "FLOWABLE_WORKER_METRICS_TLS_CERT", "value": "/etc/metrics-tls/tls.crt"},
        {"name": "FLOWABLE_WORKER_METRICS_TLS_KEY", "value": "/etc/metrics-tls/tls.key"},
    ]
    manifest = build(make_pool({"env": tls_env}))
    worker = container(manifest)
    assert worker["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert worker["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert manifest["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scheme"] == (
        "https"
    )


# --- auth and TLS -------------------------------------------------------------------------------


def test_credentials_come_from_the_secret_each_key_optional() -> None:
    pool = make_pool(engine={"url": "https://f", "authSecretRef": {"name": "creds"}})
    values = env(build(pool))
    for variable, key in (
        ("FLOWABLE_USERNAME", "username"),
        ("FLOWABLE_PASSWORD", "password"),
        ("FLOWABLE_TOKEN", "token"),
    ):
        assert values[variable] == {"secretKeyRef": {"name": "creds", "key": key, "optional": True}}


def test_no_credentials_without_a_secret() -> None:
    assert not {"FLOWABLE_USERNAME", "FLOWABLE_PASSWORD", "FLOWABLE_TOKEN"} & set(
        env(build(make_pool()))
    )


def test_ca_secret_is_mounted_read_only_and_named_in_the_env() -> None:
    pool = make_pool(
        engine={"url": "https://f", "tls": {"caSecretRef": {"name": "ca", "key": "root.pem"}}}
    )
    manifest = build(pool)
    pod = manifest["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if "secret" in v]
    assert volume["secret"] == {
        "secretName": "ca",
        "items": [{"key": "root.pem", "path": "root.pem"}],
    }
    (mount,) = [m for m in container(manifest)["volumeMounts"] if m["name"] == volume["name"]]
    assert mount == {"name": volume["name"], "mountPath": CA_MOUNT_PATH, "readOnly": True}
    assert env(manifest)["FLOWABLE_CA_BUNDLE"] == f"{CA_MOUNT_PATH}/root.pem"
    assert "FLOWABLE_VERIFY_TLS" not in env(manifest)


def test_insecure_skip_verify_turns_verification_off() -> None:
    pool = make_pool(engine={"url": "https://f", "tls": {"insecureSkipVerify": True}})
    assert env(build(pool))["FLOWABLE_VERIFY_TLS"] == "false"


def test_client_certificate_secret_is_mounted_read_only_and_named_in_the_env() -> None:
    pool = make_pool(
        engine={"url": "https://f", "tls": {"clientCertSecretRef": {"name": "worker-mtls"}}}
    )
    manifest = build(pool)
    pod = manifest["spec"]["template"]["spec"]
    (volume,) = [
        v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == "worker-mtls"
    ]
    assert volume["secret"]["items"] == [
        {"key": "tls.crt", "path": "tls.crt"},
        {"key": "tls.key", "path": "tls.key"},
    ]
    (mount,) = [m for m in container(manifest)["volumeMounts"] if m["name"] == volume["name"]]
    assert mount == {"name": volume["name"], "mountPath": CLIENT_CERT_MOUNT_PATH, "readOnly": True}
    assert env(manifest)["FLOWABLE_CLIENT_CERT"] == f"{CLIENT_CERT_MOUNT_PATH}/tls.crt"
    assert env(manifest)["FLOWABLE_CLIENT_KEY"] == f"{CLIENT_CERT_MOUNT_PATH}/tls.key"
    # Files, never env values: the key must not show in the pod spec.
    assert not any(
        "valueFrom" in e
        for e in container(manifest)["env"]
        if e["name"].startswith("FLOWABLE_CLIENT")
    )


def test_one_secret_entry_holding_certificate_and_key_is_mounted_once() -> None:
    ref = {"name": "bundle", "certKey": "client.pem", "keyKey": "client.pem"}
    pool = make_pool(engine={"url": "https://f", "tls": {"clientCertSecretRef": ref}})
    manifest = build(pool)
    pod = manifest["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == "bundle"]
    assert volume["secret"]["items"] == [{"key": "client.pem", "path": "client.pem"}]
    assert env(manifest)["FLOWABLE_CLIENT_CERT"] == f"{CLIENT_CERT_MOUNT_PATH}/client.pem"
    assert "FLOWABLE_CLIENT_KEY" not in env(manifest)


def test_no_client_certificate_without_the_field() -> None:
    manifest = build(make_pool(engine={"url": "https://f"}))
    assert not {"FLOWABLE_CLIENT_CERT", "FLOWABLE_CLIENT_KEY"} & set(env(manifest))
    mounts = container(manifest)["volumeMounts"]
    assert all(m["mountPath"] != CLIENT_CERT_MOUNT_PATH for m in mounts)


# --- the user's env and template ----------------------------------------------------------------


def test_user_env_is_appended_and_replaces_ours_by_name() -> None:
    pool = make_pool(
        {
            "concurrency": 4,
            "env": [
                {"name": "FLOWABLE_WORKER_CONCURRENCY", "value": "9"},
                {"name": "EXTRA", "value": "x"},
            ],
        }
    )
    names = [e["name"] for e in container(build(pool))["env"]]
    assert names.count("FLOWABLE_WORKER_CONCURRENCY") == 1
    assert names[-2:] == ["FLOWABLE_WORKER_CONCURRENCY", "EXTRA"]
    assert env(build(pool))["FLOWABLE_WORKER_CONCURRENCY"] == "9"


def test_template_metadata_merges_but_the_selector_label_wins() -> None:
    pool = make_pool(
        {
            "template": {
                "metadata": {
                    "labels": {"team": "billing", POOL_LABEL: "someone-else"},
                    "annotations": {"prometheus.io/port": "9999", "note": "hi"},
                }
            }
        }
    )
    meta = build(pool)["spec"]["template"]["metadata"]
    assert meta["labels"]["team"] == "billing"
    assert meta["labels"][POOL_LABEL] == "inv"
    assert meta["annotations"]["note"] == "hi"
    assert meta["annotations"]["prometheus.io/port"] == "9999"
    assert meta["annotations"]["prometheus.io/scrape"] == "true"


def test_template_worker_container_merges_field_by_field() -> None:
    resources = {"requests": {"cpu": "100m"}, "limits": {"memory": "256Mi"}}
    pool = make_pool(
        {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "worker",
                            "resources": resources,
                            "env": [
                                {"name": "FLOWABLE_TOPIC", "value": "other"},
                                {"name": "TZ", "value": "UTC"},
                            ],
                        }
                    ]
                }
            }
        }
    )
    manifest = build(pool)
    worker = container(manifest)
    assert worker["resources"] == resources
    assert worker["image"] == IMAGE  # kept
    assert worker["livenessProbe"]["httpGet"]["path"] == "/healthz"  # kept
    assert env(manifest)["FLOWABLE_TOPIC"] == "other"
    assert env(manifest)["TZ"] == "UTC"
    assert env(manifest)["FLOWABLE_URL"] == "http://flowable:8080/flowable-rest"
    assert len(manifest["spec"]["template"]["spec"]["containers"]) == 1


def test_template_other_containers_become_sidecars() -> None:
    sidecar = {"name": "proxy", "image": "envoy:1"}
    pool = make_pool({"template": {"spec": {"containers": [sidecar]}}})
    containers = build(pool)["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["worker", "proxy"]
    assert containers[1] == sidecar


def test_template_pod_spec_fields_replace_ours() -> None:
    pool = make_pool(
        {
            "template": {
                "spec": {
                    "securityContext": {"runAsUser": 1234},
                    "nodeSelector": {"pool": "workers"},
                    "serviceAccountName": "worker-sa",
                }
            }
        }
    )
    pod = build(pool)["spec"]["template"]["spec"]
    # The security context merges per field (test_security_contexts_merge_per_field).
    assert pod["securityContext"]["runAsUser"] == 1234
    assert pod["nodeSelector"] == {"pool": "workers"}
    assert pod["serviceAccountName"] == "worker-sa"


def test_template_volumes_merge_by_name_with_the_ca_volume() -> None:
    pool = make_pool(
        {
            "template": {
                "spec": {
                    "volumes": [{"name": "scratch", "emptyDir": {}}],
                    "containers": [
                        {"name": "worker", "volumeMounts": [{"name": "scratch", "mountPath": "/s"}]}
                    ],
                }
            }
        },
        engine={"url": "https://f", "tls": {"caSecretRef": {"name": "ca"}}},
    )
    manifest = build(pool)
    pod = manifest["spec"]["template"]["spec"]
    assert [v["name"] for v in pod["volumes"]] == ["tmp", "flowable-ca", "scratch"]
    assert [m["mountPath"] for m in container(manifest)["volumeMounts"]] == [
        "/tmp",
        CA_MOUNT_PATH,
        "/s",
    ]


# --- security defaults and resources ------------------------------------------------------------


def test_worker_pods_are_restricted_read_only_without_a_token_and_request_resources() -> None:
    manifest = build(make_pool())
    pod = manifest["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["automountServiceAccountToken"] is False
    worker = container(manifest)
    assert worker["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    # A read-only root, but Python (tempfile) and handlers get a writable /tmp.
    assert {"name": "tmp", "mountPath": "/tmp"} in worker["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {}} in pod["volumes"]
    assert worker["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"}}


def test_security_contexts_merge_per_field() -> None:
    pool = make_pool(
        {
            "template": {
                "spec": {
                    "securityContext": {"fsGroup": 2000},
                    "containers": [
                        {"name": "worker", "securityContext": {"readOnlyRootFilesystem": True}}
                    ],
                }
            }
        }
    )
    manifest = build(pool)
    assert manifest["spec"]["template"]["spec"]["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
        "fsGroup": 2000,
    }
    assert container(manifest)["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def test_a_template_can_still_override_each_default_explicitly() -> None:
    pool = make_pool(
        {
            "template": {
                "spec": {
                    "automountServiceAccountToken": True,
                    "securityContext": {"runAsNonRoot": False},
                    "containers": [
                        {
                            "name": "worker",
                            "securityContext": {
                                "readOnlyRootFilesystem": False,
                                "capabilities": {"add": ["NET_BIND_SERVICE"]},
                            },
                        }
                    ],
                }
            }
        }
    )
    manifest = build(pool)
    pod = manifest["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is True
    assert pod["securityContext"]["runAsNonRoot"] is False
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container(manifest)["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": False,
        "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
    }


@pytest.mark.parametrize(
    "theirs",
    [{"privileged": True}, {"capabilities": {"add": ["CAP_SYS_ADMIN"]}}],
)
def test_a_privileged_worker_does_not_keep_our_no_escalation(theirs: dict[str, Any]) -> None:
    # Kubernetes refuses allowPrivilegeEscalation: false with privileged or CAP_SYS_ADMIN.
    pool = make_pool(
        {"template": {"spec": {"containers": [{"name": "worker", "securityContext": theirs}]}}}
    )
    context = container(build(pool))["securityContext"]
    assert "allowPrivilegeEscalation" not in context
    assert context["readOnlyRootFilesystem"] is True


@pytest.mark.parametrize(
    ("theirs", "expected"),
    [
        (
            {"requests": {"cpu": "1"}},
            {"requests": {"cpu": "1", "memory": "128Mi"}},
        ),
        # A limit below our default request would make the pod invalid: the default goes, and
        # Kubernetes sets the request to the limit.
        (
            {"limits": {"cpu": "50m"}},
            {"limits": {"cpu": "50m"}, "requests": {"memory": "128Mi"}},
        ),
        (
            {"requests": {"memory": "1Gi"}, "limits": {"cpu": "2", "memory": "1Gi"}},
            {"requests": {"memory": "1Gi"}, "limits": {"cpu": "2", "memory": "1Gi"}},
        ),
    ],
)
def test_resources_merge_per_resource(theirs: dict[str, Any], expected: dict[str, Any]) -> None:
    pool = make_pool(
        {"template": {"spec": {"containers": [{"name": "worker", "resources": theirs}]}}}
    )
    assert container(build(pool))["resources"] == expected


def test_sidecars_get_no_defaults_of_ours() -> None:
    sidecar = {"name": "proxy", "image": "envoy:1", "securityContext": {"runAsUser": 1}}
    pool = make_pool({"template": {"spec": {"containers": [sidecar]}}})
    assert container(build(pool), "proxy") == sidecar


def test_building_does_not_mutate_the_pools_template() -> None:
    pool = make_pool({"template": {"spec": {"containers": [{"name": "worker", "env": []}]}}})
    before = pool.model_dump()
    build(pool)
    build(pool)
    assert pool.model_dump() == before


# --- the hash -----------------------------------------------------------------------------------


def test_hash_is_stable_and_ignores_replicas() -> None:
    first = build(make_pool(), replicas=1)["metadata"]["annotations"][TEMPLATE_HASH_ANNOTATION]
    again = build(make_pool(), replicas=7)["metadata"]["annotations"][TEMPLATE_HASH_ANNOTATION]
    assert first == again
    assert len(first) == 16


@pytest.mark.parametrize(
    "worker",
    [
        {"concurrency": 5},
        {"image": "other:1"},
        {"env": [{"name": "A", "value": "1"}]},
        {"template": {"metadata": {"labels": {"x": "y"}}}},
    ],
)
def test_hash_changes_with_the_spec(worker: dict[str, Any]) -> None:
    base = build(make_pool())["metadata"]["annotations"][TEMPLATE_HASH_ANNOTATION]
    changed = build(make_pool(worker))["metadata"]["annotations"][TEMPLATE_HASH_ANNOTATION]
    assert base != changed


def test_a_pool_without_worker_cannot_be_built() -> None:
    pool = parse_pool(
        {
            "metadata": {"name": "p", "namespace": "n", "uid": "u", "generation": 1},
            "spec": {
                "engine": {"url": "http://f"},
                "topic": "t",
                "scaleTargetRef": {"name": "existing"},
                "scaling": {"jobsPerReplica": 2},
            },
        }
    )
    with pytest.raises(ValueError, match=r"no spec\.worker"):
        build(pool)


# --- deletion costs (with a stand-in core API: which pods are written) ---------------------------


class _Obj:
    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


class FakeCore:
    def __init__(self, pods: dict[str, dict[str, str]]) -> None:
        self.pods = pods
        self.terminating: set[str] = set()
        self.patched: list[tuple[str, dict[str, Any]]] = []

    def list_namespaced_pod(self, *, namespace: str, label_selector: str) -> Any:
        items = [
            _Obj(
                metadata=_Obj(
                    name=name,
                    annotations=ann,
                    deletion_timestamp="now" if name in self.terminating else None,
                )
            )
            for name, ann in self.pods.items()
        ]
        return _Obj(items=items)

    def patch_namespaced_pod(self, *, name: str, namespace: str, body: Any, **_: Any) -> None:
        self.patched.append((name, body))


def test_deletion_costs_patch_only_pods_whose_value_changes() -> None:
    core = FakeCore(
        {
            "a": {DELETION_COST_ANNOTATION: "3"},  # unchanged
            "b": {},  # idle, never marked: gets 0
            "c": {DELETION_COST_ANNOTATION: "2"},  # now idle: back to 0
            "d": {DELETION_COST_ANNOTATION: "0"},  # idle and already 0
        }
    )
    patched = set_deletion_costs(core, "ns", "x=y", {"a": 3, "zombie": 5})
    assert patched == 2
    assert dict(core.patched) == {
        "b": {"metadata": {"annotations": {DELETION_COST_ANNOTATION: "0"}}},
        "c": {"metadata": {"annotations": {DELETION_COST_ANNOTATION: "0"}}},
    }


def test_live_pods_leave_out_terminating_pods() -> None:
    core = FakeCore({"a": {}, "b": {}})
    core.terminating = {"b"}
    assert live_pods(core, "ns", "x=y") == frozenset({"a"})


# --- the owned Deployment read from the operator's cache ----------------------------------------


class RawAnswer:
    """A `_preload_content=False` answer: the JSON body as bytes."""

    def __init__(self, body: Mapping[str, Any]) -> None:
        self.data = json.dumps(body).encode()
        self.released = False

    def release_conn(self) -> None:
        self.released = True


class Apps:
    """The Deployment calls `ensure_deployment` makes, recorded; the server's copy in `live`."""

    def __init__(self, live: dict[str, Any] | None = None) -> None:
        self.live = live
        self.calls: list[str] = []
        self.conflicts = 0

    def read_namespaced_deployment(self, **kwargs: Any) -> RawAnswer:
        self.calls.append("get")
        assert kwargs["_preload_content"] is False
        if self.live is None:
            raise ApiException(status=404)
        return RawAnswer(self.live)

    def create_namespaced_deployment(self, *, body: dict[str, Any], **kwargs: Any) -> RawAnswer:
        self.calls.append("create")
        self.live = self._stored(body, "1")
        return RawAnswer(self.live)

    def replace_namespaced_deployment(self, *, body: dict[str, Any], **kwargs: Any) -> RawAnswer:
        self.calls.append("replace")
        assert self.live is not None
        if self.conflicts or body["metadata"]["resourceVersion"] != self.rv:
            self.conflicts = max(0, self.conflicts - 1)
            raise ApiException(status=409)
        self.live = self._stored(body, str(int(self.rv) + 1))
        return RawAnswer(self.live)

    @property
    def rv(self) -> str:
        assert self.live is not None
        return str(self.live["metadata"]["resourceVersion"])

    @staticmethod
    def _stored(body: dict[str, Any], rv: str) -> dict[str, Any]:
        stored: dict[str, Any] = json.loads(json.dumps(body))
        stored["metadata"].update(resourceVersion=rv, uid="deploy-uid")
        stored["status"] = {"replicas": stored["spec"]["replicas"], "readyReplicas": 1}
        return stored


class Cache:
    """The `DeploymentCache` calls `targets` makes: get, put, forget."""

    def __init__(self, ready: bool = True) -> None:
        self.ready = ready
        self.entries: dict[tuple[str, str], CachedDeployment] = {}

    def get(self, namespace: str, name: str) -> CachedDeployment | None:
        return self.entries.get((namespace, name)) if self.ready else None

    def put(self, obj: Mapping[str, Any]) -> None:
        entry = CachedDeployment.from_json(obj)
        self.entries[(entry.namespace, entry.name)] = entry

    def forget(self, namespace: str, name: str) -> None:
        self.entries.pop((namespace, name), None)

    def hold(self, obj: Mapping[str, Any]) -> None:
        self.put(obj)


def _ensure(apps: Apps, pool: Pool, cache: Cache | None) -> str:
    state = ensure_deployment(
        apps, pool, default_image=IMAGE, initial_replicas=2, cache=cast(Any, cache)
    )
    return state.action


def test_a_cached_unchanged_deployment_costs_no_request() -> None:
    pool, apps, cache = make_pool(), Apps(), Cache()
    assert _ensure(apps, pool, cache) == "created"
    assert apps.calls == ["get", "create"]  # not in the cache: read, then made
    for _ in range(5):
        assert _ensure(apps, pool, cache) == "unchanged"
    assert apps.calls == ["get", "create"]  # the create's answer went into the cache


def test_a_changed_template_is_replaced_from_the_cached_version_and_not_again() -> None:
    pool, apps, cache = make_pool(), Apps(), Cache()
    _ensure(apps, pool, cache)
    changed = make_pool(worker={"image": "other:2"})
    assert _ensure(apps, changed, cache) == "updated"
    assert _ensure(apps, changed, cache) == "unchanged"
    assert apps.calls == ["get", "create", "replace"]
    assert apps.live is not None
    assert container(apps.live)["image"] == "other:2"
    assert apps.live["spec"]["replicas"] == 2  # the live replicas, kept


def test_a_stale_cache_conflicts_once_then_the_deployment_is_read() -> None:
    pool, apps, cache = make_pool(), Apps(), Cache()
    _ensure(apps, pool, cache)
    apps.conflicts = 1  # someone else wrote it since
    assert _ensure(apps, make_pool(worker={"image": "other:2"}), cache) == "updated"
    assert apps.calls == ["get", "create", "replace", "get", "replace"]


def test_without_a_ready_cache_every_ensure_reads_the_deployment() -> None:
    pool, apps = make_pool(), Apps()
    for cache in (None, Cache(ready=False)):
        apps.calls.clear()
        _ensure(apps, pool, cache)
        _ensure(apps, pool, cache)
        assert apps.calls.count("get") == 2


def test_a_cached_deployment_of_someone_else_is_refused() -> None:
    pool, apps, cache = make_pool(), Apps(), Cache()
    foreign = Apps._stored(build(pool), "3")
    foreign["metadata"]["ownerReferences"] = [
        {"kind": "ReplicaSet", "name": "x", "uid": "other", "controller": True}
    ]
    cache.hold(foreign)
    with pytest.raises(NotControlledError, match="controlled by ReplicaSet x"):
        _ensure(apps, pool, cache)
    assert apps.calls == []


def test_read_scale_of_the_owned_deployment_comes_from_the_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool, cache = make_pool(), Cache()
    held = Apps._stored(build(pool, replicas=3), "4")
    held["status"] = {"replicas": 2}
    cache.hold(held)
    monkeypatch.setattr(targets, "_typed_scale_calls", _no_scale_get)
    assert read_scale(object(), pool, cast(Any, cache)) == Scale(
        replicas=3, current_replicas=2, selector=f"{POOL_LABEL}=inv"
    )


def test_read_scale_of_a_scale_target_ref_or_an_unseen_deployment_is_a_get(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gets: list[str] = []

    def typed(api_client: Any, target: Any) -> tuple[Any, Any]:
        def read(*, name: str, namespace: str) -> Any:
            gets.append(name)
            return SimpleNamespace(
                spec=SimpleNamespace(replicas=7), status=SimpleNamespace(replicas=7, selector="s")
            )

        return read, None

    monkeypatch.setattr(targets, "_typed_scale_calls", typed)
    cache = Cache()
    ref = {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "inv-worker"}
    referring = parse_pool(
        {
            "metadata": {"name": "inv", "namespace": "billing", "uid": "uid-1", "generation": 1},
            "spec": {
                "engine": {"url": "http://flowable:8080/flowable-rest"},
                "topic": "invoices",
                "scaleTargetRef": ref,
                "scaling": {"jobsPerReplica": 1},
            },
        }
    )
    cache.hold(Apps._stored(build(make_pool()), "4"))  # same name, but not what it scales
    assert read_scale(object(), referring, cast(Any, cache)).replicas == 7
    assert read_scale(object(), make_pool(), cast(Any, Cache(ready=False))).replicas == 7
    assert gets == ["inv-worker", "inv-worker"]


def test_cached_scale_answers_only_for_the_owned_deployment_the_cache_holds() -> None:
    pool, cache = make_pool(), Cache()
    assert cached_scale(pool, cast(Any, cache)) is None  # not seen: the caller GETs
    held = Apps._stored(build(pool, replicas=3), "4")
    held["status"] = {"replicas": 2}
    cache.hold(held)
    assert cached_scale(pool, cast(Any, cache)) == Scale(
        replicas=3, current_replicas=2, selector=f"{POOL_LABEL}=inv"
    )
    expressions = Apps._stored(build(pool, replicas=3), "5")
    expressions["spec"]["selector"] = {
        "matchExpressions": [{"key": POOL_LABEL, "operator": "In", "values": ["inv"]}]
    }
    cache.hold(expressions)  # a selector the cache does not format as the API server would
    assert cached_scale(pool, cast(Any, cache)) is None
    referring = parse_pool(
        {
            "metadata": {"name": "inv", "namespace": "billing", "uid": "uid-1", "generation": 1},
            "spec": {
                "engine": {"url": "http://flowable:8080/flowable-rest"},
                "topic": "invoices",
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
                "scaling": {"jobsPerReplica": 1},
            },
        }
    )
    cache.hold(held)
    assert cached_scale(pool, cast(Any, cache)) is not None
    assert cached_scale(referring, cast(Any, cache)) is None  # a scaleTargetRef: always a GET


def _no_scale_get(api_client: Any, target: Any) -> Any:
    raise AssertionError("read_scale made a request")
