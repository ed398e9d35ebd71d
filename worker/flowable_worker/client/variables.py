"""Flowable's typed variables <-> Python values, for all 13 types the REST API knows.

On the wire a variable is `{"name", "type", "value"}`. The formats written here are the ones
Flowable 7's `*RestVariableConverter`s read (module flowable-common-rest):

- `integer`, `long`, `short`, `double`: JSON numbers (the converters insist on `Number`).
- `bigInteger`, `bigDecimal`: strings (`new BigInteger(value.toString())`; the server itself
  answers with `toString()`/`toPlainString()`), so no digit is lost to a JSON double on the way.
- `date`: `yyyy-MM-ddTHH:mm:ss.SSSZ` in UTC. Flowable's parser accepts at most three fraction
  digits and `java.util.Date` holds only millis, so sub-millisecond parts are dropped.
- `instant`, `localDate`, `localDateTime`: `java.time` ISO texts (`Instant.parse`,
  `LocalDate.parse`, `LocalDateTime.parse`).
- `json`: the JSON object or array itself, not a string holding it.

Reading is lenient (numbers where strings were expected and the reverse, any ISO offset), and a
type we don't know (`serializable`, `bytes`, a custom one) keeps its raw value with a warning: a
worker must not crash on a job because of one odd variable.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from flowable_worker.client.instants import format_instant, parse_datetime, parse_instant

log = logging.getLogger(__name__)

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_INT16 = (-(2**15), 2**15 - 1)


class Variable(BaseModel):
    """One variable exactly as it travels on the wire (`value` not yet converted)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    name: str
    type: str | None = None
    value: Any = None
    value_url: str | None = Field(default=None, alias="valueUrl")


@dataclass(frozen=True)
class TypedValue:
    """A value with an explicit Flowable type, for types Python values don't imply.

    `TypedValue(7, "short")`, `TypedValue(now, "instant")`, `TypedValue(5, "long")` (a small
    number Flowable should still store as a long). Read back, it becomes the plain Python value.
    """

    value: Any
    type: str


def _check_int(value: Any, bounds: tuple[int, int], type_name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{type_name} needs an int, got {type(value).__name__}")
    if not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"{value} does not fit Flowable type {type_name}")
    return value


def _encode_string(value: Any) -> Any:
    if not isinstance(value, str):
        raise TypeError(f"string needs a str, got {type(value).__name__}")
    return value


def _encode_boolean(value: Any) -> Any:
    if not isinstance(value, bool):
        raise TypeError(f"boolean needs a bool, got {type(value).__name__}")
    return value


def _encode_double(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"double needs a float, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        # JSON has no NaN/Infinity; Flowable's parser would refuse the whole request.
        raise ValueError(f"double must be finite for JSON, got {number}")
    return number


def _encode_big_integer(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"bigInteger needs an int, got {type(value).__name__}")
    return str(value)


def _encode_big_decimal(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, Decimal | int | float):
        raise TypeError(f"bigDecimal needs a Decimal, got {type(value).__name__}")
    number = value if isinstance(value, Decimal) else Decimal(str(value))
    if not number.is_finite():
        raise ValueError(f"bigDecimal must be finite, got {number}")
    return format(number, "f")  # plain notation, like BigDecimal.toPlainString()


def _encode_date(value: Any) -> Any:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise TypeError("date needs an aware datetime (use localDateTime for naive ones)")
    return format_instant(value, millis_only=True)


def _encode_instant(value: Any) -> Any:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise TypeError("instant needs an aware datetime")
    return format_instant(value)


def _encode_local_date(value: Any) -> Any:
    if isinstance(value, datetime) or not isinstance(value, date):
        raise TypeError(f"localDate needs a date, got {type(value).__name__}")
    return value.isoformat()


def _encode_local_date_time(value: Any) -> Any:
    if not isinstance(value, datetime) or value.tzinfo is not None:
        raise TypeError("localDateTime needs a naive datetime")
    return value.isoformat()


def _encode_json(value: Any) -> Any:
    if not isinstance(value, dict | list):
        raise TypeError(f"json needs a dict or list, got {type(value).__name__}")
    return value


def _decode_string(value: Any) -> Any:
    return value if isinstance(value, str) else str(value)


def _decode_boolean(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "false"}:
        return value.lower() == "true"
    raise ValueError(f"not a boolean: {value!r}")


def _decode_int(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"not an integer: {value!r}")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"not an integer: {value!r}")
        return int(value)
    return int(value)


