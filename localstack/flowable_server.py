"""The real Flowable 7.2 test server of `localstack/flowable-server`: build, start, set up, stop.

Two layers, each usable on its own:

- `FlowableServer` runs the Spring Boot jar from `localstack/flowable-server` (built and cached by
  its `build.sh`) as a child process on a free 127.0.0.1 port, waits until its REST APIs answer,
  and stops it (SIGTERM, then SIGKILL, to the whole process group) however its user ends.
  `start_flowable_server()` returns one already started; it is also a context manager.
- `FlowableRestApi` wraps the parts of the process and CMMN REST APIs (`/process-api`,
  `/cmmn-api`) that tests, the demo and the benchmarks use to set up work and check outcomes:
  deploy models, start instances, read history and dead letters. The API under test,
  `/external-job-api`, is deliberately not here: callers reach it through
  `flowable_worker.FlowableClient` (or raw httpx).

It lives here, beside the server it launches, because the demo (`localstack/demo.py`), the
benchmarks (`bench/`) and the tests all start the same server; the tests' own adapter to the
contract suite, `RealFlowable`, is in `tests/support/real_flowable.py` and builds on this module
(never the other way round).

This module never skips anything: a missing Java or Maven is an error with a message that says what
to install, because a suite that quietly skips its real-server half proves nothing. Known
differences between the real server and Flowable's REST API documentation are listed in
docs/flowable-server.md ("Where the real server surprised").
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import httpx

SERVER_PROJECT = Path(__file__).resolve().parent / "flowable-server"
BUILD_SCRIPT = SERVER_PROJECT / "build.sh"

JAR_ENV = "FLOWABLE_SERVER_JAR"
"""Path of a ready-built server jar; skips the Maven build (e.g. a jar built on another machine)."""

INSTALL_HINT = (
    "install a Java 17 JDK and Apache Maven 3.8+ (Debian/Ubuntu: "
    "apt-get install openjdk-17-jdk-headless maven); the real Flowable test server needs both"
)

FAST_START_JVM_OPTIONS: tuple[str, ...] = (
    "-XX:TieredStopAtLevel=1",  # C1 only: ~30% faster start-up, plenty fast for tests
    "-XX:+UseSerialGC",  # no GC threads to spin up on a 2-core machine
    "-Xmx1g",  # a good neighbour: the default is a quarter of the machine's memory
)
"""JVM flags that cut the server's start-up from ~14 s to ~9 s on 2 cores (measured; see
docs/flowable-server.md). Benchmarks that care about steady-state throughput should pass
`jvm_options=()` to get the JIT's full optimisation."""

Json = dict[str, Any]

ScopeType = Literal["bpmn", "cmmn"]
"""Which of Flowable's engines a model, instance or job belongs to: BPMN processes or CMMN cases."""


class FlowableServerError(RuntimeError):
    """The real Flowable server could not be built, started or asked something."""


# --------------------------------------------------------------------------------------------
# The server process
# --------------------------------------------------------------------------------------------


