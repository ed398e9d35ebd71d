"""`GET /jobs`: Flowable's external-worker job query, filters, sort and paging, over plain rows.

Parameters arrive as strings the way Spring binds them, so bad booleans or integers are a 400,
and an unknown sort property or order is Flowable's `PaginateListUtil` 400. `total` is exact and
`size` is the number of rows returned, which is what lets `?unlocked=true&size=1` count a backlog.
Pure: takes rows and parameters, returns a page.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .errors import bad_request
from .model import Job

_TRUE = {"true", "on", "yes", "1"}
_FALSE = {"false", "off", "no", "0", ""}

# Query parameter -> the job attribute it compares for equality.
_EQUALS: dict[str, str] = {
    "id": "id",
    "processInstanceId": "process_instance_id",
    "executionId": "execution_id",
    "processDefinitionId": "process_definition_id",
    "scopeId": "scope_id",
    "subScopeId": "sub_scope_id",
    "scopeDefinitionId": "scope_definition_id",
    "scopeType": "scope_type",
    "elementId": "element_id",
    "elementName": "element_name",
    "exceptionMessage": "exception_message",
    "tenantId": "tenant_id",
}

# Boolean parameter -> the condition a row must meet when it is true (false means "no filter").
_FLAGS: dict[str, Callable[[Job], bool]] = {
    "withoutProcessInstanceId": lambda j: j.process_instance_id is None,
    "withoutScopeId": lambda j: j.scope_id is None,
    "withoutScopeType": lambda j: j.scope_type is None,
    "withException": lambda j: j.exception_message is not None or j.exception_details is not None,
    "withoutTenantId": lambda j: not j.tenant_id,
    "locked": lambda j: j.lock_expiration_time is not None,
    "unlocked": lambda j: j.lock_expiration_time is None,
}

# Sort property -> key of the row (Flowable's ExternalWorkerJobCollectionResource.PROPERTIES).
_SORTS: dict[str, Callable[[Job], Any]] = {
    "id": lambda j: j.id,
    "dueDate": lambda j: j.due_date,
    "createTime": lambda j: j.create_time,
    "executionId": lambda j: j.execution_id,
    "processInstanceId": lambda j: j.process_instance_id,
    "retries": lambda j: j.retries,
    "tenantId": lambda j: j.tenant_id,
}


@dataclass(frozen=True)
class Page:
    rows: list[Job]
    total: int
    start: int
    sort: str
    order: str


def _flag(params: Mapping[str, str], name: str) -> bool:
    raw = params.get(name)
    if raw is None:
        return False
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise bad_request(
        f"Failed to convert value of type 'java.lang.String' to required type "
        f"'boolean'; Invalid boolean value [{raw}]"
    )


def _int(params: Mapping[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(
            f"Failed to convert value of type 'java.lang.String' to required type "
            f"'java.lang.Integer'; For input string: \"{raw}\""
        ) from None
    return value if value >= 0 else default


def like(pattern: str) -> re.Pattern[str]:
    """SQL LIKE (`%` any run, `_` one character, case-sensitive as on H2) as a regex."""
    parts = (".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.DOTALL)


def _sort_key(key: Callable[[Job], Any]) -> Callable[[Job], tuple[Any, ...]]:
    """Nulls sort first ascending (H2's default), ties broken by id for a stable page order."""

    def composite(job: Job) -> tuple[Any, ...]:
        value = key(job)
        if isinstance(value, datetime):
            value = value.timestamp()
        return (value is not None, value if value is not None else 0, job.id)

    return composite


def _equals(attribute: str, wanted: str) -> Callable[[Job], bool]:
    return lambda job: bool(getattr(job, attribute) == wanted)


def select(jobs: Iterable[Job], params: Mapping[str, str]) -> Page:
    """Filter, sort and page `jobs` as `GET /jobs` would with these query parameters."""
    start = _int(params, "start", 0)
    size = _int(params, "size", 10)
    sort = params.get("sort") or "id"
    order = params.get("order") or "asc"
    if sort not in _SORTS:
        raise bad_request(f"Value for param 'sort' is not valid, '{sort}' is not a valid property")
    if order not in ("asc", "desc"):
        raise bad_request(
            f"Value for param 'order' is not valid : '{order}', must be 'asc' or 'desc'"
        )
    checks: list[Callable[[Job], bool]] = []
    for param, attribute in _EQUALS.items():
        wanted = params.get(param)
        if wanted is not None:
            checks.append(_equals(attribute, wanted))
    for param, condition in _FLAGS.items():
        if _flag(params, param):
            checks.append(condition)
    tenant_like = params.get("tenantIdLike")
    if tenant_like is not None:
        regex = like(tenant_like)
        checks.append(lambda j: regex.fullmatch(j.tenant_id or "") is not None)
    matching = [j for j in jobs if all(check(j) for check in checks)]
    matching.sort(key=_sort_key(_SORTS[sort]), reverse=order == "desc")
    return Page(
        rows=matching[start : start + size],
        total=len(matching),
        start=start,
        sort=sort,
        order=order,
    )