def _decode_double(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    return float(value)


def _decode_big_decimal(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    # str() first: Decimal(0.1) would keep the binary float's full expansion.
    return Decimal(str(value))


def _decode_local_date(value: Any) -> Any:
    return date.fromisoformat(str(value)[:10])


def _decode_local_date_time(value: Any) -> Any:
    parsed = parse_datetime(str(value))
    return parsed.replace(tzinfo=None) if parsed.tzinfo is not None else parsed


def _decode_instant(value: Any) -> Any:
    return parse_instant(str(value))


def _decode_json(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class _Codec:
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]


_CODECS: dict[str, _Codec] = {
    "string": _Codec(_encode_string, _decode_string),
    "boolean": _Codec(_encode_boolean, _decode_boolean),
    "short": _Codec(lambda v: _check_int(v, _INT16, "short"), _decode_int),
    "integer": _Codec(lambda v: _check_int(v, _INT32, "integer"), _decode_int),
    "long": _Codec(lambda v: _check_int(v, _INT64, "long"), _decode_int),
    "bigInteger": _Codec(_encode_big_integer, _decode_int),
    "double": _Codec(_encode_double, _decode_double),
    "bigDecimal": _Codec(_encode_big_decimal, _decode_big_decimal),
    "date": _Codec(_encode_date, _decode_instant),
    "instant": _Codec(_encode_instant, _decode_instant),
    "localDate": _Codec(_encode_local_date, _decode_local_date),
    "localDateTime": _Codec(_encode_local_date_time, _decode_local_date_time),
    "json": _Codec(_encode_json, _decode_json),
}

VARIABLE_TYPES: frozenset[str] = frozenset(_CODECS)
"""The 13 type names Flowable's REST API accepts; anything else is a 400."""


def infer_type(value: Any) -> str:
    """The Flowable type a plain Python value is written as (the table in docs/client.md)."""
    if value is None or isinstance(value, str):
        return "string"
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "boolean"
    if isinstance(value, int):
        if _INT32[0] <= value <= _INT32[1]:
            return "integer"
        if _INT64[0] <= value <= _INT64[1]:
            return "long"
        return "bigInteger"
    if isinstance(value, float):
        return "double"
    if isinstance(value, Decimal):
        return "bigDecimal"
    if isinstance(value, datetime):  # before date: datetime is a date subclass
        return "date" if value.tzinfo is not None else "localDateTime"
    if isinstance(value, date):
        return "localDate"
    if isinstance(value, dict | list):
        return "json"
    raise TypeError(
        f"no Flowable variable type for {type(value).__name__}; wrap it in TypedValue or convert it"
    )


def to_rest_variable(name: str, value: Any) -> dict[str, Any]:
    """One Python value (or `TypedValue`) as a wire variable; raises TypeError/ValueError early."""
    if isinstance(value, TypedValue):
        type_name, raw = value.type, value.value
        if type_name not in _CODECS:
            known = ", ".join(sorted(_CODECS))
            raise ValueError(f"variable {name!r}: unknown Flowable type {type_name!r} ({known})")
    else:
        type_name, raw = infer_type(value), value
    try:
        wire = None if raw is None else _CODECS[type_name].encode(raw)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"variable {name!r}: {exc}") from exc
    return {"name": name, "type": type_name, "value": wire}


def to_rest_variables(mapping: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Python values by name -> Flowable's `[{"name", "type", "value"}]` list."""
    return [to_rest_variable(name, value) for name, value in mapping.items()]


def from_rest_variable(item: Variable | Mapping[str, Any]) -> tuple[str, Any]:
    """A wire variable as `(name, python value)`; unknown or malformed values stay raw."""
    variable = item if isinstance(item, Variable) else Variable.model_validate(item)
    if variable.value is None:
        return variable.name, None
    codec = _CODECS.get(variable.type or "")
    if codec is None:
        log.warning(
            "variable %r has type %r that the client does not convert; keeping the raw value",
            variable.name,
            variable.type,
        )
        return variable.name, variable.value
    try:
        return variable.name, codec.decode(variable.value)
    except (TypeError, ValueError, ArithmeticError) as exc:
        log.warning(
            "variable %r of type %r has a value the client cannot read (%s); keeping it raw",
            variable.name,
            variable.type,
            exc,
        )
        return variable.name, variable.value


def from_rest_variables(items: Iterable[Variable | Mapping[str, Any]]) -> dict[str, Any]:
    """Flowable's variable list -> Python values by name (later duplicates win)."""
    return dict(from_rest_variable(item) for item in items)
