"""The emulated engine: job store and external-worker semantics, with no HTTP in it.

Every public method is one REST operation (taking the parsed JSON body) or one test-side action,
and runs under a single lock, so the threaded HTTP server and the test thread see one consistent
engine. Semantics follow Flowable 7.2 (`ExternalWorkerAcquireJobResource`,
`AcquireExternalWorkerJobsCmd`, `ExternalWorkerJobFailCmd`): validation order and messages,
owner-only completion, expired locks that stay completable until a reset runs, retries and the
dead-letter table, `retryTimeout` locks without an owner. Time comes from an injected clock so
tests can move it instead of sleeping.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from . import variables as var
from .errors import bad_request, job_not_found, lock_not_held
from .isotime import parse_duration, truncate_to_millis
from .model import Completion, Instance, Job, Kind, Outcome
from .query import Page, select

Clock = Callable[[], datetime]

# AbstractJobEntityImpl abbreviates exception messages to this many characters.
MAX_EXCEPTION_MESSAGE_LENGTH = 255


def system_clock() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    """Flowable's Spring Boot default id generator makes UUIDs."""
    return str(uuid.uuid4())


def _abbreviate(text: str | None) -> str | None:
    """commons-lang `StringUtils.abbreviate(text, 255)`."""
    if text is None or len(text) <= MAX_EXCEPTION_MESSAGE_LENGTH:
        return text
    return text[: MAX_EXCEPTION_MESSAGE_LENGTH - 3] + "..."


