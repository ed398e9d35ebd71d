"""The filters of `GET /jobs`, named in snake_case after Flowable's query parameters.

One table maps every filter to its REST name, so `list_jobs` and `count_jobs` share it instead of
repeating twenty keyword arguments. Flag filters (`locked`, `unlocked`, `with_exception`,
`without_*`) only ever narrow the query: Flowable applies them when they are `true` and ignores
`false`, so the client sends them only when true and `False` means "no filter".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypedDict


class JobFilters(TypedDict, total=False):
    """Keyword filters accepted by `FlowableClient.list_jobs` and `count_jobs`; None = no filter."""

    id: str | None
    process_instance_id: str | None
    without_process_instance_id: bool | None
    execution_id: str | None
    process_definition_id: str | None
    scope_id: str | None
    without_scope_id: bool | None
    sub_scope_id: str | None
    scope_definition_id: str | None
    scope_type: str | None
    element_id: str | None
    element_name: str | None
    with_exception: bool | None
    exception_message: str | None
    tenant_id: str | None
    tenant_id_like: str | None
    without_tenant_id: bool | None
    locked: bool | None
    unlocked: bool | None
    without_scope_type: bool | None


REST_NAMES: dict[str, str] = {
    "id": "id",
    "process_instance_id": "processInstanceId",
    "without_process_instance_id": "withoutProcessInstanceId",
    "execution_id": "executionId",
    "process_definition_id": "processDefinitionId",
    "scope_id": "scopeId",
    "without_scope_id": "withoutScopeId",
    "sub_scope_id": "subScopeId",
    "scope_definition_id": "scopeDefinitionId",
    "scope_type": "scopeType",
    "element_id": "elementId",
    "element_name": "elementName",
    "with_exception": "withException",
    "exception_message": "exceptionMessage",
    "tenant_id": "tenantId",
    "tenant_id_like": "tenantIdLike",
    "without_tenant_id": "withoutTenantId",
    "locked": "locked",
    "unlocked": "unlocked",
    "without_scope_type": "withoutScopeType",
}

def filter_params(filters: Mapping[str, object]) -> dict[str, str]:
    """Query parameters for the given filters; unknown names fail here, not as a silent no-op."""
    params: dict[str, str] = {}
    for name, value in filters.items():
        rest_name = REST_NAMES.get(name)
        if rest_name is None:
            raise TypeError(f"unknown job filter {name!r}; known: {', '.join(REST_NAMES)}")
        if value is None or value is False:
            continue
        params[rest_name] = "true" if value is True else str(value)
    return params


def paging_params(
    *, start: int | None, size: int | None, sort: str | None, order: str | None
) -> dict[str, str]:
    """Paging parameters; values go out unchecked, Flowable answers a bad one with a 400."""
    given = {"start": start, "size": size, "sort": sort, "order": order}
    return {name: str(value) for name, value in given.items() if value is not None}
