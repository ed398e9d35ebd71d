"""The fingerprint that rolls worker pods when a Secret value they read changes (`secrethash`)."""

from __future__ import annotations

import base64
from typing import Any

from flowable_worker_operator.manifests import build_deployment
from flowable_worker_operator.secrethash import (
    SECRETS_HASH_ANNOTATION,
    SecretContent,
    secret_refs,
    secrets_hash,
)
from flowable_worker_operator.spec import parse_pool


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def pool(**worker: Any) -> Any:
    return parse_pool(
        {
            "metadata": {"name": "invoices", "namespace": "billing", "uid": "u"},
            "spec": {
                "engine": {
                    "url": "https://flowable",
                    "authSecretRef": {"name": "creds"},
                    "tls": {"caSecretRef": {"name": "ca"}},
                },
                "topic": "t",
                "worker": {"handler": {"python": "a:b"}, **worker},
            },
        }
    )


API_KEY = {"name": "API_KEY", "valueFrom": {"secretKeyRef": {"name": "api", "key": "key"}}}


def test_every_secret_the_pods_read_is_referenced() -> None:
    assert secret_refs(pool(env=[API_KEY])) == (
        ("api", "key"),
        ("ca", "ca.crt"),
        ("creds", "password"),
        ("creds", "token"),
        ("creds", "username"),
    )


def test_the_hash_follows_values_not_unrelated_keys_and_never_shows_them() -> None:
    refs = secret_refs(pool())
    wrong = {
        "creds": SecretContent("uid-1", {"username": b64("flowable"), "password": b64("wrong")}),
        "ca": SecretContent("uid-2", {"ca.crt": b64("PEM")}),
    }
    right = {**wrong, "creds": SecretContent(
        "uid-1", {"username": b64("flowable"), "password": b64("right")}
    )}
    unrelated = {**wrong, "ca": SecretContent("uid-2", {"ca.crt": b64("PEM"), "x": b64("y")})}
    first = secrets_hash(refs, wrong)
    assert first is not None
    assert len(first) == 16
    assert secrets_hash(refs, right) != first
    assert secrets_hash(refs, unrelated) == first
    assert secrets_hash(refs, dict(wrong)) == first  # stable: a restart rolls nothing
    for value in ("wrong", b64("wrong")):
        assert value not in first


def test_a_missing_secret_is_a_state_of_its_own_and_no_refs_no_hash() -> None:
    refs = secret_refs(pool())
    present = {"creds": SecretContent("u", {"token": b64("t")}), "ca": None}
    assert secrets_hash(refs, present) != secrets_hash(refs, {"creds": None, "ca": None})
    assert secrets_hash((), {}) is None


def test_the_hash_is_keyed_by_the_secret_uid_so_a_plain_digest_cannot_be_matched() -> None:
    refs = (("creds", "password"),)
    one = secrets_hash(refs, {"creds": SecretContent("uid-a", {"password": b64("pw")})})
    two = secrets_hash(refs, {"creds": SecretContent("uid-b", {"password": b64("pw")})})
    assert one != two


def test_the_hash_is_a_pod_template_annotation_a_template_cannot_override() -> None:
    worker = {"template": {"metadata": {"annotations": {SECRETS_HASH_ANNOTATION: "mine"}}}}
    manifest = build_deployment(
        pool(**worker), default_image="w", replicas=1, secrets_hash="0123456789abcdef"
    )
    annotations = manifest["spec"]["template"]["metadata"]["annotations"]
    assert annotations[SECRETS_HASH_ANNOTATION] == "0123456789abcdef"
    other = build_deployment(pool(**worker), default_image="w", replicas=1, secrets_hash="f" * 16)
    assert (
        other["metadata"]["annotations"]["flowable-worker.io/template-hash"]
        != manifest["metadata"]["annotations"]["flowable-worker.io/template-hash"]
    )
