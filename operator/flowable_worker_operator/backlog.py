"""Backlog probes: how many external-worker jobs of a pool's topic wait, and how many are in flight.

Flowable can't count jobs by topic, so a pool's backlog is the sum over its *selectors*: model
elements (a definition id plus an element id, optionally a tenant) whose jobs belong to the topic.
The pool names them, or `discovery` finds them in the deployed models. Each selector costs two
exact, cheap queries (`size=1`, read `total`): `unlocked=true` (acquirable) and `locked=true`
(acquired, in flight).

Each deployed version of a model is a definition of its own, so per-definition selectors would
grow with the model's history (50 versions: 100 counts per probe). A discovered element id that is
exclusive to the topic (every external-worker task with that id, in every definition discovery
knows, has the topic as a literal, and every model was readable) becomes one selector without a
definition id, `Selector(element_id)`, counting every version at once; the others stay per
definition. The counts are exact either way. `BacklogProber(collapse_elements=False)` keeps every
selector per definition (the benchmark's "before").

One `BacklogProber` serves the whole operator process, because pools share engines: it keeps one
`FlowableClient` (external-job API) and one `httpx.AsyncClient` (process and CMMN APIs) per
`Engine`, and answers identical questions (same engine, selector and lock state) asked within
`max_age` seconds with one request (`shared_answers`): concurrent askers await the same request in
flight, later ones reuse its answer. A whole question (engine, topic, selectors) is shared the same
way, so that of the pools asking it together one discovers and counts, and the others wait for
its result. The pools asking one question tick in the same instant (their
ticks keep to a phase of the interval shared by the topic: `shared_answers.phase_delay`), so a
hundred pools on one engine polling every 15 s cost the engine one query per distinct question per
interval, not one per pool, while every answer stays at most `max_age` old.

A probe that can't measure raises `ProbeError`, whatever went wrong (an HTTP error, the network, a
malformed answer, unreadable definitions). It never answers zero instead: the scaling core must see
"unknown" (and fall back), not "idle" (and scale to zero while jobs wait). Its message never quotes
the engine's answer (`responses.describe`), and no answer is read beyond
`responses.MAX_RESPONSE_BYTES`: the engine's URL is the pool author's choice, the message ends up
in status and Events.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Literal

import httpx

from flowable_worker import ClientSettings, FlowableClient, FlowableError, JobFilters
from flowable_worker_operator import metrics
from flowable_worker_operator.discovery import (
    DiscoveryError,
    Scope,
    TopicDiscovery,
    TopicMatch,
    TopicUse,
    bounded,
)
from flowable_worker_operator.engine_transport import engine_transport
from flowable_worker_operator.engines import Engine
from flowable_worker_operator.responses import ResponseRefused, bounded_transport, describe
from flowable_worker_operator.scaling import Backlog
from flowable_worker_operator.shared_answers import SharedAnswers

__all__ = [
    "Backlog",
    "BacklogProber",
    "InFlight",
    "LockState",
    "Note",
    "ProbeError",
    "ProbeResult",
    "Selector",
]

log = logging.getLogger(__name__)

LockState = Literal["unlocked", "locked"]
"""The two halves of a backlog: acquirable jobs, and jobs a worker holds."""

_LOCK_STATES: tuple[LockState, ...] = ("unlocked", "locked")


class ProbeError(Exception):
    """The backlog could not be measured; the message says what failed, for status and Events
    (never in the engine's words: see `responses`)."""


@dataclass(frozen=True)
class Selector:
    """Jobs of one model element: at most one of a process or case definition id, plus the element.

    With neither definition id the selector means the element in *every* definition (BPMN and CMMN,
    every version, every tenant): only discovery makes such selectors, for element ids exclusive to
    the topic (`TopicMatch.exclusive_elements`); a pool's explicit `backlog.selectors` still need
    exactly one definition id (`spec.SelectorSpec` checks that).

    `tenant_id` narrows the count to that tenant (`""` = jobs without a tenant, as Flowable stores
    them); None applies no tenant filter, which is right when the definition id already pins one.

    A selector naming a definition *key* (`process_definition_key`, `case_definition_key`: every
    version) is not counted as such: Flowable's `GET /jobs` has no key filter, so the prober
    resolves it through discovery into selectors by definition id (`BacklogProber.backlog`).
    """

    element_id: str
    process_definition_id: str | None = None
    scope_definition_id: str | None = None
    tenant_id: str | None = None
    process_definition_key: str | None = None
    case_definition_key: str | None = None

    def __post_init__(self) -> None:
        if not self.element_id:
            raise ValueError("a selector needs an element_id")
        named = (
            self.process_definition_id,
            self.scope_definition_id,
            self.process_definition_key,
            self.case_definition_key,
        )
        if sum(value is not None for value in named) > 1:
            raise ValueError(
                "a selector names at most one of process_definition_id (BPMN), "
                "scope_definition_id (CMMN), process_definition_key and case_definition_key"
            )

    @property
    def key(self) -> tuple[Scope, str] | None:
        """The kind and definition key this selector names, if it names one."""
        if self.process_definition_key is not None:
            return "bpmn", self.process_definition_key
        if self.case_definition_key is not None:
            return "cmmn", self.case_definition_key
        return None

    @property
    def pinned_definition(self) -> str | None:
        """The one definition id this selector names, if it names one."""
        return self.process_definition_id or self.scope_definition_id

    @property
    def every_definition(self) -> bool:
        """True when the selector names no definition: the element in every definition."""
        return self.pinned_definition is None and self.key is None

    @classmethod
    def for_use(cls, use: TopicUse) -> Selector:
        """The selector counting the jobs of a discovered model element."""
        if use.scope == "bpmn":
            return cls(element_id=use.element_id, process_definition_id=use.definition_id)
        return cls(element_id=use.element_id, scope_definition_id=use.definition_id)

    def filters(self, state: LockState) -> JobFilters:
        """The `GET /jobs` filters for this selector's jobs in one lock state.

        BPMN jobs are matched by `processDefinitionId`, CMMN jobs by `scopeDefinitionId`, never by
        `scopeType`: a real Flowable leaves `scopeType` null on BPMN jobs. A selector of every
        definition filters on `elementId` alone, so BPMN and CMMN jobs of that id both count.
        """
        if self.key is not None:
            raise ValueError(f"{self} names a key: resolve it to definition ids first")
        return JobFilters(
            element_id=self.element_id,
            process_definition_id=self.process_definition_id,
            scope_definition_id=self.scope_definition_id,
            tenant_id=self.tenant_id,
            unlocked=state == "unlocked",
            locked=state == "locked",
        )

    def __str__(self) -> str:
        if self.process_definition_id is not None:
            definition = f"process definition {self.process_definition_id}"
        elif self.scope_definition_id is not None:
            definition = f"case definition {self.scope_definition_id}"
        elif self.key is not None:
            kind = "process" if self.key[0] == "bpmn" else "case"
            definition = f"every version of {kind} definition key {self.key[1]!r}"
        else:
            definition = "every definition"
        tenant = "" if self.tenant_id is None else f", tenant {self.tenant_id!r}"
        return f"element {self.element_id!r} of {definition}{tenant}"


@dataclass(frozen=True)
class Note:
    """Something a pool's owner should know that does not stop the pool: a CamelCase reason
    (the Warning Event's) and a bounded sentence. `key` names what the note is about when the
    sentence changes while the subject does not (a count of unresolved elements grows with each
    deployment): the pool is warned once per key, not once per sentence."""

    reason: str
    message: str
    key: str | None = None


@dataclass(frozen=True)
class ProbeResult:
    """One measurement: the backlog, the selectors it summed, and what the pool should be told.

    `problems`: why this pool's count can't be trusted (its topic is on no literal task, but the
    engine has expression topics or unreadable models that may hand it out): Ready=False. Each
    is bounded (`discovery.bounded`), and there are few: never one per definition.
    `topic_found`: False when nothing was found to count (discovery found no element on the
    topic, or no key selector matched a deployed definition): the count of zero means "not
    looked for", not "idle", and the pool holds (`reconcile`).
    `notes`: what does not stop the pool but its owner should know, e.g. the engine's elements
    whose topic is an expression (one bounded sentence), or a pinned definition that is no
    longer the latest version and has no jobs.
    """

    backlog: Backlog
    selectors: tuple[Selector, ...]
    problems: tuple[str, ...] = ()
    topic_found: bool = True
    notes: tuple[Note, ...] = ()


@dataclass(frozen=True)
class InFlight:
    """The jobs workers hold: how many each `workerId` (a pod name) holds, and when the newest of
    them was created (the engine's clock; None when none is held)."""

    owners: Mapping[str, int]
    newest_created: datetime | None


# --------------------------------------------------------------------------------------------
# The prober
# --------------------------------------------------------------------------------------------


def _repository_http(
    settings: ClientSettings, transport: httpx.AsyncBaseTransport | None
) -> httpx.AsyncClient:
    """A client for the process and CMMN APIs with the same auth, TLS and timeouts as the
    external-job API's: they are the same server and the same credentials. Its reads are
    bounded (`responses.bounded_transport`), like the job client's."""
    auth, headers = settings.http_auth()
    headers["Accept"] = "application/json, text/xml, application/xml"
    return httpx.AsyncClient(
        base_url=settings.base_url,
        auth=auth,
        headers=headers,
        timeout=httpx.Timeout(settings.timeout_seconds, connect=settings.connect_timeout_seconds),
        transport=bounded_transport(settings, _wire(settings, transport)),
    )


def _wire(
    settings: ClientSettings, transport: httpx.AsyncBaseTransport | None
) -> httpx.AsyncBaseTransport | None:
    """The transport under the bounded one: the given one (tests), else `engine_transport`'s
    lean one (None when a proxy applies: `bounded_transport` then makes httpx's own)."""
    return transport if transport is not None else engine_transport(settings)


@dataclass
class _Connection:
    """Everything the prober holds for one engine."""

    client: FlowableClient
    http: httpx.AsyncClient
    discovery: TopicDiscovery
    limit: asyncio.Semaphore


def _unique(selectors: Iterable[Selector]) -> tuple[Selector, ...]:
    return tuple(dict.fromkeys(selectors))


def _discovered(match: TopicMatch, *, collapse: bool) -> tuple[Selector, ...]:
    """The selectors for discovery's answer: one per exclusive element id (every definition at
    once) when `collapse`, one per definition for the rest; in the order of first use."""
    return _unique(
        Selector(use.element_id)
        if collapse and use.element_id in match.exclusive_elements
        else Selector.for_use(use)
        for use in match.uses
    )


class BacklogProber:
    """Measures pools' backlogs; one per operator process, shared by every pool.

    `max_age`: how old (seconds since it arrived) an answer may be and still be given to another
    pool asking the same question. `max_concurrency`: requests in flight per engine, so a burst of
    pools can't flood one Flowable. `discovery_interval`: how often discovery re-lists definitions.
    `collapse_elements`: count a discovered element id exclusive to the topic with one selector
    for every definition (the default) instead of one per definition (False: the cost grows with
    every deployed version; kept for measuring). `transport` replaces the network for every engine
    (tests pass `httpx.MockTransport`), `clock` the monotonic clock that ages answers and listings.
    """

    def __init__(
        self,
        *,
        max_age: float = 1.0,
        max_concurrency: int = 8,
        discovery_interval: float = 60.0,
        lock_owners_page_size: int = 500,
        collapse_elements: bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_concurrency < 1 or lock_owners_page_size < 1:
            raise ValueError("max_concurrency and lock_owners_page_size must be at least 1")
        self._max_concurrency = max_concurrency
        self._discovery_interval = discovery_interval
        self._page_size = lock_owners_page_size
        self._collapse = collapse_elements
        self._transport = transport
        self._clock = clock
        self._connections: dict[Engine, _Connection] = {}
        self._answers: SharedAnswers[tuple[Engine, Selector, LockState], int] = SharedAnswers(
            max_age=max_age, clock=clock, on_shared=metrics.SHARED_ANSWERS.inc
        )
        self._questions: SharedAnswers[tuple[Engine, str, tuple[Selector, ...]], ProbeResult] = (
            SharedAnswers(max_age=max_age, clock=clock)
        )
        self._closed = False

    async def backlog(
        self, engine: Engine, topic: str, selectors: Sequence[Selector] | None = None
    ) -> ProbeResult:
        """Unlocked and locked jobs of `topic` on `engine`, summed over the selectors.

        `selectors` None or empty: discover them from the deployed models (the resource's
        `backlog.selectors: []` means the same; an empty explicit list would only ever read
        zero, which is never what a pool means). Raises `ProbeError`; never answers a guess.

        Pools asking the same question (engine, topic, selectors) within `max_age` share one
        whole measurement, not only its counts: the pools of a topic tick in the same instant,
        and the others then skip the discovery look-up and the per-selector bookkeeping too.
        `flowable_pool_shared_answers_total` still counts each of their count questions.
        """
        measured = False

        async def measure() -> ProbeResult:
            nonlocal measured
            measured = True
            return await self._measure(engine, topic, selectors)

        question = (engine, topic, tuple(selectors or ()))
        result = await self._questions.get(question, measure)
        if not measured:
            metrics.SHARED_ANSWERS.inc(len(_LOCK_STATES) * len(result.selectors))
        return result

    async def _measure(
        self, engine: Engine, topic: str, selectors: Sequence[Selector] | None
    ) -> ProbeResult:
        """`backlog`'s answer, measured (each count still shared with other questions')."""
        connection = self._connection(engine)
        problems: tuple[str, ...] = ()
        notes: list[Note] = []
        if selectors:
            chosen = await self._resolved(connection, _unique(selectors), notes)
            found = bool(chosen)
        else:
            try:
                match = await connection.discovery.find(topic)
            except DiscoveryError as error:
                raise ProbeError(f"topic discovery failed: {error}") from error
            chosen = _discovered(match, collapse=self._collapse)
            found = bool(match.uses)
            note = match.unresolved_note()
            if note is not None and found:
                notes.append(Note("UnresolvedTopics", note, key="engine"))
            elif note is not None:
                problems = (
                    bounded(f"no deployed model names topic {topic[:255]!r} literally, but {note}"),
                )
        counts = await asyncio.gather(
            *(
                self._answers.get(
                    (engine, selector, state), partial(self._count, connection, selector, state)
                )
                for selector in chosen
                for state in _LOCK_STATES
            )
        )
        if selectors:
            notes.extend(await self._stale_pins(connection, chosen, counts))
        return ProbeResult(
            backlog=Backlog(unlocked=sum(counts[0::2]), locked=sum(counts[1::2])),
            selectors=chosen,
            problems=problems,
            topic_found=found,
            notes=tuple(notes),
        )

    async def _resolved(
        self, connection: _Connection, selectors: Sequence[Selector], notes: list[Note]
    ) -> tuple[Selector, ...]:
        """Explicit selectors with every key replaced by what it means now: one selector by
        element id (and tenant) when the element is the key's alone, else one per definition
        of the key that has the element. A key that matches no definition adds a note."""
        resolved: list[Selector] = []
        for selector in selectors:
            named = selector.key
            if named is None:
                resolved.append(selector)
                continue
            scope, key = named
            try:
                match = await connection.discovery.find_key(
                    scope, key, selector.element_id, selector.tenant_id
                )
            except DiscoveryError as error:
                raise ProbeError(f"resolving {selector}: {error}") from error
            if not match.definition_ids:
                notes.append(
                    Note("SelectorNotFound", bounded(f"{selector} matches no deployed definition"))
                )
            elif match.exclusive and self._collapse:
                resolved.append(Selector(selector.element_id, tenant_id=selector.tenant_id))
            else:
                field = "process_definition_id" if scope == "bpmn" else "scope_definition_id"
                resolved.extend(
                    Selector(
                        selector.element_id, tenant_id=selector.tenant_id, **{field: definition}
                    )
                    for definition in match.definition_ids
                )
        return _unique(resolved)

    async def _stale_pins(
        self, connection: _Connection, chosen: Sequence[Selector], counts: Sequence[int]
    ) -> list[Note]:
        """A note per pinned definition that a newer version of its key replaced and that has
        no jobs left: new instances start on the new version, whose jobs such a selector
        never counts. Best effort: a listing that fails only skips the check (the counts
        themselves did not need it)."""
        notes: list[Note] = []
        for index, selector in enumerate(chosen):
            pinned = selector.pinned_definition
            if pinned is None or counts[2 * index] or counts[2 * index + 1]:
                continue
            try:
                newer = await connection.discovery.newer_version(pinned)
            except DiscoveryError as error:
                log.debug("no check for a newer version of %s: %s", pinned, error)
                return notes
            if newer is not None:
                notes.append(
                    Note(
                        "StaleSelector",
                        bounded(
                            f"{selector} has no jobs and is no longer the latest version of "
                            f"{newer.key!r} (version {newer.version} is: {newer.id}); new "
                            "instances' jobs are not counted: select by processDefinitionKey / "
                            "caseDefinitionKey to count every version"
                        ),
                    )
                )
        return notes

    async def in_flight(self, engine: Engine, selectors: Sequence[Selector]) -> InFlight:
        """How many of the selectors' jobs each worker holds (its `workerId`: the pod name), and
        when the newest job held was created.

        Lists `locked=true` jobs page by page; jobs locked without an owner (waiting out a
        `retryTimeout`) are left out of the owners. The operator uses it to release the replicas
        that hold no job once work stops arriving, and to mark busy pods with a higher
        `pod-deletion-cost` before any scale-down. Not shared: it is asked only for pools with jobs
        in flight and none waiting, and must be fresh.
        """
        connection = self._connection(engine)
        per_selector = await asyncio.gather(
            *(self._owners(connection, selector) for selector in _unique(selectors))
        )
        total: Counter[str] = Counter()
        created = [newest for _, newest in per_selector if newest is not None]
        for owners, _ in per_selector:
            total.update(owners)
        return InFlight(owners=dict(total), newest_created=max(created, default=None))

    async def oldest_waiting(
        self, engine: Engine, selectors: Sequence[Selector]
    ) -> datetime | None:
        """When the longest-waiting of the selectors' unlocked jobs was created (None: none waits).

        One `size=1` request per selector, sorted by `createTime`. The operator asks only for a
        small queue (at most `jobsPerReplica` waiting), so the engine sorts a handful of rows; and
        not shared, since it is rare and its answer ages by the second.
        """
        connection = self._connection(engine)
        oldest = await asyncio.gather(
            *(_oldest_unlocked(connection, selector) for selector in _unique(selectors))
        )
        return min((created for created in oldest if created is not None), default=None)

    async def aclose(self) -> None:
        """Cancel requests in flight and close every connection; the prober is unusable after."""
        self._closed = True
        self._questions.cancel_all()
        self._answers.cancel_all()
        connections, self._connections = list(self._connections.values()), {}
        for connection in connections:
            connection.discovery.forget()
            await connection.client.aclose()
            await connection.http.aclose()

    # -- plumbing -------------------------------------------------------------------------

    def _connection(self, engine: Engine) -> _Connection:
        if self._closed:
            raise RuntimeError("the BacklogProber is closed")
        connection = self._connections.get(engine)
        if connection is None:
            http = _repository_http(engine.client, self._transport)
            connection = _Connection(
                client=FlowableClient(
                    engine.client,
                    transport=bounded_transport(
                        engine.client, _wire(engine.client, self._transport)
                    ),
                ),
                http=http,
                discovery=TopicDiscovery(
                    http=http,
                    process_api_path=engine.process_api_path,
                    cmmn_api_path=engine.cmmn_api_path,
                    interval_seconds=self._discovery_interval,
                    clock=self._clock,
                ),
                limit=asyncio.Semaphore(self._max_concurrency),
            )
            self._connections[engine] = connection
        return connection

    @staticmethod
    async def _count(connection: _Connection, selector: Selector, state: LockState) -> int:
        async with connection.limit:
            try:
                with metrics.observe_probe_request("count"):
                    return await connection.client.count_jobs(**selector.filters(state))
            except (FlowableError, httpx.HTTPError, ResponseRefused) as error:
                raise _probe_error(f"counting {state} jobs of {selector}", error) from error

    async def _owners(
        self, connection: _Connection, selector: Selector
    ) -> tuple[Counter[str], datetime | None]:
        owners: Counter[str] = Counter()
        newest: datetime | None = None
        start = 0
        while True:
            async with connection.limit:
                try:
                    with metrics.observe_probe_request("lock_owners"):
                        page = await connection.client.list_jobs(
                            start=start,
                            size=self._page_size,
                            sort="id",
                            order="asc",
                            **selector.filters("locked"),
                        )
                except (FlowableError, httpx.HTTPError, ResponseRefused) as error:
                    raise _probe_error(f"listing locked jobs of {selector}", error) from error
            owners.update(job.lock_owner for job in page.data if job.lock_owner)
            created = [job.create_time for job in page.data if job.create_time is not None]
            newest = max([*created, newest] if newest is not None else created, default=None)
            start += len(page.data)
            if not page.data or start >= page.total:
                return owners, newest


async def _oldest_unlocked(connection: _Connection, selector: Selector) -> datetime | None:
    async with connection.limit:
        try:
            with metrics.observe_probe_request("oldest_waiting"):
                page = await connection.client.list_jobs(
                    size=1, sort="createTime", order="asc", **selector.filters("unlocked")
                )
        except (FlowableError, httpx.HTTPError, ResponseRefused) as error:
            raise _probe_error(f"finding the oldest unlocked job of {selector}", error) from error
    return page.data[0].create_time if page.data else None


def _probe_error(what: str, error: BaseException) -> ProbeError:
    """`what` failed: the fixed description for status, the engine's own words for the debug log."""
    log.debug("%s failed: %s", what, error)
    return ProbeError(f"{what}: {describe(error)}")
