"""The HTTP layer: Flowable's external-worker REST routes over a threaded stdlib server.

It turns requests into `EngineState` calls and `ApiError`s into Flowable's error bodies, checks
optional Basic (or Bearer) credentials the way Spring Security does (401, empty body), and applies
injected faults. Order per request: read the body, log, pick a fault; a fault other than
`RESPOND_LOST` answers (or resets) before authentication and the engine run, so it never changes
state. Real TCP on 127.0.0.1 so clients exercise their actual transport, pooling and timeouts.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import socket
import socketserver
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .errors import ApiError, bad_request
from .faults import Fault, FaultInjector, FaultKind
from .requestlog import RequestLog, RequestRecord
from .state import EngineState

API_ROOT = "/external-job-api"

# (method, path regex under the API root, endpoint name); the job id is group 1 when present.
ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("POST", re.compile(r"/acquire/jobs"), "acquire"),
    ("POST", re.compile(r"/acquire/jobs/([^/]+)/complete"), "complete"),
    ("POST", re.compile(r"/acquire/jobs/([^/]+)/bpmnError"), "bpmnError"),
    ("POST", re.compile(r"/acquire/jobs/([^/]+)/cmmnTerminate"), "cmmnTerminate"),
    ("POST", re.compile(r"/acquire/jobs/([^/]+)/fail"), "fail"),
    ("POST", re.compile(r"/unacquire/jobs"), "unacquireAll"),
    ("POST", re.compile(r"/unacquire/jobs/([^/]+)"), "unacquire"),
    ("GET", re.compile(r"/jobs"), "listJobs"),
    ("GET", re.compile(r"/jobs/([^/]+)"), "getJob"),
)
ENDPOINTS = tuple(name for _, _, name in ROUTES)

_MALFORMED_JSON = b'{"data": [{"id": "truncated'


@dataclass(frozen=True)
class Credentials:
    """What the emulated server accepts: Basic user/password and/or a Bearer token."""

    username: str | None = None
    password: str | None = None
    token: str | None = None

    @property
    def required(self) -> bool:
        return self.username is not None or self.token is not None

    def accepts(self, header: str | None) -> bool:
        if not self.required:
            return True
        if header is None:
            return False
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and self.token is not None:
            return value.strip() == self.token
        if scheme.lower() == "basic" and self.username is not None:
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                return False
            return decoded == f"{self.username}:{self.password or ''}"
        return False


def route(method: str, path: str) -> tuple[str, str | None, bool]:
    """(endpoint, job id, whether the path exists for some method) for a path under the root."""
    known_path = False
    for route_method, pattern, name in ROUTES:
        match = pattern.fullmatch(path)
        if match is None:
            continue
        known_path = True
        if route_method == method:
            return name, (match.group(1) if match.groups() else None), True
    return "unknown", None, known_path


class EmulatorHTTPServer(ThreadingHTTPServer):
    """Carries the engine, faults, log and settings that every handler thread shares."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        *,
        state: EngineState,
        faults: FaultInjector,
        log: RequestLog,
        credentials: Credentials,
        context_path: str,
        base_url: Callable[[], str],
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(address, _Handler)
        self.tls = tls
        self.state = state
        self.faults = faults
        self.log = log
        self.credentials = credentials
        self.context_path = context_path.rstrip("/")
        self.base_url = base_url
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = super().get_request()
        if self.tls is not None:
            # The handshake runs in the connection's thread (`finish_request`), not here.
            connection = self.tls.wrap_socket(
                connection, server_side=True, do_handshake_on_connect=False
            )
        return connection, address

    def finish_request(self, request: Any, client_address: Any) -> None:
        if isinstance(request, ssl.SSLSocket):
            try:
                request.settimeout(5)
                request.do_handshake()
                request.settimeout(None)
            except OSError:  # e.g. no client certificate where one is required: refused
                return
        super().finish_request(request, client_address)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End idle keep-alive connections so that a stopped emulator answers nobody."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def server_bind(self) -> None:
        """Bind without `HTTPServer.server_bind`'s reverse DNS lookup (`getfqdn`), which can
        stall for seconds on machines without a resolver."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like Tomcat, so client pools are exercised
    disable_nagle_algorithm = True  # headers and body go out separately: avoid 40 ms stalls
    server: EmulatorHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the request log is the record, stderr noise only hides test output."""

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # --------------------------------------------------------------------------------------

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        prefix = self.server.context_path + API_ROOT
        inside = split.path.startswith(prefix + "/")
        path = split.path[len(prefix) :] if inside else split.path
        endpoint, job_id, known_path = route(method, path) if inside else ("unknown", None, False)
        body = _parse(raw)
        fault = self.server.faults.pick(method=method, path=path, endpoint=endpoint)

        def record(status: int | None) -> None:
            """Logged before the answer goes out, so a client never sees an unlogged reply."""
            self.server.log.append(
                RequestRecord(
                    method=method,
                    path=path,
                    query=split.query,
                    endpoint=endpoint,
                    job_id=job_id,
                    body=body,
                    status=status,
                    fault=fault.kind if fault else None,
                    at=datetime.now(UTC),
                )
            )

        if fault is not None and fault.kind is FaultKind.LATENCY:
            time.sleep(fault.delay_seconds)
        elif fault is not None and fault.kind is not FaultKind.RESPOND_LOST:
            record(_fault_status(fault))
            self._inject(fault)
            return
        if not self.server.credentials.accepts(self.headers.get("Authorization")):
            record(401)
            self._unauthorized()
            return
        if endpoint == "unknown":
            status = 405 if known_path else 404
            record(status)
            self._send_json(
                status,
                {
                    "timestamp": datetime.now(UTC).isoformat(),
                    "status": status,
                    "error": "Not Found" if status == 404 else "Method Not Allowed",
                    "path": split.path,
                },
            )
            return
        try:
            status, payload = self._dispatch(endpoint, job_id, raw, body, split.query)
        except ApiError as error:
            status, payload = error.status, error.body()
        except Exception as error:  # an emulator bug: answer like an engine failure, not a reset
            status = 500
            payload = {"message": "Internal server error", "exception": repr(error)}
        if fault is not None and fault.kind is FaultKind.RESPOND_LOST:
            record(None)  # the engine changed, the answer never arrives
            self._reset()
            return
        record(status)
        self._send_json(status, payload)

    def _dispatch(
        self, endpoint: str, job_id: str | None, raw: bytes, body: Any, query: str
    ) -> tuple[int, Any]:
        state = self.server.state
        api_url = self.server.base_url() + API_ROOT
        if endpoint == "listJobs":
            page = state.list_jobs(dict(parse_qsl(query, keep_blank_values=True)))
            return 200, {
                "data": [j.to_rest(api_url) for j in page.rows],
                "total": page.total,
                "start": page.start,
                "sort": page.sort,
                "order": page.order,
                "size": len(page.rows),
            }
        if endpoint == "getJob":
            assert job_id is not None
            return 200, state.get_job(job_id).to_rest(api_url)
        if not raw.strip():
            raise bad_request("Required request body is missing")
        if body is None and raw.strip() != b"null":
            raise bad_request("JSON parse error: request body is not valid JSON")
        if endpoint == "acquire":
            return 200, [
                dict(job.to_rest(api_url), variables=variables)
                for job, variables in state.acquire(body)
            ]
        if endpoint == "unacquireAll":
            state.unacquire_all(body)
            return 204, None
        assert job_id is not None
        operations: dict[str, Callable[[str, Any], None]] = {
            "complete": state.complete,
            "bpmnError": state.bpmn_error,
            "cmmnTerminate": state.cmmn_terminate,
            "fail": state.fail,
            "unacquire": state.unacquire,
        }
        operations[endpoint](job_id, body)
        return 204, None

    # -------------------------------------------------------------------------- answers

    def _send_json(self, status: int, payload: Any) -> None:
        data = b"" if status == 204 else json.dumps(payload).encode()
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def _unauthorized(self) -> None:
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="Realm"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _inject(self, fault: Fault) -> None:
        if fault.kind is FaultKind.CONNECTION_RESET:
            self._reset()
            return
        if fault.kind is FaultKind.UNAUTHORIZED:
            self._unauthorized()
            return
        data = _MALFORMED_JSON if fault.kind is FaultKind.MALFORMED_JSON else fault.body.encode()
        status = _fault_status(fault)
        assert status is not None
        self.send_response(status)
        self.send_header("Content-Type", fault.content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        with contextlib.suppress(OSError):  # a client may refuse a huge answer half-way
            self.wfile.write(data)

    def _reset(self) -> None:
        """Abort the TCP connection with an RST (SO_LINGER 0), sending no response at all."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()  # drop the makefile reference so close() really closes the fd
        self.connection.close()


def _fault_status(fault: Fault) -> int | None:
    """The status a client sees for a fault that answers instead of the engine."""
    if fault.kind in (FaultKind.CONNECTION_RESET, FaultKind.RESPOND_LOST):
        return None
    if fault.kind is FaultKind.UNAUTHORIZED:
        return 401
    if fault.kind is FaultKind.MALFORMED_JSON:
        return 200
    return fault.status


def _parse(raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


class ServerThread:
    """Runs an `EmulatorHTTPServer` and the periodic expired-lock reset in daemon threads."""

    def __init__(self, server: EmulatorHTTPServer, *, reset_interval_seconds: float | None):
        self._server = server
        self._reset_interval = reset_interval_seconds
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._threads.append(
            threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="flowable-emulator-http",
                daemon=True,
            )
        )
        if self._reset_interval is not None:
            self._threads.append(
                threading.Thread(
                    target=self._reset_loop, name="flowable-emulator-reset", daemon=True
                )
            )
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._server.close_connections()
        for thread in self._threads:
            thread.join(timeout=5)

    def _reset_loop(self) -> None:
        """The engine's reset-expired-jobs thread, every `reset_interval_seconds`."""
        assert self._reset_interval is not None
        while not self._stop.wait(self._reset_interval):
            self._server.state.reset_expired_locks()
