"""`spec.engine.tls.clientCertSecretRef` through the real API server: defaults and bounds.

The CRD fills the `kubernetes.io/tls` key names, refuses a key that cannot be a Secret key (it
becomes a file name in the worker's mount), and what the API server stored parses into the
operator's spec and mounts into the worker Deployment as the unit tests expect.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from flowable_worker_operator.manifests import CLIENT_CERT_MOUNT_PATH, build_deployment
from flowable_worker_operator.spec import parse_pool
from tests.cluster.test_crd import GROUP, MINIMAL_SPEC, PLURAL, VERSION, _merged, _pool, pools

pytestmark = pytest.mark.cluster

__all__ = ["pools"]  # the fixture, shared with test_crd


def test_the_tls_secret_layout_is_the_default(pools: Any, namespace: str) -> None:
    spec = _merged(
        MINIMAL_SPEC,
        {"engine": {"url": "https://f:8443", "tls": {"clientCertSecretRef": {"name": "mtls"}}}},
    )
    pools.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, _pool("mtls", spec))
    stored = pools.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "mtls")

    assert stored["spec"]["engine"]["tls"]["clientCertSecretRef"] == {
        "name": "mtls",
        "certKey": "tls.crt",
        "keyKey": "tls.key",
    }
    manifest = build_deployment(parse_pool(stored), default_image="worker:test", replicas=1)
    (worker,) = manifest["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in worker["env"]}
    assert env["FLOWABLE_CLIENT_CERT"] == f"{CLIENT_CERT_MOUNT_PATH}/tls.crt"
    assert env["FLOWABLE_CLIENT_KEY"] == f"{CLIENT_CERT_MOUNT_PATH}/tls.key"


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ({"certKey": "tls.crt"}, "spec.engine.tls.clientCertSecretRef.name: Required value"),
        ({"name": "mtls", "keyKey": "../tls.key"}, "spec.engine.tls.clientCertSecretRef.keyKey"),
        ({"name": "mtls", "certKey": ""}, "spec.engine.tls.clientCertSecretRef.certKey"),
        ({"name": "m" * 254}, "spec.engine.tls.clientCertSecretRef.name"),
    ],
    ids=["no-name", "key-with-slash", "empty-key", "name-too-long"],
)
def test_an_unusable_reference_is_rejected(
    pools: Any, namespace: str, ref: dict[str, str], message: str
) -> None:
    spec = _merged(MINIMAL_SPEC, {"engine": {"tls": {"clientCertSecretRef": ref}}})
    with pytest.raises(ApiException) as caught:
        pools.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, _pool("bad", spec))
    assert caught.value.status == 422
    assert message in json.loads(caught.value.body)["message"]
