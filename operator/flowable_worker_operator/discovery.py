"""Topic discovery: which deployed model elements hand out external-worker jobs on a topic.

Flowable's `GET /jobs` can neither filter by topic nor show it: the topic lives only in the
process or case model. So this module reads the engine's deployed definitions through the process
API (`.../repository/process-definitions`) and the CMMN API (`.../cmmn-repository/
case-definitions`), fetches each definition's XML once, and finds its external-worker tasks:

- BPMN `<serviceTask flowable:type="external-worker" flowable:topic="T">`: its jobs carry
  `processDefinitionId` and `elementId` = the task's id;
- CMMN `<task flowable:type="external-worker" flowable:topic="T">`: its jobs carry
  `scopeDefinitionId` and `elementId` = the *task's* id, not the id of the `<planItem>` that uses
  it (verified on a real Flowable 7.2, pinned by tests/real/test_backlog_real.py).

A definition never changes once deployed, so its parsed tasks are cached per definition id for as
long as the definition is listed; the list itself is re-read at most once per interval, so new
deployments appear within one interval. Each topic's answer is worked out once and kept until the
set of definitions changes: a listing of the same ids (the usual one) keeps every answer. One
exception makes the usual order of work fast: a topic the listing does not know (a pool created
right after its model was deployed) re-lists at once if the listing is at least
`MISS_RELIST_SECONDS` old, once per topic until it is found, so a topic that stays unknown (a
typo) costs one extra listing, not one per tick.

Every deployed version of a model is a definition of its own, so a topic's uses grow with the
model's history. `find` therefore also says which element ids are *exclusive* to the topic: every
external-worker task with that id, in every definition known (both kinds, every tenant), has the
topic as a literal, and every model was readable. All external-worker jobs with such an
`elementId` are then the topic's, whichever definition they come from, so one count by element id
replaces one count per version (`backlog` decides whether to use it). A definition deployed after
the last listing is judged at the next one (within one interval): until then a new version on the
same topic is already counted, and a new model giving the id another topic is counted too, for at
most that interval.

What can't be answered statically is reported as a problem string, never guessed: a topic given as
an expression (`${...}`, `#{...}`) may evaluate to any topic, and an unparsable model may hide one.
A missing CMMN API (404: a process-only engine) is logged once and discovery goes on with processes
alone; a missing process API is an error, since it means a wrong `processApiPath`, and an empty
answer would read as "no backlog".

The XML is parsed with the standard library's `xml.etree`, not defusedxml: the documents come from
the engine the operator is configured to trust, the bundled expat (>= 2.4.1) already stops
entity-expansion bombs, ElementTree never fetches external entities, and documents declaring a
DOCTYPE (the only way to declare entities) are refused outright, since BPMN and CMMN models have
no use for one. That closes what defusedxml would, without another dependency.

This module only reads models; it never counts jobs (that is `backlog`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flowable_worker_operator import metrics
from flowable_worker_operator.responses import ResponseRefused, describe

log = logging.getLogger(__name__)

MISS_RELIST_SECONDS = 5.0
"""How old a listing must be before a topic it does not know re-lists at once. Measured: a pool
created right after its model's deployment reported `TopicNotFound` for up to 50 s, the rest of
the 60 s discovery interval; a listing a few seconds old has seen any deployment made before the
pool, so re-listing sooner would only repeat it."""

Scope = Literal["bpmn", "cmmn"]

BPMN_MODEL_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
CMMN_MODEL_NS = "http://www.omg.org/spec/CMMN/20151109/MODEL"
EXTERNAL_WORKER_TYPE = "external-worker"
_EXPRESSION_MARKERS = ("${", "#{")


class DiscoveryError(Exception):
    """The definitions or a model could not be read: discovery has no answer this time."""


# --------------------------------------------------------------------------------------------
# Parsing one model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExternalTask:
    """An external-worker task in a model: its element id and its topic as written.

    The topic is `""` when the model gives none: such a task hands out jobs no topic acquires, but
    its element id still hands out external-worker jobs, so it is kept (it bars collapsing).
    """

    element_id: str
    topic: str

    @property
    def topic_is_expression(self) -> bool:
        """True when the topic is only known at run time, so it may be any topic."""
        return any(marker in self.topic for marker in _EXPRESSION_MARKERS)


@dataclass(frozen=True)
class ParsedModel:
    """What one definition's model says: its external-worker tasks, or why it could not say."""

    tasks: tuple[ExternalTask, ...] = ()
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Grammar:
    """Where a model kind keeps its definitions and external-worker tasks."""

    container: str
    task: str
    extension_namespaces: tuple[str, ...]