def _body(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request("Request body is missing or is not a JSON object")
    return body


def _string(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool | dict | list):
        raise bad_request(f"Cannot deserialize value of type `java.lang.String` for '{name}'")
    return str(value)


def _integer(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise bad_request(f"Cannot deserialize value of type `int` for '{name}'")
    try:
        return int(value)
    except ValueError:
        raise bad_request(f'Cannot deserialize value of type `int` from String "{value}"') from None


def _duration(body: Mapping[str, Any], name: str) -> timedelta | None:
    """Jackson reads a Duration from an ISO-8601 string, or a number of seconds."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool):
        raise bad_request(f"Cannot deserialize value of type `java.time.Duration` for '{name}'")
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    if not isinstance(value, str):
        raise bad_request(f"Cannot deserialize value of type `java.time.Duration` for '{name}'")
    try:
        return parse_duration(value)
    except ValueError as error:
        raise bad_request(
            f'Cannot deserialize value of type `java.time.Duration` from String "{value}": {error}'
        ) from None


def _required_worker(body: Mapping[str, Any], message: str = "workerId is required") -> str:
    worker = _string(body, "workerId")
    if not worker:
        raise bad_request(message)
    return worker


class EngineState:
    """All jobs, dead letters, instances and completions of one emulated Flowable."""

    def __init__(self, *, clock: Clock = system_clock) -> None:
        self._clock = clock
        self._lock = threading.RLock()
        self._jobs: dict[str, Job] = {}
        self._dead_letters: dict[str, Job] = {}
        self._instances: dict[str, Instance] = {}
        self._completions: list[Completion] = []
        self._definitions: dict[tuple[Kind, str], str] = {}

    def now(self) -> datetime:
        return truncate_to_millis(self._clock())

    # ----------------------------------------------------------------- test-side set-up

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
        """Start a one-task instance whose only activity is an external-worker task on `topic`.

        Ids look like Flowable's: one definition per (kind, topic) such as
        `proc_<topic>:1:<uuid>` (the real backend deploys one model per topic), and fresh ids for
        the instance, its execution or plan item, the job and its correlation id.
        """
        stored = var.normalize_variables(variables)
        with self._lock:
            if definition_id is None:
                key = (scope_type, topic)
                if key not in self._definitions:
                    prefix = "proc" if scope_type == "bpmn" else "case"
                    self._definitions[key] = f"{prefix}_{topic}:1:{_new_id()}"
                definition_id = self._definitions[key]
            instance_id = _new_id()
            job = Job(
                id=_new_id(),
                correlation_id=_new_id(),
                kind=scope_type,
                topic=topic,
                instance_id=instance_id,
                element_id=element_id,
                element_name=element_name,
                create_time=self.now(),
                tenant_id=tenant_id or "",
                exclusive=exclusive,
            )
            if scope_type == "bpmn":
                job.process_instance_id = instance_id
                job.process_definition_id = definition_id
                job.execution_id = _new_id()
            else:
                job.scope_id = instance_id
                job.sub_scope_id = _new_id()
                job.scope_definition_id = definition_id
                job.scope_type = "cmmn"
            self._jobs[job.id] = job
            self._instances[instance_id] = Instance(
                id=instance_id,
                kind=scope_type,
                definition_id=definition_id,
                element_id=element_id,
                topic=topic,
                tenant_id=tenant_id,
                job_id=job.id,
                variables=stored,
            )
            return job.copy()

    # ----------------------------------------------------------------- REST operations

    def acquire(self, body: Any) -> list[tuple[Job, list[dict[str, Any]]]]:
        """`POST /acquire/jobs`: lock up to `numberOfTasks` unlocked jobs of the topic."""
        request = _body(body)
        lock_duration = _duration(request, "lockDuration")
        number_of_tasks = _integer(request, "numberOfTasks")
        number_of_retries = _integer(request, "numberOfRetries")
        topic = _string(request, "topic")
        if not topic:
            raise bad_request("topic is required")
        if lock_duration is None:
            raise bad_request("lockDuration is required")
        scope_type = _string(request, "scopeType")
        worker = _required_worker(request)
        wanted = 1 if number_of_tasks is None else number_of_tasks
        if wanted < 1:
            raise bad_request("requested number of jobs must not be smaller than 1")
        if number_of_retries is not None and number_of_retries <= 0:
            return []  # acquireAndLock never tries and returns an empty list
        lock_millis = int(abs(lock_duration) / timedelta(milliseconds=1))
        with self._lock:
            now = self.now()
            expiry = now + timedelta(milliseconds=lock_millis)
            candidates = [
                job
                for job in self._jobs.values()
                if job.topic == topic
                and job.lock_expiration_time is None
                and _scope_matches(job, scope_type)
            ][:wanted]
            # Flowable locks an exclusive BPMN job's process instance while acquiring it; if a
            # candidate's instance is still locked, the whole acquire transaction fails and the
            # REST answer is an empty list, even for the other, free candidates.
            if any(self._scope_locked(job, now) for job in candidates):
                return []
            acquired: list[tuple[Job, list[dict[str, Any]]]] = []
            for job in candidates:
                job.lock_owner = worker
                job.lock_expiration_time = expiry
                instance = self._instances[job.instance_id]
                if _locks_scope(job):
                    instance.scope_lock_expiration_time = expiry
                acquired.append((job.copy(), var.as_list(instance.variables)))
            return acquired

    def complete(self, job_id: str, body: Any) -> None:
        """`POST /acquire/jobs/{id}/complete` (BPMN and CMMN)."""
        self._finish(job_id, body, "complete")

    def bpmn_error(self, job_id: str, body: Any) -> None:
        """`POST /acquire/jobs/{id}/bpmnError`: BPMN jobs only."""
        self._finish(job_id, body, "bpmnError")

    def cmmn_terminate(self, job_id: str, body: Any) -> None:
        """`POST /acquire/jobs/{id}/cmmnTerminate`: CMMN jobs only."""
        self._finish(job_id, body, "cmmnTerminate")

    def fail(self, job_id: str, body: Any) -> None:
        """`POST /acquire/jobs/{id}/fail`: retry later, or dead-letter when retries run out."""
        request = _body(body)
        worker = _required_worker(request)
        message = _string(request, "errorMessage")
        details = _string(request, "errorDetails")
        retries = _integer(request, "retries")
        retry_timeout = _duration(request, "retryTimeout")
        with self._lock:
            job = self._owned(job_id, worker)
            self._instances[job.instance_id].scope_lock_expiration_time = None
            job.exception_message = _abbreviate(message)
            job.exception_details = details
            new_retries = retries if retries is not None and retries >= 0 else job.retries - 1
            if new_retries > 0:
                job.retries = new_retries
                job.lock_owner = None
                job.lock_expiration_time = (
                    None
                    if retry_timeout is None
                    else self.now()
                    + timedelta(milliseconds=retry_timeout // timedelta(milliseconds=1))
                )
            else:
                del self._jobs[job_id]
                job.lock_owner = None
                job.lock_expiration_time = None
                self._dead_letters[job_id] = job

    def unacquire_all(self, body: Any) -> None:
        """`POST /unacquire/jobs`: release every lock the worker holds (optionally per tenant)."""
        request = _body(body)
        worker = _required_worker(request, "worker id is required")
        tenant = _string(request, "tenantId")
        with self._lock:
            owned = [job for job in self._jobs.values() if job.lock_owner == worker]
            if tenant and any(job.tenant_id != tenant for job in owned):
                raise bad_request(
                    "provided worker id has external worker jobs from different tenant."
                )
            for job in owned:
                job.lock_owner = None
                job.lock_expiration_time = None

    def unacquire(self, job_id: str, body: Any) -> None:
        """`POST /unacquire/jobs/{id}`: release one lock the worker holds."""
        request = _body(body)
        worker = _required_worker(request, "worker id is required")
        with self._lock:
            job = self._owned(job_id, worker)
            job.lock_owner = None
            job.lock_expiration_time = None

    def list_jobs(self, params: Mapping[str, str]) -> Page:
        """`GET /jobs` (dead letters are in another table and never listed)."""
        with self._lock:
            return select([j.copy() for j in self._jobs.values()], params)

    def get_job(self, job_id: str) -> Job:
        """`GET /jobs/{id}`."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise job_not_found(job_id)
            return job.copy()

    # ----------------------------------------------------------------- engine background work

    def reset_expired_locks(self) -> int:
        """What the engine's reset-expired-jobs thread does: unlock every expired lock.

        Covers both abandoned worker locks and elapsed `retryTimeout` waits. Returns how many
        jobs it released.
        """
        with self._lock:
            now = self.now()
            released = 0
            for job in self._jobs.values():
                if job.lock_expiration_time is not None and job.lock_expiration_time < now:
                    job.lock_owner = None
                    job.lock_expiration_time = None
                    released += 1
            return released

    # ----------------------------------------------------------------- inspection

    def jobs(self) -> list[Job]:
        with self._lock:
            return [j.copy() for j in self._jobs.values()]

    def dead_letter_jobs(self) -> list[Job]:
        with self._lock:
            return [j.copy() for j in self._dead_letters.values()]

    def instances(self) -> list[Instance]:
        with self._lock:
            return [i.copy() for i in self._instances.values()]

    def instance(self, instance_id: str) -> Instance:
        with self._lock:
            return self._instances[instance_id].copy()

    def completions(self, *, instance_id: str | None = None) -> list[Completion]:
        with self._lock:
            return [
                c for c in self._completions if instance_id is None or c.instance_id == instance_id
            ]

    # ----------------------------------------------------------------- internals

    def _scope_locked(self, job: Job, now: datetime) -> bool:
        """Whether acquiring `job` would fail on its process instance's exclusive lock."""
        if not _locks_scope(job):
            return False
        until = self._instances[job.instance_id].scope_lock_expiration_time
        return until is not None and until > now

    def _owned(self, job_id: str, worker: str) -> Job:
        """The job, if it exists (404) and `worker` is its lock owner (403); lock held."""
        job = self._jobs.get(job_id)
        if job is None:
            raise job_not_found(job_id)
        if job.lock_owner != worker:
            raise lock_not_held(worker)
        return job

    def _finish(self, job_id: str, body: Any, outcome: Outcome) -> None:
        request = _body(body)
        worker = _required_worker(request)
        with self._lock:
            job = self._owned(job_id, worker)
            if outcome == "bpmnError" and job.process_instance_id is None:
                raise bad_request(
                    f"Can only complete BPMN external job with a BPMN error. Job with id "
                    f"'{job_id}' is from scope '{job.scope_type}'"
                )
            if outcome == "cmmnTerminate" and job.scope_type != "cmmn":
                raise bad_request(
                    f"Can only terminate CMMN external job. Job with id '{job_id}' is from "
                    f"scope '{job.scope_type}'"
                )
            given = var.as_list(var.normalize_variables(request.get("variables")))
            error_code = _string(request, "errorCode") if outcome == "bpmnError" else None
            del self._jobs[job_id]
            instance = self._instances[job.instance_id]
            var.merge(instance.variables, given)
            instance.finished = True
            instance.outcome = outcome
            self._completions.append(
                Completion(
                    job_id=job_id,
                    instance_id=instance.id,
                    outcome=outcome,
                    worker_id=worker,
                    variables=tuple(given),
                    error_code=error_code,
                    at=self.now(),
                )
            )


def _locks_scope(job: Job) -> bool:
    """Exclusive BPMN jobs lock their process instance (CMMN jobs were not seen to)."""
    return job.exclusive and job.process_instance_id is not None


def _scope_matches(job: Job, scope_type: str | None) -> bool:
    """Acquire's optional scope filter: `bpmn` means jobs without a scope type."""
    if scope_type is None:
        return True
    if scope_type == "bpmn":
        return job.scope_type is None
    return job.scope_type == scope_type
