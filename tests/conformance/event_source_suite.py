"""Conformance suite for ``EventSource`` implementations.

Subclass :class:`EventSourceConformance` and provide a ``stream`` fixture: an object with
``append(values: list[bytes | None]) -> None`` (adds raw records to one fresh partition) and
``open(start_offsets=None, group=None) -> EventSource`` (a source over that stream).
"""

from __future__ import annotations

import time

from streamtune.events import DataArrival, EventRecord, EventSource

GOOD = [DataArrival(dataset="sales", uris=[f"/d/p{i}.parquet"], num_rows=10 + i).to_bytes() for i in range(4)]
BAD_JSON = b'{"dataset": '
BAD_SCHEMA = b'{"dataset": "sales", "uris": ["/d/x.parquet"], "num_rows": -1}'


def drain(source: EventSource, want: int, timeout_s: float = 30) -> list[EventRecord]:
    records: list[EventRecord] = []
    deadline = time.monotonic() + timeout_s
    while len(records) < want and time.monotonic() < deadline:
        records.extend(source.poll(timeout_s=0.5))
    assert len(records) == want, f"got {len(records)} of {want}: {records}"
    return records


class EventSourceConformance:
    """What every EventSource must do."""

    def test_good_and_bad_records_come_back_in_order_and_bad_ones_do_not_raise(self, stream):
        stream.append([GOOD[0], BAD_JSON, GOOD[1], BAD_SCHEMA, None, GOOD[2]])
        with stream.open() as source:
            records = drain(source, 6)
        assert [r.offset for r in records] == sorted(r.offset for r in records)
        assert [r.ok for r in records] == [True, False, True, False, False, True]
        assert "not valid JSON" in records[1].error and "num_rows" in records[3].error
        assert records[1].raw == BAD_JSON and records[0].event.num_rows == 10
        assert all(r.next_offset == r.offset + 1 for r in records)

    def test_commit_then_a_new_source_in_the_group_resumes_after_it(self, stream):
        stream.append(GOOD[:3])
        with stream.open(group="g1") as source:
            first = drain(source, 3)
            source.commit({(first[1].topic, first[1].partition): first[1].next_offset})
        with stream.open(group="g1") as again:
            [rest] = drain(again, 1)
        assert rest.offset == first[2].offset

    def test_start_offsets_win_over_committed_offsets(self, stream):
        stream.append(GOOD[:4])
        with stream.open(group="g2") as source:
            recs = drain(source, 4)
            source.commit({(recs[0].topic, recs[0].partition): recs[3].next_offset})
        key = (recs[0].topic, recs[0].partition)
        with stream.open(group="g2", start_offsets={key: recs[1].offset}) as rewound:
            again = drain(rewound, 3)
        assert [r.offset for r in again] == [r.offset for r in recs[1:]]
