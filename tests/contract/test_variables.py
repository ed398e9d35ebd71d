"""Contract: every Flowable variable type survives the round trip, both directions.

Start -> acquire checks what the engine hands to a worker; complete -> history checks what a worker
hands back. Values are Python values: the client chooses the Flowable type (or `TypedValue` does).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from flowable_worker import FlowableClient, TypedValue
from tests.support.backend import FlowableBackend
from tests.support.waiting import eventually

EVERY_TYPE: dict[str, Any] = {
    "aString": "héllo wörld",
    "anInteger": 2_000_000_000,
    "aLong": 9_000_000_000_000,
    "aShort": TypedValue(12_000, "short"),
    "aDouble": 3.25,
    "aBigDecimal": Decimal("12345678901234567890.123456789"),
    "aBigInteger": 123_456_789_012_345_678_901_234_567_890,
    "aBoolean": False,
    "aDate": datetime(2024, 2, 29, 13, 14, 15, tzinfo=UTC),
    "anInstant": TypedValue(datetime(2023, 1, 2, 3, 4, 5, 678000, tzinfo=UTC), "instant"),
    "aLocalDate": date(2025, 12, 31),
    "aLocalDateTime": datetime(2025, 6, 7, 8, 9, 10, 11000),
    "aJson": {"items": [1, 2, {"deep": True}], "name": "x", "none": None},
}


def plain(value: Any) -> Any:
    """What a reader should get back: the value inside a TypedValue."""
    return value.value if isinstance(value, TypedValue) else value


async def test_every_type_reaches_the_worker_intact(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    await backend.create_jobs(topic, 1, variables=EVERY_TYPE)

    [job] = await client.acquire_jobs(topic=topic, worker_id="w", lock_duration="PT1M")

    for name, sent in EVERY_TYPE.items():
        assert job.variables[name] == plain(sent), name
    types = {v.name: v.type for v in job.raw_variables}
    assert types["anInteger"] == "integer"
    assert types["aLong"] == "long"
    assert types["aShort"] == "short"
    assert types["aBigDecimal"] == "bigDecimal"
    assert types["aBigInteger"] == "bigInteger"
    assert types["aDate"] == "date"
    assert types["anInstant"] == "instant"
    assert types["aLocalDate"] == "localDate"
    assert types["aLocalDateTime"] == "localDateTime"
    assert types["aJson"] == "json"


async def test_every_type_completed_by_the_worker_is_stored(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    [created] = await backend.create_jobs(topic, 1)
    [job] = await client.acquire_jobs(topic=topic, worker_id="w", lock_duration="PT1M")

    await client.complete_job(job.id, worker_id="w", variables=EVERY_TYPE)

    await eventually(lambda: backend.instance_finished(created))
    stored = await backend.instance_variables(created)
    for name, sent in EVERY_TYPE.items():
        assert stored[name] == plain(sent), name


async def test_time_values_keep_the_precision_flowable_stores(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    """`date` keeps whole seconds; `instant` and `localDateTime` keep milliseconds."""
    moment = datetime(2024, 2, 29, 13, 14, 15, 123456, tzinfo=UTC)
    await backend.create_jobs(topic, 1, variables={
        "date": moment,
        "instant": TypedValue(moment, "instant"),
        "local": moment.replace(tzinfo=None),
    })

    [job] = await client.acquire_jobs(topic=topic, worker_id="w", lock_duration="PT1M")

    assert job.variables["date"] == moment.replace(microsecond=0)
    assert job.variables["instant"] == moment.replace(microsecond=123000)
    assert job.variables["local"] == moment.replace(microsecond=123000, tzinfo=None)


async def test_a_none_value_round_trips_as_null(
    backend: FlowableBackend, client: FlowableClient, topic: str
) -> None:
    await backend.create_jobs(topic, 1, variables={"nothing": None})

    [job] = await client.acquire_jobs(topic=topic, worker_id="w", lock_duration="PT1M")

    assert job.variables["nothing"] is None
