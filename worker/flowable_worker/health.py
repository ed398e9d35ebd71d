"""`/metrics`, `/healthz` and `/readyz` on one small HTTP server in a daemon thread.

The server runs outside the event loop on purpose: if the loop is stuck (a sync handler run on it
by mistake, a busy loop), `/healthz` still answers, and answers 503, because the loop's heartbeat
has gone stale. `/readyz` says whether Flowable answered recently, so a Service or the operator can
tell a worker that cannot reach its engine; it also fails while a topic's poller is dead or a
handler thread hangs. `/healthz` fails too once as many handler threads hang as the worker's
concurrency: threads Python cannot stop only go away with the process, so the kubelet's restart
(SIGTERM first: the worker gives its jobs back) is the cure. This module never touches the loop
or the client: it only reads what the runtime writes into `HealthState`.

The port may speak TLS and `/metrics` may require a bearer token (`metrics_access.py`); the TLS
handshake happens in the connection's own thread, so a client that stalls mid-handshake holds one
thread, not the accept loop the kubelet's probes go through.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from flowable_worker.metrics_access import authorized

# How long a client may take for the TLS handshake before its connection is dropped.
_HANDSHAKE_TIMEOUT_SECONDS = 10.0


class HealthState:
    """Timestamps written by the runtime, read by the probe server (floats are atomic to swap)."""

    def __init__(self, *, alive_within: float, ready_within: float) -> None:
        self.alive_within = alive_within
        self.ready_within = ready_within
        self.last_heartbeat: float | None = None
        self.last_flowable_answer: float | None = None
        self.stopping = False
        # Written by the runtime: handler threads written off as hung, how many make the
        # process unhealthy (a restart is the only cure for threads Python cannot stop), and
        # topics whose poller ended while the worker runs (a bug; the topic gets no more jobs).
        self.hung_handlers = 0
        self.hung_limit: int | None = None
        self.dead_pollers: dict[str, str] = {}

    def poller_ended(self, topic: str, cause: str) -> None:
        """A topic's poller ended before stop: readiness fails from now on."""
        self.dead_pollers[topic] = cause

    def beat(self) -> None:
        """The event loop is turning."""
        self.last_heartbeat = time.monotonic()

    def flowable_answered(self) -> None:
        """Flowable answered an acquire (even with no jobs)."""
        self.last_flowable_answer = time.monotonic()

    def alive(self) -> tuple[bool, str]:
        """Is the loop alive? With the reason for a human."""
        if self.last_heartbeat is None:
            return True, "starting"
        age = time.monotonic() - self.last_heartbeat
        if age > self.alive_within:
            return False, f"event loop silent for {age:.1f}s"
        if self.hung_limit is not None and self.hung_handlers >= self.hung_limit:
            return False, (
                f"{self.hung_handlers} handler threads hung (limit {self.hung_limit}): "
                "restart needed"
            )
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        """Did Flowable answer recently? With the reason for a human."""
        if self.stopping:
            return False, "stopping"
        if self.dead_pollers:
            topics = ", ".join(sorted(self.dead_pollers))
            return False, f"poller ended for topic {topics}"
        if self.hung_handlers:
            return False, f"{self.hung_handlers} handler threads hung"
        if self.last_flowable_answer is None:
            return False, "Flowable has not answered yet"
        age = time.monotonic() - self.last_flowable_answer
        if age > self.ready_within:
            return False, f"no answer from Flowable for {age:.1f}s"
        return True, "ok"


class ProbeServer:
    """Serves the probes and metrics until `stop()`; port 0 picks a free port (see `.port`)."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        registry: CollectorRegistry,
        state: HealthState,
        tls: ssl.SSLContext | None = None,
        token: str | None = None,
    ) -> None:
        handler = _make_handler(registry, state, token)
        self._server = _ProbeHTTPServer((host, port), handler, tls=tls)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="flowable-worker-probes", daemon=True
        )

    @property
    def port(self) -> int:
        """The port actually bound."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Start serving in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _ProbeHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that, given a TLS context, speaks HTTPS on every connection."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        *,
        tls: ssl.SSLContext | None,
    ) -> None:
        super().__init__(address, handler)
        self._tls = tls

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = super().get_request()
        if self._tls is not None:
            # No handshake here: this is the accept loop; `finish_request` runs per connection.
            connection = self._tls.wrap_socket(
                connection, server_side=True, do_handshake_on_connect=False
            )
        return connection, address

    def finish_request(self, request: Any, client_address: Any) -> None:
        if isinstance(request, ssl.SSLSocket):
            request.settimeout(_HANDSHAKE_TIMEOUT_SECONDS)
            try:
                request.do_handshake()
            except OSError:  # plain HTTP on the TLS port, a stalled or refused handshake
                return
            request.settimeout(None)
        super().finish_request(request, client_address)


def _make_handler(
    registry: CollectorRegistry, state: HealthState, token: str | None
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                if not authorized(self.headers.get("Authorization"), token):
                    challenge = (("WWW-Authenticate", 'Bearer realm="metrics"'),)
                    body = b"unauthorized: /metrics needs the bearer token\n"
                    self._send(401, body, extra=challenge)
                    return
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok, reason = state.alive()
                self._send(200 if ok else 503, reason.encode() + b"\n")
            elif path == "/readyz":
                ok, reason = state.ready()
                self._send(200 if ok else 503, reason.encode() + b"\n")
            else:
                self._send(404, b"not found: try /metrics, /healthz or /readyz\n")

        def _send(
            self,
            status: int,
            body: bytes,
            content_type: str = "text/plain",
            extra: tuple[tuple[str, str], ...] = (),
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            for name, value in extra:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            # Probes every few seconds would drown the job logs.
            return

    return Handler
