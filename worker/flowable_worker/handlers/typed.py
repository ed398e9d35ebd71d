"""Typed variables: a handler that declares a model receives the job's variables validated into it.

```python
class Invoice(BaseModel):
    amount: Decimal
    customer: str

@worker.topic("invoice-check")
def check(invoice: Invoice) -> Approval:   # Approval: a model or dataclass, returned as variables
    ...
```

The first parameter's annotation decides: a pydantic model or a dataclass gets the variables
validated by pydantic (so "12.50" becomes a Decimal and a missing field is an error before any of
the handler's code runs); anything else, or no annotation, gets the `Job`. A model or dataclass
returned completes the job with its fields as variables. A validation error fails the job with a
message that names the fields (`variables do not match Invoice: amount: Field required`), under the
retry policy: bad input is the process's problem to fix, and a traceback in the log would help
nobody.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from flowable_worker.job import Job

__all__ = ["VariablesModel", "as_variables", "variables_model"]

_MAX_ERRORS_IN_MESSAGE = 5


class VariablesModel:
    """Validates a job's variables into the type a handler asked for."""

    def __init__(self, kind: type[Any]) -> None:
        self.kind = kind
        self._adapter: TypeAdapter[Any] = TypeAdapter(kind)

    @property
    def name(self) -> str:
        return self.kind.__name__

    def validate(self, variables: Mapping[str, Any]) -> Any:
        """The model instance; ValidationError when the variables do not fit."""
        return self._adapter.validate_python(dict(variables))

    def describe(self, error: ValidationError) -> str:
        """One line naming what is wrong, field by field (the first few)."""
        parts = []
        for item in error.errors()[:_MAX_ERRORS_IN_MESSAGE]:
            where = ".".join(str(p) for p in item.get("loc", ())) or "(variables)"
            parts.append(f"{where}: {item.get('msg', 'invalid')}")
        more = error.error_count() - len(parts)
        tail = f" (and {more} more)" if more > 0 else ""
        return f"variables do not match {self.name}: {'; '.join(parts)}{tail}"


def _is_model(kind: object) -> bool:
    if not inspect.isclass(kind) or issubclass(kind, Job):  # Job is a dataclass too
        return False
    return issubclass(kind, BaseModel) or dataclasses.is_dataclass(kind)


def variables_model(function: Callable[..., Any]) -> VariablesModel | None:
    """The model `function` wants its variables as, or None when it takes the `Job`."""
    target = function
    if not (inspect.isfunction(target) or inspect.ismethod(target)):
        target = getattr(function, "__call__", function)  # noqa: B004 - the bound __call__
    try:
        parameters = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        return None
    if not parameters:
        return None
    first = parameters[0]
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # an annotation that cannot be resolved: use what is there, if a class
        hints = {}
    kind = hints.get(first.name, first.annotation)
    return VariablesModel(kind) if _is_model(kind) else None


def as_variables(returned: object) -> dict[str, Any] | None:
    """A returned model or dataclass as variables; None for anything else."""
    if isinstance(returned, BaseModel):
        return returned.model_dump(mode="python")
    if dataclasses.is_dataclass(returned) and not isinstance(returned, type):
        return dataclasses.asdict(returned)
    return None