def find_server_jar(*, build_timeout: float = 1200.0) -> Path:
    """The server jar: `$FLOWABLE_SERVER_JAR` if set, else whatever `build.sh` builds or reuses.

    `build.sh` does nothing when the jar for the current sources is already cached, so calling
    this on every test session costs a few milliseconds after the first build.
    """
    override = os.environ.get(JAR_ENV)
    if override:
        jar = Path(override).expanduser()
        if not jar.is_file():
            raise FlowableServerError(f"{JAR_ENV}={override} does not name a file")
        return jar
    if shutil.which("java") is None:
        raise FlowableServerError(f"java not found: {INSTALL_HINT}")
    try:
        built = subprocess.run(
            ["bash", str(BUILD_SCRIPT)],
            capture_output=True,
            text=True,
            timeout=build_timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise FlowableServerError(
            f"building the Flowable test server took over {build_timeout:.0f}s"
        ) from exc
    if built.returncode != 0:
        raise FlowableServerError(
            f"{BUILD_SCRIPT} failed (exit {built.returncode}):\n{built.stderr.strip()}"
        )
    lines = built.stdout.strip().splitlines()
    jar = Path(lines[-1]) if lines else Path()
    if not jar.is_file():
        raise FlowableServerError(f"{BUILD_SCRIPT} printed no jar path:\n{built.stdout}")
    return jar


def _free_port() -> int:
    """A port that was free a moment ago; `FlowableServer.start` retries if it is taken since."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _millis(seconds: float) -> str:
    """A Spring Boot `Duration` property value."""
    return f"{round(seconds * 1000)}ms"


class FlowableServer:
    """One real Flowable server process, listening on 127.0.0.1 only (it has no authentication).

    Start-up takes ~9 s on 2 cores (schema creation for the BPMN, CMMN and event registry
    engines dominates), so share one server per test session and give each test its own topic.
    The engine's database is in memory: a restart is a clean engine.
    """

    def __init__(
        self,
        *,
        jar: Path | None = None,
        port: int | None = None,
        reset_expired_jobs_interval: float = 1.0,
        jvm_options: Sequence[str] = FAST_START_JVM_OPTIONS,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 180.0,
        stop_timeout: float = 15.0,
        keep_log: bool = False,
    ) -> None:
        """Configure, don't start. `reset_expired_jobs_interval` (s) sets how often the engine
        clears expired external-worker locks: the real default is 60 s, far too slow for tests
        that wait for a lock to expire. `extra_args` are passed to Spring Boot (`--name=value`)."""
        self._jar = jar
        self._requested_port = port
        self.reset_expired_jobs_interval = reset_expired_jobs_interval
        self._jvm_options = tuple(jvm_options)
        self._extra_args = tuple(extra_args)
        self._startup_timeout = startup_timeout
        self._stop_timeout = stop_timeout
        self._keep_log = keep_log
        self._process: subprocess.Popen[bytes] | None = None
        self._log_dir: Path | None = None
        self.port = 0
        self.startup_seconds = 0.0

    @property
    def base_url(self) -> str:
        """Server root, e.g. `http://127.0.0.1:PORT`; the APIs are `/process-api`,
        `/cmmn-api` and `/external-job-api` under it."""
        if not self.running:
            raise FlowableServerError("the Flowable server is not running")
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (benchmarks read its CPU time from /proc)."""
        return self._process.pid if self.running and self._process is not None else None

    @property
    def log_path(self) -> Path | None:
        """The server's stdout+stderr, for a look when something went wrong."""
        return None if self._log_dir is None else self._log_dir / "flowable-server.log"

    def log_tail(self, lines: int = 60) -> str:
        path = self.log_path
        if path is None or not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def command(self, jar: Path, port: int) -> list[str]:
        """The exact command line; public so a failing start can be reproduced by hand."""
        java = shutil.which("java")
        if java is None:
            raise FlowableServerError(f"java not found: {INSTALL_HINT}")
        interval = _millis(self.reset_expired_jobs_interval)
        return [
            java,
            *self._jvm_options,
            "-jar",
            str(jar),
            f"--server.port={port}",
            "--server.address=127.0.0.1",
            # External-worker jobs live in the shared job tables; both engines' reset threads
            # scan them, so both intervals are set (docs/flowable-server.md).
            f"--flowable.process.async.executor.reset-expired-jobs-interval={interval}",
            f"--flowable.cmmn.async.executor.reset-expired-jobs-interval={interval}",
            *self._extra_args,
        ]

    def start(self) -> Self:
        """Build the jar if needed, start the server and return once its REST APIs answer."""
        if self.running:
            return self
        if shutil.which("java") is None:
            raise FlowableServerError(f"java not found: {INSTALL_HINT}")
        jar = self._jar or find_server_jar()
        attempts = 1 if self._requested_port else 3
        for attempt in range(attempts):
            port = self._requested_port or _free_port()
            if self._launch(jar, port):
                return self
            in_use = "already in use" in self.log_tail(200)
            if not in_use or attempt == attempts - 1:
                break
        tail = self.log_tail()
        log = self.log_path
        self.stop()
        raise FlowableServerError(
            f"the Flowable server did not start (log {log}); last lines:\n{tail}"
        )

    def _launch(self, jar: Path, port: int) -> bool:
        """One start attempt; False if the process died (its log says why)."""
        self.stop()
        self._log_dir = Path(tempfile.mkdtemp(prefix="flowable-server-"))
        assert self.log_path is not None
        started = time.monotonic()
        with self.log_path.open("wb") as log:
            # A new session makes the JVM a process-group leader, so stop() can signal the group.
            self._process = subprocess.Popen(
                self.command(jar, port),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self._log_dir,
            )
        self.port = port
        atexit.register(self.stop)
        deadline = started + self._startup_timeout
        probe = f"http://127.0.0.1:{port}/process-api/management/engine"
        with httpx.Client(timeout=5.0) as http:
            while time.monotonic() < deadline:
                if not self.running:
                    return False
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(probe).status_code == 200:
                        self.startup_seconds = time.monotonic() - started
                        return True
                time.sleep(0.2)
        raise FlowableServerError(
            f"the Flowable server did not answer within {self._startup_timeout:.0f}s "
            f"(log {self.log_path}); last lines:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """SIGTERM to the server's process group, SIGKILL after `stop_timeout`. Idempotent."""
        process, self._process = self._process, None
        atexit.unregister(self.stop)
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=self._stop_timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        if self._log_dir is not None and not self._keep_log:
            shutil.rmtree(self._log_dir, ignore_errors=True)
            self._log_dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def start_flowable_server(
    *,
    reset_expired_jobs_interval: float = 1.0,
    jvm_options: Sequence[str] = FAST_START_JVM_OPTIONS,
    extra_args: Sequence[str] = (),
) -> FlowableServer:
    """A started server, for a session fixture. Use it as a context manager or call `stop()`:

    @pytest.fixture(scope="session")
    def flowable_server() -> Iterator[FlowableServer]:
        with start_flowable_server() as server:
            yield server
    """
    return FlowableServer(
        reset_expired_jobs_interval=reset_expired_jobs_interval,
        jvm_options=jvm_options,
        extra_args=extra_args,
    ).start()


# --------------------------------------------------------------------------------------------
# The process and CMMN REST APIs (set-up and inspection)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeployedModel:
    """A deployed one-definition model: what starting instances of it needs."""

    deployment_id: str
    definition_id: str  # processDefinitionId or caseDefinitionId
    definition_key: str
    scope_type: ScopeType
    tenant_id: str | None = None


def check_response(response: httpx.Response) -> httpx.Response:
    """Raise with Flowable's own error body, which says far more than the status line."""
    if response.is_success:
        return response
    request = response.request
    raise FlowableServerError(
        f"{request.method} {request.url} -> {response.status_code}: {response.text[:2000]}"
    )


class FlowableRestApi:
    """Set-up and inspection calls to a Flowable Spring Boot app's `/process-api` and `/cmmn-api`.

    Wraps an `httpx.AsyncClient` that the caller owns (`connect()` makes one), so a burst of calls
    shares connections. Variables go in and come out in Flowable's REST form
    (`{"name", "type", "value"}`); converting Python values is the caller's business, so this
    class stays independent of any one conversion.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        process_api: str = "/process-api",
        cmmn_api: str = "/cmmn-api",
    ) -> None:
        self._http = http
        self._process_api = process_api
        self._cmmn_api = cmmn_api

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, base_url: str, *, http_timeout: float = 30.0) -> AsyncIterator[Self]:
        """An API over a fresh client for `base_url` (the server root)."""
        async with httpx.AsyncClient(base_url=base_url, timeout=http_timeout) as http:
            yield cls(http)

    async def _get(self, path: str, **params: str | int) -> Json:
        found: Json = check_response(await self._http.get(path, params=params)).json()
        return found

    async def _get_optional(self, path: str) -> Json | None:
        response = await self._http.get(path)
        if response.status_code == 404:
            return None
        found: Json = check_response(response).json()
        return found

    async def _post(self, path: str, body: Json) -> Json:
        found: Json = check_response(await self._http.post(path, json=body)).json()
        return found

    # -- deployments ---------------------------------------------------------------------

    async def deploy(
        self,
        xml: str,
        *,
        scope_type: ScopeType,
        resource_name: str | None = None,
        tenant_id: str | None = None,
    ) -> DeployedModel:
        """Deploy one BPMN (`bpmn`) or CMMN (`cmmn`) model holding exactly one definition.

        The resource name's suffix is what makes Flowable parse the file (`.bpmn20.xml`/`.bpmn`,
        `.cmmn`/`.cmmn.xml`); anything else deploys silently with no definition in it.
        """
        if scope_type == "bpmn":
            path = f"{self._process_api}/repository/deployments"
            name = resource_name or "model.bpmn20.xml"
        else:
            path = f"{self._cmmn_api}/cmmn-repository/deployments"
            name = resource_name or "model.cmmn.xml"
        data = {"tenantId": tenant_id} if tenant_id else {}
        response = await self._http.post(
            path, files={"file": (name, xml.encode(), "text/xml")}, data=data
        )
        deployment: Json = check_response(response).json()
        definitions = await self.definitions(deployment["id"], scope_type=scope_type)
        if len(definitions) != 1:
            raise FlowableServerError(
                f"deployment {deployment['id']} holds {len(definitions)} definitions, expected 1"
            )
        definition = definitions[0]
        return DeployedModel(
            deployment_id=deployment["id"],
            definition_id=definition["id"],
            definition_key=definition["key"],
            scope_type=scope_type,
            tenant_id=tenant_id,
        )

    async def definitions(self, deployment_id: str, *, scope_type: ScopeType) -> list[Json]:
        """Process or case definitions in one deployment."""
        if scope_type == "bpmn":
            path = f"{self._process_api}/repository/process-definitions"
        else:
            path = f"{self._cmmn_api}/cmmn-repository/case-definitions"
        page = await self._get(path, deploymentId=deployment_id, size=100)
        found: list[Json] = page["data"]
        return found

    # -- instances -----------------------------------------------------------------------

    async def start_process_instance(
        self,
        *,
        definition_id: str | None = None,
        definition_key: str | None = None,
        variables: Sequence[Mapping[str, Any]] = (),
        tenant_id: str | None = None,
        business_key: str | None = None,
    ) -> Json:
        """Start one process instance; returns Flowable's instance JSON (`id`, ...)."""
        body = _start_body(
            "processDefinition", definition_id, definition_key, variables, tenant_id, business_key
        )
        return await self._post(f"{self._process_api}/runtime/process-instances", body)

    async def start_case_instance(
        self,
        *,
        definition_id: str | None = None,
        definition_key: str | None = None,
        variables: Sequence[Mapping[str, Any]] = (),
        tenant_id: str | None = None,
        business_key: str | None = None,
    ) -> Json:
        """Start one case instance; returns Flowable's instance JSON (`id`, ...)."""
        body = _start_body(
            "caseDefinition", definition_id, definition_key, variables, tenant_id, business_key
        )
        return await self._post(f"{self._cmmn_api}/cmmn-runtime/case-instances", body)

    # -- history -------------------------------------------------------------------------

    async def historic_process_instance(self, instance_id: str) -> Json | None:
        """The history row of a process instance (`endTime` is set once it ended), or None."""
        return await self._get_optional(
            f"{self._process_api}/history/historic-process-instances/{instance_id}"
        )

    async def historic_case_instance(self, instance_id: str) -> Json | None:
        """The history row of a case instance (`endTime` is set once it ended), or None."""
        return await self._get_optional(
            f"{self._cmmn_api}/cmmn-history/historic-case-instances/{instance_id}"
        )

    async def historic_variables(self, instance_id: str, *, scope_type: ScopeType) -> list[Json]:
        """An instance's variables from history, in REST form (`name`, `type`, `value`).

        History, not runtime: once the instance has ended its runtime variables are gone, and
        "what did the worker write" is asked exactly then.
        """
        if scope_type == "bpmn":
            path = f"{self._process_api}/history/historic-variable-instances"
            page = await self._get(path, processInstanceId=instance_id, size=1000)
        else:
            path = f"{self._cmmn_api}/cmmn-history/historic-variable-instances"
            page = await self._get(path, caseInstanceId=instance_id, size=1000)
        return [
            {key: item["variable"].get(key) for key in ("name", "type", "value")}
            for item in page["data"]
        ]

    # -- jobs ----------------------------------------------------------------------------

    async def dead_letter_jobs(self, instance_id: str, *, scope_type: ScopeType) -> list[Json]:
        """Dead-letter jobs of one process or case instance (external-worker jobs land here
        when a worker fails them with no retries left)."""
        if scope_type == "bpmn":
            path = f"{self._process_api}/management/deadletter-jobs"
            page = await self._get(path, processInstanceId=instance_id, size=1000)
        else:
            path = f"{self._cmmn_api}/cmmn-management/deadletter-jobs"
            page = await self._get(path, caseInstanceId=instance_id, size=1000)
        found: list[Json] = page["data"]
        return found

    async def external_worker_jobs(self, **params: str | int) -> Json:
        """One page of `GET /external-job-api/jobs` (raw): for inspection, not the tests' path."""
        return await self._get("/external-job-api/jobs", **params)


def _start_body(
    prefix: str,
    definition_id: str | None,
    definition_key: str | None,
    variables: Sequence[Mapping[str, Any]],
    tenant_id: str | None,
    business_key: str | None,
) -> Json:
    if (definition_id is None) == (definition_key is None):
        raise ValueError("give exactly one of definition_id and definition_key")
    body: Json = {"variables": [dict(v) for v in variables]}
    if definition_id is not None:
        body[f"{prefix}Id"] = definition_id
    else:
        body[f"{prefix}Key"] = definition_key
    if tenant_id:
        body["tenantId"] = tenant_id
    if business_key is not None:
        body["businessKey"] = business_key
    return body
