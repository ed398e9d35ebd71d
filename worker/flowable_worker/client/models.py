"""What Flowable's external-worker API answers, as typed models.

Attributes are snake_case, the wire is camelCase (aliases). Unknown fields are ignored, so a newer
server that adds fields doesn't break an older worker; dates become aware UTC datetimes whatever
ISO spelling the server uses.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from flowable_worker.client.instants import parse_instant
from flowable_worker.client.variables import Variable, from_rest_variables


def _instant_or_none(value: Any) -> Any:
    if isinstance(value, str):
        return parse_instant(value) if value.strip() else None
    return value


Instant = Annotated[datetime | None, BeforeValidator(_instant_or_none)]
"""A Flowable date field: ISO instant text on the wire, aware UTC datetime (or None) here."""


class _WireModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )


class ExternalWorkerJob(_WireModel):
    """One external-worker job as `GET /jobs` and `GET /jobs/{id}` describe it."""

    id: str
    url: str | None = None
    correlation_id: str | None = None
    process_instance_id: str | None = None
    process_definition_id: str | None = None
    execution_id: str | None = None
    scope_id: str | None = None
    sub_scope_id: str | None = None
    scope_definition_id: str | None = None
    scope_type: str | None = None
    element_id: str | None = None
    element_name: str | None = None
    retries: int | None = None
    exception_message: str | None = None
    due_date: Instant = None
    create_time: Instant = None
    tenant_id: str | None = None
    lock_owner: str | None = None
    lock_expiration_time: Instant = None


class AcquiredJob(ExternalWorkerJob):
    """A job this worker has just locked, with the variables the handler works on.

    `raw_variables` is what came over the wire (`variables` there); `variables` is the same as
    Python values, converted once here so every handler sees the same conversion.
    """

    raw_variables: list[Variable] = Field(default_factory=list, alias="variables")
    variables: dict[str, Any] = Field(default_factory=dict, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _wire_variables_are_raw(cls, data: Any) -> Any:
        # On the wire `variables` is the typed list (or null); a dict is already Python values.
        if (
            isinstance(data, dict)
            and "raw_variables" not in data
            and (data.get("variables") is None or isinstance(data.get("variables"), list))
            and "variables" in data
        ):
            data = dict(data)
            raw = data.pop("variables")
            data["raw_variables"] = [] if raw is None else raw
        return data

    @model_validator(mode="after")
    def _convert_variables(self) -> AcquiredJob:
        if self.raw_variables and not self.variables:
            object.__setattr__(self, "variables", from_rest_variables(self.raw_variables))
        return self


T = TypeVar("T")


class Page(_WireModel, Generic[T]):
    """One page of a list answer: `total` counts every match, `size` the rows in `data`."""

    data: list[T]
    total: int
    start: int = 0
    size: int = 0
    sort: str | None = None
    order: str | None = None