_GRAMMARS: dict[Scope, _Grammar] = {
    # Flowable still reads attributes in the old Activiti namespace for BPMN.
    "bpmn": _Grammar(
        container=f"{{{BPMN_MODEL_NS}}}process",
        task=f"{{{BPMN_MODEL_NS}}}serviceTask",
        extension_namespaces=("http://flowable.org/bpmn", "http://activiti.org/bpmn"),
    ),
    "cmmn": _Grammar(
        container=f"{{{CMMN_MODEL_NS}}}case",
        task=f"{{{CMMN_MODEL_NS}}}task",
        extension_namespaces=("http://flowable.org/cmmn",),
    ),
}


def _extension_attribute(element: ElementTree.Element, name: str, grammar: _Grammar) -> str | None:
    for namespace in grammar.extension_namespaces:
        value = element.get(f"{{{namespace}}}{name}")
        if value is not None:
            return value
    return None


def parse_model(
    xml: bytes | str, *, scope: Scope, definition_key: str | None = None, source: str = "model"
) -> ParsedModel:
    """The external-worker tasks of one BPMN or CMMN document; never raises on bad input.

    A deployment resource may hold several `<process>` (or `<case>`) elements, each its own
    definition: with `definition_key`, only the element with that id counts. Tasks nested in
    sub-processes or stages are found too. Malformed XML, a DOCTYPE, or a missing definition
    element become a problem naming `source`, because one broken model must not stop the
    discovery of all the others.
    """
    data = xml.encode() if isinstance(xml, str) else xml
    if b"<!DOCTYPE" in data:
        return ParsedModel(problems=(f"{source}: refused, the XML declares a DOCTYPE",))
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as error:
        return ParsedModel(problems=(f"{source}: malformed XML ({error})",))
    grammar = _GRAMMARS[scope]
    containers = [
        element
        for element in root.iter(grammar.container)
        if definition_key is None or element.get("id") == definition_key
    ]
    if not containers:
        wanted = "any" if definition_key is None else f"id {definition_key!r}"
        tag = grammar.container.rpartition("}")[2]
        return ParsedModel(problems=(f"{source}: no <{tag}> with {wanted} in the model",))
    tasks: dict[ExternalTask, None] = {}  # ordered, de-duplicated
    for container in containers:
        for element in container.iter(grammar.task):
            if _extension_attribute(element, "type", grammar) != EXTERNAL_WORKER_TYPE:
                continue
            element_id = element.get("id")
            topic = _extension_attribute(element, "topic", grammar) or ""
            if element_id:
                tasks[ExternalTask(element_id=element_id, topic=topic.strip())] = None
    return ParsedModel(tasks=tuple(tasks))


# --------------------------------------------------------------------------------------------
# The engine's definitions
# --------------------------------------------------------------------------------------------


class _Row(BaseModel):
    """One definition of a listing. The lengths are Flowable's columns (ID_ 64, KEY_ and
    TENANT_ID_ 255, with room to spare): these values reach the pool's status, so a listing from
    something that is not Flowable must not put arbitrary text there."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str = Field(max_length=255)
    key: str = Field(max_length=255)
    tenantId: str | None = Field(default=None, max_length=255)  # Flowable's wire name
    version: int | None = None  # tells a pinned definition from its key's latest


class _RowPage(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    data: list[_Row]
    total: int


@dataclass(frozen=True)
class Definition:
    """A deployed process or case definition and what its model says."""

    scope: Scope
    id: str
    key: str
    tenant_id: str
    model: ParsedModel
    version: int | None = None

    def has_element(self, element_id: str) -> bool:
        """True when the model has an external-worker task with this id, or could not be read
        (an unreadable model may have one: better one count too many than a job missed)."""
        if self.model.problems:
            return True
        return any(task.element_id == element_id for task in self.model.tasks)


@dataclass(frozen=True)
class TopicUse:
    """One model element that creates jobs on the topic: count its jobs to count the topic's."""

    scope: Scope
    definition_id: str
    element_id: str


