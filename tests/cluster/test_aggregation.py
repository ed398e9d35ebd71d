"""The API server's aggregation layer works: a request for an extension group reaches a local
process through the real kube-apiserver, authenticated the way extension servers expect.

A small HTTPS server on 127.0.0.1 plays the extension API server (what KEDA's metrics adapter is):
it accepts only clients signed by the front-proxy CA, serves discovery for its group and records
the identity headers of every request. If any aggregation flag were missing or wrong, the
APIService would never become Available or the headers would not arrive.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from localstack.certs import generate_serving_tls
from localstack.cluster import LocalCluster
from tests.support.waiting import poll_until

pytestmark = pytest.mark.cluster

GROUP, VERSION = "aggregation.test.localstack.io", "v1"
NAMESPACE, SERVICE = "aggregation-test", "extension"


class _Extension(BaseHTTPRequestHandler):
    """Discovery for GROUP/VERSION and one read-only resource; remembers who asked."""

    seen: ClassVar[list[dict[str, Any]]] = []

    def do_GET(self) -> None:
        cert = self.connection.getpeercert()
        subject = dict(item[0] for item in cert["subject"]) if cert else {}
        _Extension.seen.append(
            {
                "path": self.path,
                "client": subject.get("commonName"),
                "user": self.headers.get("X-Remote-User"),
                "groups": self.headers.get_all("X-Remote-Group") or [],
            }
        )
        if self.path.split("?")[0] == f"/apis/{GROUP}/{VERSION}":
            body: dict[str, Any] = {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": f"{GROUP}/{VERSION}",
                "resources": [
                    {"name": "things", "namespaced": False, "kind": "Thing", "verbs": ["list"]}
                ],
            }
        elif self.path.startswith(f"/apis/{GROUP}/{VERSION}/things"):
            body = {"kind": "ThingList", "apiVersion": f"{GROUP}/{VERSION}", "items": []}
        else:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def extension(cluster: LocalCluster, tmp_path: Path) -> Iterator[int]:
    """The extension server, trusting only the front-proxy CA; yields its port."""
    tls = generate_serving_tls(tmp_path / "tls", (f"{SERVICE}.{NAMESPACE}.svc",), SERVICE)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(tls.cert), str(tls.key))
    ctx.load_verify_locations(str(cluster.front_proxy.ca_cert))
    ctx.verify_mode = ssl.CERT_REQUIRED
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Extension)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = int(server.server_address[1])
    name = cluster.register_api_service(
        group=GROUP,
        version=VERSION,
        namespace=NAMESPACE,
        service=SERVICE,
        port=port,
        ca_bundle=tls.ca_cert.read_bytes(),
    )
    yield port
    cluster.api("DELETE", f"/apis/apiregistration.k8s.io/v1/apiservices/{name}")
    server.shutdown()
    server.server_close()


def test_an_apiservice_routes_to_a_local_process_with_the_callers_identity(
    cluster: LocalCluster, extension: int
) -> None:
    name = f"{VERSION}.{GROUP}"
    poll_until(lambda: cluster.api_service_condition(name).get("status") == "True", timeout=60)
    status, body = cluster.api("GET", f"/apis/{GROUP}/{VERSION}/things")
    assert status == 200, body
    assert body["kind"] == "ThingList"
    proxied = [
        s for s in _Extension.seen if s["path"].startswith(f"/apis/{GROUP}/{VERSION}/things")
    ]
    assert proxied, _Extension.seen
    # The API server authenticated the admin, then vouched for it with its proxy certificate.
    assert proxied[-1]["client"] == cluster.front_proxy.client_name
    assert proxied[-1]["user"] == "admin"
    assert "system:masters" in proxied[-1]["groups"]


def test_an_unreachable_extension_server_leaves_the_apiservice_unavailable(
    cluster: LocalCluster,
) -> None:
    """The failure a KEDA setup must name: nothing listens where the APIService points."""
    from localstack.cluster import free_port

    name = cluster.register_api_service(
        group="nobody.test.localstack.io",
        version=VERSION,
        namespace=NAMESPACE,
        service="nobody",
        port=free_port(),
        ca_bundle=cluster.front_proxy.ca_cert.read_bytes(),
    )
    try:
        condition = poll_until(
            lambda: (c := cluster.api_service_condition(name)).get("status") == "False" and c,
            timeout=60,
        )
        assert condition["reason"] == "FailedDiscoveryCheck", condition
        assert "127.0.0.1" in condition["message"], condition
    finally:
        cluster.api("DELETE", f"/apis/apiregistration.k8s.io/v1/apiservices/{name}")
