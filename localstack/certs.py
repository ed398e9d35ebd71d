"""Certificates and keys for the local Kubernetes control plane.

A real kube-apiserver serves TLS only and authenticates clients; the cheapest robust way to get an
admin identity that works across Kubernetes releases is a client certificate in the
``system:masters`` group (static token files come and go between releases). Each control-plane
component gets its own client certificate with the user name that the bootstrap RBAC policy already
binds (``system:kube-controller-manager``, ``system:kube-scheduler``), so RBAC stays on and real.

``trustme`` (dev extra) makes the CA and leaf certificates; ``cryptography`` (which trustme depends
on) makes the service-account signing key. Everything is written into one directory per cluster.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

# The names a client may use to reach the API server: loopback, plus the in-cluster service names
# and the first IP of the service range (10.0.0.0/24), as kubeadm does.
SERVER_IDENTITIES = (
    "127.0.0.1",
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "10.0.0.1",
)


@dataclass(frozen=True)
class ClientCert:
    """A client certificate and its key, as files a kubeconfig can point at."""

    user: str
    cert: Path
    key: Path


@dataclass(frozen=True)
class ClusterPKI:
    """Every file the control plane needs for TLS, client authentication and service accounts."""

    directory: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    sa_key: Path
    sa_pub: Path
    clients: dict[str, ClientCert]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def generate_pki(directory: Path, clients: dict[str, tuple[str, str | None]]) -> ClusterPKI:
    """Create a CA, the API server's serving certificate, client certs and the SA key pair.

    ``clients`` maps a short name (file prefix) to ``(user, group)``; the user becomes the
    certificate's common name and the group its organisation, which is how the API server's
    x509 authenticator derives the identity.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="flowable-worker-operator local cluster")
    ca_cert = directory / "ca.crt"
    ca.cert_pem.write_to_path(str(ca_cert))
    # The controller manager's CSR signer needs the CA key; nothing leaves this directory.
    ca_key = _write(directory / "ca.key", ca.private_key_pem.bytes())

    server = ca.issue_cert(*SERVER_IDENTITIES, common_name="kube-apiserver")
    server_cert = directory / "apiserver.crt"
    server_key = directory / "apiserver.key"
    # The chain's first blob is the leaf; the CA is in ca.crt.
    _write(server_cert, b"".join(blob.bytes() for blob in server.cert_chain_pems))
    _write(server_key, server.private_key_pem.bytes())

    issued: dict[str, ClientCert] = {}
    for name, (user, group) in clients.items():
        # trustme wants a DNS-name SAN; the identity the API server uses is the CN/O only.
        leaf = ca.issue_cert(f"{name}.client.local", common_name=user, organization_name=group)
        cert = _write(directory / f"{name}.crt", leaf.cert_chain_pems[0].bytes())
        key = _write(directory / f"{name}.key", leaf.private_key_pem.bytes())
        issued[name] = ClientCert(user=user, cert=cert, key=key)

    # Service-account tokens are signed by the API server (TokenRequest) and by nothing else; the
    # controller manager only needs the private key for its legacy token controller.
    sa_private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_key = _write(
        directory / "sa.key",
        sa_private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    sa_pub = _write(
        directory / "sa.pub",
        sa_private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    return ClusterPKI(
        directory=directory,
        ca_cert=ca_cert,
        ca_key=ca_key,
        server_cert=server_cert,
        server_key=server_key,
        sa_key=sa_key,
        sa_pub=sa_pub,
        clients=issued,
    )


def write_kubeconfig(path: Path, server: str, ca_cert: Path, client: ClientCert) -> Path:
    """Write a kubeconfig for one client identity.

    JSON is valid YAML, so kubectl, helm, the Go components and the Python client all read it,
    and no YAML library is needed to write it.
    """
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {"server": server, "certificate-authority": str(ca_cert)},
            }
        ],
        "users": [
            {
                "name": client.user,
                "user": {
                    "client-certificate": str(client.cert),
                    "client-key": str(client.key),
                },
            }
        ],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": client.user}}],
        "current-context": "local",
    }
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)
    return path


@dataclass(frozen=True)
class FrontProxyPKI:
    """The API server's aggregation layer credentials: a CA of its own and the client
    certificate the API server presents when it proxies a request to an extension API server."""

    ca_cert: Path
    client_cert: Path
    client_key: Path
    client_name: str


# The name kubeadm gives the proxy client; extension servers accept the requestheader identity
# only from a certificate whose common name is in --requestheader-allowed-names.
FRONT_PROXY_CLIENT_NAME = "front-proxy-client"


def generate_front_proxy(directory: Path) -> FrontProxyPKI:
    """Create the front-proxy CA and the proxy client certificate it signs.

    A separate CA, as kubeadm does: an extension API server trusts the X-Remote-User headers of
    any client this CA signed, so it must not also sign ordinary clients.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="flowable-worker-operator front proxy")
    ca_cert = directory / "front-proxy-ca.crt"
    ca.cert_pem.write_to_path(str(ca_cert))
    leaf = ca.issue_cert(
        f"{FRONT_PROXY_CLIENT_NAME}.client.local", common_name=FRONT_PROXY_CLIENT_NAME
    )
    client_cert = _write(directory / "front-proxy-client.crt", leaf.cert_chain_pems[0].bytes())
    client_key = _write(directory / "front-proxy-client.key", leaf.private_key_pem.bytes())
    return FrontProxyPKI(
        ca_cert=ca_cert,
        client_cert=client_cert,
        client_key=client_key,
        client_name=FRONT_PROXY_CLIENT_NAME,
    )


@dataclass(frozen=True)
class ServingTLS:
    """A CA and one certificate it signs, as ``ca.crt``, ``tls.crt`` and ``tls.key`` in one
    directory: the layout of a Kubernetes TLS Secret mounted in a pod, which servers such as
    KEDA's read from their ``--cert-dir``."""

    directory: Path
    ca_cert: Path
    cert: Path
    key: Path


def generate_serving_tls(directory: Path, identities: tuple[str, ...], name: str) -> ServingTLS:
    """Create a CA and a certificate for ``identities`` (DNS names or IPs) that serves and
    authenticates as a client alike, for components that speak mutual TLS to each other."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name=f"flowable-worker-operator {name}")
    ca_cert = directory / "ca.crt"
    ca.cert_pem.write_to_path(str(ca_cert))
    leaf = ca.issue_cert(*identities, common_name=name)
    cert = _write(directory / "tls.crt", b"".join(b.bytes() for b in leaf.cert_chain_pems))
    key = _write(directory / "tls.key", leaf.private_key_pem.bytes())
    return ServingTLS(directory=directory, ca_cert=ca_cert, cert=cert, key=key)