@dataclass(frozen=True)
class TopicMatch:
    """Discovery's answer for a topic: the elements using it, and what it could not resolve.

    `exclusive_elements`: the element ids of `uses` whose every external-worker task, in every
    definition known (BPMN and CMMN, all tenants), has this topic as a literal; empty as soon as
    any model could not be read (it might hold one of them on another topic). Every external-worker
    job with such an `elementId` belongs to the topic, in every version of every model, so it can
    be counted without a definition id.
    """

    uses: tuple[TopicUse, ...]
    problems: tuple[str, ...]
    exclusive_elements: frozenset[str] = frozenset()
    expression_elements: int = 0
    """External-worker tasks (one per definition and element) whose topic is an expression."""
    unreadable_definitions: int = 0
    """Definitions whose model could not be read."""
    definitions: int = 0
    """Definitions the answer was read from."""

    def unresolved_note(self) -> str | None:
        """One bounded sentence on what the engine holds whose topic can't be known statically,
        or None. It concerns every pool on the engine equally, so it is said once, in these
        words, never as one problem per definition (an engine with 220 versions of such a
        model would otherwise fill a status message past any limit)."""
        if not self.expression_elements and not self.unreadable_definitions:
            return None
        parts = []
        if self.expression_elements:
            parts.append(
                f"{self.expression_elements} external-worker element(s) whose topic is an "
                "expression"
            )
        if self.unreadable_definitions:
            parts.append(f"{self.unreadable_definitions} definition(s) whose model can't be read")
        example = f" (first: {self.problems[0]})" if self.problems else ""
        return bounded(
            f"this engine has {' and '.join(parts)}, so their jobs' topic can't be resolved "
            "statically and no discovered backlog counts them; a pool for their topic needs "
            f"backlog.selectors (by processDefinitionKey, for instance){example}"
        )


@dataclass(frozen=True)
class KeyMatch:
    """The definitions of one key (and tenant) that have an element, for a key selector.

    `exclusive`: every external-worker task with that element id, in every definition known,
    belongs to a definition of this key and kind, and every model was readable: the element's
    jobs can then be counted by element id (and tenant) alone, one pair of counts for every
    version, as discovery's exclusive elements are.
    """

    definition_ids: tuple[str, ...]
    exclusive: bool


MESSAGE_LIMIT = 1024
"""The most characters of one message the operator writes to a pool's status."""


