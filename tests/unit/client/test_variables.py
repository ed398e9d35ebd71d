"""Python values <-> Flowable's typed variables, in the formats Flowable 7's converters use."""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowable_worker import TypedValue, Variable, from_rest_variables, to_rest_variables
from flowable_worker.client.variables import VARIABLE_TYPES


def over_the_wire(variables: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the other side reads: the list serialised to JSON text and parsed back."""
    parsed: list[dict[str, Any]] = json.loads(json.dumps(variables, allow_nan=False))
    return parsed


def wire(value: Any) -> dict[str, Any]:
    [variable] = to_rest_variables({"v": value})
    return variable


def read(type_name: str | None, value: Any) -> Any:
    return from_rest_variables([{"name": "v", "type": type_name, "value": value}])["v"]


# -- writing: which type each Python value becomes, and its exact wire format ---------------------


@pytest.mark.parametrize(
    ("value", "type_name", "wire_value"),
    [
        ("text", "string", "text"),
        (True, "boolean", True),
        (7, "integer", 7),
        (2**31 - 1, "integer", 2**31 - 1),
        (-(2**31), "integer", -(2**31)),
        (2**31, "long", 2**31),
        (-(2**63), "long", -(2**63)),
        (2**63, "bigInteger", str(2**63)),
        (1.5, "double", 1.5),
        (Decimal("12.50"), "bigDecimal", "12.50"),
        (Decimal("1E+3"), "bigDecimal", "1000"),
        (datetime(2020, 5, 8, 9, 35, 45, 583000, tzinfo=UTC), "date", "2020-05-08T09:35:45.583Z"),
        (datetime(2020, 5, 8, 9, 35, 45), "localDateTime", "2020-05-08T09:35:45"),
        (date(2020, 5, 8), "localDate", "2020-05-08"),
        ({"a": [1, 2]}, "json", {"a": [1, 2]}),
        ([1, "x"], "json", [1, "x"]),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, str) else v,
)
def test_python_values_are_written_as_the_matching_flowable_type(
    value: Any, type_name: str, wire_value: Any
) -> None:
    assert wire(value) == {"name": "v", "type": type_name, "value": wire_value}


def test_none_is_written_as_a_null_string() -> None:
    assert wire(None) == {"name": "v", "type": "string", "value": None}


def test_a_date_is_written_in_utc_with_exactly_three_fraction_digits() -> None:
    berlin = timezone(timedelta(hours=2))

    assert wire(datetime(2020, 5, 8, 11, 35, 45, tzinfo=berlin))["value"] == (
        "2020-05-08T09:35:45.000Z"
    )


def test_a_date_drops_sub_millisecond_digits_flowable_cannot_parse() -> None:
    value = datetime(2020, 5, 8, 9, 35, 45, 583999, tzinfo=UTC)

    assert wire(value)["value"] == "2020-05-08T09:35:45.583Z"


def test_an_instant_keeps_microseconds() -> None:
    value = datetime(2020, 5, 8, 9, 35, 45, 583123, tzinfo=UTC)

    assert wire(TypedValue(value, "instant"))["value"] == "2020-05-08T09:35:45.583123Z"


def test_an_instant_omits_a_zero_fraction_like_java() -> None:
    value = datetime(2020, 5, 8, 9, 35, 45, tzinfo=UTC)

    assert wire(TypedValue(value, "instant"))["value"] == "2020-05-08T09:35:45Z"


def test_typed_value_picks_a_type_python_values_do_not_imply() -> None:
    assert wire(TypedValue(5, "long")) == {"name": "v", "type": "long", "value": 5}
    assert wire(TypedValue(5, "short")) == {"name": "v", "type": "short", "value": 5}
    assert wire(TypedValue(5, "bigDecimal"))["value"] == "5"


def test_typed_value_with_none_sends_a_null_of_that_type() -> None:
    assert wire(TypedValue(None, "long")) == {"name": "v", "type": "long", "value": None}


def test_a_short_out_of_range_is_refused_before_sending() -> None:
    with pytest.raises(ValueError, match="short"):
        wire(TypedValue(40_000, "short"))


def test_a_typed_value_of_the_wrong_python_type_is_refused() -> None:
    with pytest.raises(TypeError, match="'v'"):
        wire(TypedValue("seven", "integer"))


def test_an_unknown_type_name_is_refused_before_sending() -> None:
    with pytest.raises(ValueError, match="unknown Flowable type"):
        wire(TypedValue(b"x", "bytes"))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), Decimal("NaN")])
def test_numbers_json_cannot_carry_are_refused(value: Any) -> None:
    with pytest.raises(ValueError, match="finite"):
        wire(value)


def test_a_python_value_without_a_flowable_type_is_refused() -> None:
    with pytest.raises(TypeError, match="TypedValue"):
        wire(b"bytes")


def test_there_are_thirteen_variable_types() -> None:
    assert len(VARIABLE_TYPES) == 13


# -- reading: what Flowable sends, including the spellings it may use ---------------------------

AT_583 = datetime(2020, 5, 8, 9, 35, 45, 583000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("type_name", "value", "expected"),
    [
        ("string", "text", "text"),
        ("boolean", False, False),
        ("integer", 7, 7),
        ("long", 2**40, 2**40),
        ("short", 3, 3),
        ("double", 2, 2.0),
        ("bigInteger", "123456789012345678901234567890", 123456789012345678901234567890),
        ("bigInteger", 12, 12),
        ("bigDecimal", "0.10", Decimal("0.10")),
        ("bigDecimal", 0.1, Decimal("0.1")),
        ("date", "2020-05-08T09:35:45.583Z", AT_583),
        ("date", "2020-05-08T11:35:45.583+02:00", AT_583),
        ("date", "2020-05-08T09:35:45.583+0000", AT_583),
        ("date", "2020-05-08T09:35:45Z", AT_583.replace(microsecond=0)),
        ("instant", "2020-05-08T09:35:45.583123456Z", AT_583.replace(microsecond=583123)),
        ("localDate", "2020-05-08", date(2020, 5, 8)),
        ("localDateTime", "2020-05-08T09:35", datetime(2020, 5, 8, 9, 35)),
        ("localDateTime", "2020-05-08T09:35:45.5", datetime(2020, 5, 8, 9, 35, 45, 500000)),
        ("json", {"a": 1}, {"a": 1}),
        ("json", [1, 2], [1, 2]),
    ],
)  # fmt: skip
def test_flowable_values_are_read_as_python_values(
    type_name: str, value: Any, expected: Any
) -> None:
    result = read(type_name, value)

    assert result == expected
    assert type(result) is type(expected)


def test_dates_are_read_as_aware_utc_datetimes() -> None:
    result = read("date", "2020-05-08T11:35:45+02:00")

    assert result.tzinfo is UTC


def test_a_null_value_is_read_as_none_whatever_its_type() -> None:
    assert read("integer", None) is None
    assert read(None, None) is None


def test_an_unknown_type_keeps_the_raw_value_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        result = read("serializable", "rO0ABXQ=")

    assert result == "rO0ABXQ="
    assert "serializable" in caplog.text


def test_a_malformed_value_keeps_the_raw_value_and_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        result = read("date", "not a date")

    assert result == "not a date"
    assert "'v'" in caplog.text


def test_reading_accepts_wire_models_as_well_as_dicts() -> None:
    items = [Variable(name="n", type="integer", value=1)]

    assert from_rest_variables(items) == {"n": 1}


def test_extra_wire_fields_are_ignored() -> None:
    items = [{"name": "n", "type": "integer", "value": 1, "scope": "local", "valueUrl": None}]

    assert from_rest_variables(items) == {"n": 1}


# -- round trip: to_rest then from_rest gives the value back --------------------------------------

finite_floats = st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text() | finite_floats,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
aware_datetimes = st.datetimes(
    min_value=datetime(1000, 1, 1), max_value=datetime(9000, 1, 1), timezones=st.just(UTC)
)
millisecond_datetimes = aware_datetimes.map(
    lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000)
)
plain_values = st.one_of(
    st.none(),
    st.text(),
    st.booleans(),
    st.integers(),
    finite_floats,
    st.decimals(allow_nan=False, allow_infinity=False),
    millisecond_datetimes,
    st.datetimes(min_value=datetime(1000, 1, 1)),
    st.dates(min_value=date(1000, 1, 1)),
    st.dictionaries(st.text(), json_values, max_size=4),
    st.lists(json_values, max_size=4),
)


@given(st.dictionaries(st.text(), plain_values, max_size=6))
def test_plain_values_survive_a_round_trip(values: dict[str, Any]) -> None:
    back = from_rest_variables(over_the_wire(to_rest_variables(values)))

    assert back == values
    assert [type(v) for v in back.values()] == [type(v) for v in values.values()]


typed_values = st.one_of(
    st.integers(-(2**15), 2**15 - 1).map(lambda v: (v, "short")),
    st.integers(-(2**31), 2**31 - 1).map(lambda v: (v, "integer")),
    st.integers(-(2**63), 2**63 - 1).map(lambda v: (v, "long")),
    st.integers().map(lambda v: (v, "bigInteger")),
    finite_floats.map(lambda v: (v, "double")),
    st.decimals(allow_nan=False, allow_infinity=False).map(lambda v: (v, "bigDecimal")),
    st.text().map(lambda v: (v, "string")),
    st.booleans().map(lambda v: (v, "boolean")),
    millisecond_datetimes.map(lambda v: (v, "date")),
    aware_datetimes.map(lambda v: (v, "instant")),
    st.dates(min_value=date(1000, 1, 1)).map(lambda v: (v, "localDate")),
    st.datetimes(min_value=datetime(1000, 1, 1)).map(lambda v: (v, "localDateTime")),
    st.lists(json_values, max_size=4).map(lambda v: (v, "json")),
)


@given(typed_values)
def test_typed_values_of_every_type_survive_a_round_trip(typed: tuple[Any, str]) -> None:
    value, type_name = typed

    [variable] = to_rest_variables({"v": TypedValue(value, type_name)})
    back = from_rest_variables(over_the_wire([variable]))["v"]

    assert variable["type"] == type_name
    assert back == value


@given(aware_datetimes)
def test_a_date_round_trip_keeps_the_instant_to_the_millisecond(value: datetime) -> None:
    back = read("date", wire(value)["value"])

    assert timedelta(0) <= value - back < timedelta(milliseconds=1)
