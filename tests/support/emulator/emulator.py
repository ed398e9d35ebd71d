"""`FlowableEmulator`: the test-facing handle on one in-process emulated Flowable.

Starts a real HTTP server on 127.0.0.1 (a free port) in background threads, so sync tests,
asyncio tests and subprocesses can all talk to it, and exposes the engine for set-up and
inspection: create jobs, look at jobs, dead letters, instances, completions and the request log,
inject faults, run the expired-lock reset. Use it as a context manager or call start()/stop().
"""

from __future__ import annotations

import ssl
from collections import Counter
from types import TracebackType
from typing import Any

from .faults import Fault, FaultInjector, FaultKind
from .model import Completion, Instance, Job, Kind
from .requestlog import RequestLog, RequestRecord
from .server import API_ROOT, Credentials, EmulatorHTTPServer, ServerThread
from .state import Clock, EngineState, system_clock


class FlowableEmulator:
    """An emulated Flowable 7.2 external-worker REST API.

    `context_path` mimics where the API is mounted ("" for the Spring Boot app,
    "/flowable-rest" for the flowable-rest web app). `username`/`password` (or `token`) turn on
    authentication. `reset_interval_seconds` is the engine's expired-lock reset period (None: only
    when `reset_expired_locks()` is called). `clock` replaces the wall clock for lock arithmetic;
    `seed` makes probabilistic faults repeatable. `tls` serves HTTPS with that server context (a
    context that requires client certificates emulates a Flowable behind mutual TLS).
    """

    def __init__(
        self,
        *,
        context_path: str = "",
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        reset_interval_seconds: float | None = 1.0,
        clock: Clock = system_clock,
        seed: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.state = EngineState(clock=clock)
        self.faults = FaultInjector(seed=seed)
        self.log = RequestLog()
        self._context_path = context_path.rstrip("/")
        self._credentials = Credentials(username=username, password=password, token=token)
        self._reset_interval = reset_interval_seconds
        self._tls = tls
        self._server: EmulatorHTTPServer | None = None
        self._runner: ServerThread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FlowableEmulator:
        if self._server is not None:
            return self
        self._server = EmulatorHTTPServer(
            ("127.0.0.1", 0),
            state=self.state,
            faults=self.faults,
            log=self.log,
            credentials=self._credentials,
            context_path=self._context_path,
            base_url=lambda: self.base_url,
            tls=self._tls,
        )
        self._runner = ServerThread(self._server, reset_interval_seconds=self._reset_interval)
        self._runner.start()
        return self

    def stop(self) -> None:
        if self._runner is not None:
            self._runner.stop()
        self._server = None
        self._runner = None

    def __enter__(self) -> FlowableEmulator:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FlowableEmulator is not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """Server root plus context path; the API is at `base_url + "/external-job-api"`."""
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}{self._context_path}"

    @property
    def api_url(self) -> str:
        return self.base_url + API_ROOT

    # ------------------------------------------------------------------ set-up

    def create_job(
        self,
        topic: str,
        *,
        element_id: str = "externalTask",
        element_name: str | None = None,
        scope_type: Kind = "bpmn",
        tenant_id: str | None = None,
        variables: list[dict[str, Any]] | None = None,
        definition_id: str | None = None,
        exclusive: bool = True,
    ) -> Job:
        """A new acquirable job in its own one-task instance; `variables` are typed REST dicts.

        `exclusive` is the task's `flowable:exclusive` (default true, as in Flowable)."""
        return self.state.create_job(
            topic,
            element_id=element_id,
            element_name=element_name,
            scope_type=scope_type,
            tenant_id=tenant_id,
            variables=variables,
            definition_id=definition_id,
            exclusive=exclusive,
        )

    def reset_expired_locks(self) -> int:
        """Run the engine's expired-lock reset now; returns how many jobs it unlocked."""
        return self.state.reset_expired_locks()

    # ------------------------------------------------------------------ faults

    def inject(self, fault: Fault) -> Fault:
        """Add a fault rule; the returned object's `hits` counts how often it fired."""
        return self.faults.add(fault)

    def inject_fault(self, kind: FaultKind, **options: Any) -> Fault:
        """Shorthand: `inject_fault(FaultKind.SERVER_ERROR, endpoint="complete", times=1)`."""
        return self.faults.add(Fault(kind, **options))

    def clear_faults(self) -> None:
        self.faults.clear()

    # ------------------------------------------------------------------ inspection

    def jobs(self) -> list[Job]:
        return self.state.jobs()

    def job(self, job_id: str) -> Job | None:
        return next((j for j in self.state.jobs() if j.id == job_id), None)

    def dead_letter_jobs(self) -> list[Job]:
        return self.state.dead_letter_jobs()

    def instances(self) -> list[Instance]:
        return self.state.instances()

    def instance(self, instance_id: str) -> Instance:
        return self.state.instance(instance_id)

    def completions(self, *, instance_id: str | None = None) -> list[Completion]:
        return self.state.completions(instance_id=instance_id)

    def requests(self, *, endpoint: str | None = None) -> list[RequestRecord]:
        return self.log.records(endpoint=endpoint)

    def request_counts(self) -> Counter[str]:
        """Requests per endpoint name ("acquire", "complete", "listJobs", ...)."""
        return self.log.counts()
