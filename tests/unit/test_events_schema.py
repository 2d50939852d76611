"""DataArrival: decoding errors name the field, the bad value and the rule (no Kafka, no Ray)."""

from __future__ import annotations

import json

import pytest

from streamtune.errors import EventError, StreamtuneError
from streamtune.events import DataArrival, EventRecord


def _raw(**fields: object) -> bytes:
    base: dict[str, object] = {"dataset": "sales", "uris": ["/data/sales/p0.parquet"], "num_rows": 10}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


def _headline(raw: bytes | None) -> str:
    with pytest.raises(EventError) as info:
        DataArrival.from_bytes(raw)
    assert isinstance(info.value, StreamtuneError)
    return info.value.headline


def test_round_trip_keeps_every_field() -> None:
    ev = DataArrival(dataset="sales", rows=[{"price": 1.5}], num_rows=1, schema_fingerprint="abc")
    assert DataArrival.from_bytes(ev.to_bytes()) == ev


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (_raw(dataset=""), 'Got "" for event.dataset; string should have at least 1 character'),
        (_raw(num_rows=-3), 'Got "-3" for event.num_rows; input should be greater than or equal to 0'),
        (_raw(num_rows="many"), 'Got "many" for event.num_rows; input should be a valid integer'),
        (_raw(uris="/one.parquet"), 'Got "/one.parquet" for event.uris; input should be a valid list'),
        (_raw(uris=["ok", 7]), 'Got "7" for event.uris[1]; input should be a valid string'),
        (_raw(dataset=...), "Missing event.dataset; it is required"),
        (_raw(colour="red"), 'Got unknown key "event.colour"; it is not a known key'),
    ],
)
def test_field_errors_name_field_value_and_rule(raw: bytes, expected: str) -> None:
    assert _headline(raw).startswith(expected)


def test_event_without_data_names_the_rule() -> None:
    headline = _headline(_raw(uris=[]))
    assert headline.startswith('Got "{') and "for event;" in headline
    assert headline.endswith("an event needs 'uris' or 'rows'")


def test_second_problem_goes_to_the_fix() -> None:
    with pytest.raises(EventError) as info:
        DataArrival.from_bytes(_raw(dataset="", num_rows=-1))
    assert "event.dataset" in info.value.headline
    assert info.value.fix is not None and "event.num_rows" in info.value.fix


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"dataset": ', "event is not valid JSON"),
        (b"\xff\xfe", "event is not valid JSON"),
        (b"[1, 2]", 'Got "list" for the event; must be a JSON object'),
        (None, "event has no value (a tombstone)"),
    ],
)
def test_undecodable_values(raw: bytes | None, expected: str) -> None:
    assert _headline(raw).startswith(expected)


def test_event_record_decode_never_raises() -> None:
    good = DataArrival(dataset="sales", uris=["/p.parquet"], num_rows=2)
    ok = EventRecord.decode("t", 0, 4, good.to_bytes())
    bad = EventRecord.decode("t", 0, 5, _raw(num_rows=-1))
    assert (ok.ok, ok.event, ok.error, ok.next_offset) == (True, good, None, 5)
    assert (bad.ok, bad.event, bad.next_offset) == (False, None, 6)
    assert bad.error == 'Got "-1" for event.num_rows; input should be greater than or equal to 0'
    assert bad.raw == _raw(num_rows=-1)