def bounded(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """`text` cut to `limit` characters, saying it was cut."""
    return text if len(text) <= limit else f"{text[: limit - 15]}... (truncated)"


@dataclass(frozen=True)
class _Listing:
    scope: Scope
    path: str  # the definitions collection, relative to the engine's base URL
    optional: bool  # a 404 means "this engine has no such API", not a misconfiguration


def _api_path(path: str) -> str:
    stripped = path.strip("/")
    return f"/{stripped}" if stripped else ""


class TopicDiscovery:
    """Topic discovery for one engine, over an `httpx.AsyncClient` whose base URL is the engine's.

    `find(topic)` re-lists definitions when the last listing is older than `interval_seconds`
    (concurrent callers share one listing), fetches the XML of definitions it has not seen, and
    answers from the cache. A listing or fetch failure raises `DiscoveryError` and is retried on
    the next call: an answer built from a partial view could undercount, which is worse than none.
    """

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        process_api_path: str = "/process-api",
        cmmn_api_path: str = "/cmmn-api",
        interval_seconds: float = 60.0,
        page_size: int = 100,
        fetch_concurrency: int = 4,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if page_size < 1 or fetch_concurrency < 1:
            raise ValueError("page_size and fetch_concurrency must be at least 1")
        self._http = http
        self._listings = (
            _Listing(
                "bpmn",
                f"{_api_path(process_api_path)}/repository/process-definitions",
                optional=False,
            ),
            _Listing(
                "cmmn",
                f"{_api_path(cmmn_api_path)}/cmmn-repository/case-definitions",
                optional=True,
            ),
        )
        self._interval = interval_seconds
        self._page_size = page_size
        self._fetch_limit = asyncio.Semaphore(fetch_concurrency)
        self._clock = clock
        self._refresh_lock = asyncio.Lock()
        self._listed_at: float | None = None
        # Parsed models by definition id: kept while the definition is listed, never re-fetched.
        # After a successful refresh it holds exactly the listed definitions.
        self._cache: dict[str, Definition] = {}
        # Each topic's match, worked out once per content of the cache: a thousand pools ticking
        # every interval would otherwise walk every task of every model a thousand times (the
        # operator's largest CPU cost at 1000 pools before this), and a listing that brings
        # nothing new (the usual one) would redo every topic's walk (14 % of the CPU at 3000
        # pools). `_version` moves whenever `_cache` changes, `_listed_count` at every listing.
        self._version = 0
        self._listed_count = 0
        self._found: dict[str, TopicMatch] = {}
        self._found_version = -1
        # Topics still missing after a listing re-read for them: they wait for the regular
        # interval until found (then they leave, so a later miss may re-list early again).
        self._relisted_for: set[str] = set()
        self._missing_apis: set[Scope] = set()  # noted once in the log, asked again each time

    @property
    def definitions(self) -> tuple[Definition, ...]:
        """The definitions of the last listing, with their parsed models."""
        return tuple(self._cache.values())

    async def find(self, topic: str) -> TopicMatch:
        """The model elements whose external-worker tasks use `topic`, and the problems.

        Every expression topic and every unreadable model is a problem for every topic: any of
        them might hand out this topic's jobs, so the pool must be told to name its selectors.
        The match also names the uses' element ids that are exclusive to the topic (`TopicMatch`).
        """
        await self._refresh_if_due()
        found = self._matched(topic)
        if found.uses:
            self._relisted_for.discard(topic)
        elif topic not in self._relisted_for:
            before = self._listed_count
            await self._refresh_if_due(older_than=MISS_RELIST_SECONDS)
            # Listed again since the miss (whether or not the listing changed): the topic's one
            # early look.
            if self._listed_count != before:
                self._relisted_for.add(topic)
                found = self._matched(topic)
        return found

    def _matched(self, topic: str) -> TopicMatch:
        """`topic`'s match in the current definitions, worked out once until they change."""
        if self._found_version != self._version:
            self._found, self._found_version = {}, self._version
        found = self._found.get(topic)
        if found is None:
            found = self._found[topic] = self._match(topic)
        return found

    def _match(self, topic: str) -> TopicMatch:
        uses: list[TopicUse] = []
        problems: list[str] = []
        expressions = 0
        topics_by_element: dict[str, set[str]] = {}  # every topic written on an id, as written
        for definition in self._cache.values():
            problems.extend(definition.model.problems)
            for task in definition.model.tasks:
                topics_by_element.setdefault(task.element_id, set()).add(task.topic)
                if task.topic_is_expression:
                    expressions += 1
                    problems.append(
                        f"{definition.scope} definition {definition.id}: element "
                        f"{task.element_id[:255]!r} takes its topic from the expression "
                        f"{_excerpt(task.topic)!r}, "
                        "which can't be resolved statically; give explicit backlog selectors"
                    )
                elif task.topic == topic:
                    uses.append(TopicUse(definition.scope, definition.id, task.element_id))
        readable = not any(definition.model.problems for definition in self._cache.values())
        exclusive = frozenset(
            use.element_id
            for use in uses
            if readable and topics_by_element[use.element_id] == {topic}
        )
        return TopicMatch(
            uses=tuple(uses),
            problems=tuple(problems),
            exclusive_elements=exclusive,
            expression_elements=expressions,
            unreadable_definitions=sum(1 for d in self._cache.values() if d.model.problems),
            definitions=len(self._cache),
        )

    async def find_key(
        self, scope: Scope, key: str, element_id: str, tenant_id: str | None = None
    ) -> KeyMatch:
        """The definitions of `key` (every version; of `tenant_id` only, if given) that have
        `element_id`, for a selector naming a key: Flowable's `GET /jobs` filters by definition
        id, never by key, so the key is resolved here, at every listing (a new version is
        counted from the next listing on)."""
        await self._refresh_if_due()
        ids = tuple(
            d.id
            for d in self._cache.values()
            if d.scope == scope
            and d.key == key
            and (tenant_id is None or d.tenant_id == tenant_id)
            and d.has_element(element_id)
        )
        readable = not any(d.model.problems for d in self._cache.values())
        exclusive = readable and all(
            d.scope == scope and d.key == key
            for d in self._cache.values()
            if any(task.element_id == element_id for task in d.model.tasks)
        )
        return KeyMatch(definition_ids=ids, exclusive=bool(ids) and exclusive)

    async def newer_version(self, definition_id: str) -> Definition | None:
        """The latest definition of the same kind, key and tenant when it is newer than
        `definition_id`; None when that one is the latest, or is not listed."""
        await self._refresh_if_due()
        pinned = self._cache.get(definition_id)
        if pinned is None or pinned.version is None:
            return None
        newer = [
            d
            for d in self._cache.values()
            if (d.scope, d.key, d.tenant_id) == (pinned.scope, pinned.key, pinned.tenant_id)
            and d.version is not None
            and d.version > pinned.version
        ]
        return max(newer, key=lambda d: d.version or 0, default=None)

    def forget(self) -> None:
        """Drop the cache (its gauge share too); the next `find` lists and fetches afresh."""
        metrics.DISCOVERY_DEFINITIONS.dec(len(self._cache))
        self._cache = {}
        self._version += 1
        self._listed_at = None
        self._relisted_for.clear()

    async def _refresh_if_due(self, *, older_than: float | None = None) -> None:
        """List again if the last listing is older than the interval (or `older_than`); callers
        waiting on the lock meanwhile find it fresh and share it."""
        limit = self._interval if older_than is None else min(older_than, self._interval)
        async with self._refresh_lock:
            now = self._clock()
            if self._listed_at is not None and now - self._listed_at < limit:
                return
            self._listed_count += 1
            listed = [row for listing in self._listings for row in await self._list(listing)]
            loaded = await asyncio.gather(
                *(self._load(scope, row) for scope, row in listed if row.id not in self._cache),
                return_exceptions=True,
            )
            # Keep every model that did load, even when another failed: it never changes.
            for outcome in loaded:
                if isinstance(outcome, Definition):
                    self._cache[outcome.id] = outcome
                    self._version += 1
                    metrics.DISCOVERY_DEFINITIONS.inc()
            failures = [outcome for outcome in loaded if isinstance(outcome, BaseException)]
            if failures:
                raise failures[0]
            # A definition is known by its id: its model never changes once deployed, so the
            # same ids are the same definitions, and the matches worked out for them still hold.
            listed_ids = {row.id for _, row in listed}
            gone = [key for key in self._cache if key not in listed_ids]
            for key in gone:
                del self._cache[key]
            if gone:
                self._version += 1
                metrics.DISCOVERY_DEFINITIONS.dec(len(gone))
            self._listed_at = now

    async def _list(self, listing: _Listing) -> list[tuple[Scope, _Row]]:
        """Every definition of one kind, page by page (sorted by id, so pages don't overlap)."""
        rows: list[tuple[Scope, _Row]] = []
        start = 0
        while True:
            params: dict[str, str | int] = {
                "start": start,
                "size": self._page_size,
                "sort": "id",
                "order": "asc",
            }
            response = await self._get(listing.path, params=params)
            if response is None:  # the API is not there at all
                if not listing.optional:
                    raise DiscoveryError(
                        f"GET {listing.path} -> HTTP 404 Not Found: no process API there "
                        "(check processApiPath)"
                    )
                if listing.scope not in self._missing_apis:
                    self._missing_apis.add(listing.scope)
                    log.warning(
                        "no CMMN API at %s (404): discovering topics in process models only",
                        listing.path,
                    )
                return []
            page = self._page(listing.path, response)
            rows.extend((listing.scope, row) for row in page.data)
            start += len(page.data)
            if not page.data or start >= page.total:
                return rows

    async def _load(self, scope: Scope, row: _Row) -> Definition | None:
        """Fetch and parse one definition's model; None if it vanished since the listing."""
        listing = next(listing for listing in self._listings if listing.scope == scope)
        async with self._fetch_limit:
            response = await self._get(f"{listing.path}/{_quote(row.id)}/resourcedata")
        if response is None:
            return None
        source = f"{scope} definition {row.id}"
        model = parse_model(response.content, scope=scope, definition_key=row.key, source=source)
        return Definition(scope, row.id, row.key, row.tenantId or "", model, row.version)

    async def _get(
        self, path: str, *, params: dict[str, str | int] | None = None
    ) -> httpx.Response | None:
        """GET, None on 404; any other failure is a `DiscoveryError`.

        The error names the path and describes the failure in fixed words (`responses.describe`):
        the body goes to the debug log only, since the message reaches the pool's status.
        """
        try:
            with metrics.observe_probe_request("discovery"):
                response = await self._http.get(path, params=params)
                if response.status_code != 404:
                    response.raise_for_status()
        except httpx.HTTPStatusError as error:
            log.debug(
                "GET %s answered %s: %.300s", path, error.response.status_code, error.response.text
            )
            raise DiscoveryError(f"GET {path} -> {describe(error)}") from error
        except (httpx.HTTPError, ResponseRefused) as error:
            log.debug("GET %s failed: %s", path, error)
            raise DiscoveryError(f"GET {path}: {describe(error)}") from error
        return None if response.status_code == 404 else response

    @staticmethod
    def _page(path: str, response: httpx.Response) -> _RowPage:
        try:
            return _RowPage.model_validate_json(response.content)
        except ValidationError as error:
            log.debug("GET %s: not a page of definitions: %s", path, error)
            raise DiscoveryError(
                f"GET {path}: the answer is not a page of definitions (details in the "
                "operator's debug log)"
            ) from error


def _excerpt(text: str, limit: int = 100) -> str:
    """At most `limit` characters of a model's text for a status message."""
    return text if len(text) <= limit else f"{text[:limit]}..."


def _quote(definition_id: str) -> str:
    # Process definition ids hold colons (key:version:uuid); quote the id whole as a path segment.
    return quote(definition_id, safe="")
