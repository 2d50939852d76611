"""Conformance suite for ``EventSource`` implementations.

Subclass :class:`EventSourceConformance` and provide a ``stream`` fixture: an object with
``append(values: list[bytes | None]) -> None`` (adds raw records to one fresh partition),
``open(start_offsets=None, group=None) -> EventSource`` (a source over that stream) and
``dead_letters() -> list[tuple[bytes | None, dict[str, bytes]]]`` (what reached the dead-letter topic: value and
headers, in order).

:class:`ScriptedSource` over a :class:`ScriptedLog` is the in-memory reference implementation the unit tests
of the ingest path use.
"""

from __future__ import annotations

import time

from streamtune.errors import ServiceError
from streamtune.events import DataArrival, DeadLetter, EventRecord, EventSource
from streamtune.events.source import ERROR_HEADER, Offsets

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

    def test_poll_leaves_dead_lettering_to_the_caller_who_gets_each_letter_acknowledged(self, stream):
        stream.append([GOOD[0], BAD_JSON, GOOD[1]])
        with stream.open() as source:
            recs = drain(source, 3)
            assert stream.dead_letters() == []  # the caller decides, and stores offsets only after the ack
            source.dead_letter([DeadLetter(recs[1], recs[1].error), DeadLetter(recs[2], "no spec for it")])
        (bad, bad_headers), (good, good_headers) = stream.dead_letters()
        assert bad == BAD_JSON and bad_headers[ERROR_HEADER].decode() == recs[1].error
        assert good == GOOD[1] and good_headers[ERROR_HEADER] == b"no spec for it"
        assert good_headers["streamtune.source.offset"] == str(recs[2].offset).encode()

    def test_seek_back_reads_the_same_records_again(self, stream):
        stream.append(GOOD[:3])
        with stream.open() as source:
            first = drain(source, 3)
            source.seek({(first[0].topic, first[0].partition): first[0].offset})
            assert [r.offset for r in drain(source, 3)] == [r.offset for r in first]

    def test_watermarks_give_the_earliest_and_the_end_offset(self, stream):
        stream.append(GOOD[:3])
        with stream.open() as source:
            recs = drain(source, 3)
            tp = (recs[0].topic, recs[0].partition)
            assert source.watermarks([tp]) == {tp: (recs[0].offset, recs[2].offset + 1)}


class ScriptedLog:
    """An in-memory partitioned log: what a broker holds, for :class:`ScriptedSource` (unit tests, no Kafka).

    ``fail_dead_letters`` makes that many :meth:`ScriptedSource.dead_letter` calls fail; :meth:`recreate` drops a
    topic's records so its offsets restart at 0, as deleting and creating the topic again does.
    """

    def __init__(self) -> None:
        self.partitions: dict[tuple[str, int], list[tuple[bytes | None, bytes | None]]] = {}
        self.committed: dict[str, Offsets] = {}
        self.dead: list[DeadLetter] = []
        self.fail_dead_letters = 0

    def append(self, topic: str, values: list[bytes | None], partition: int = 0, key: bytes | None = None) -> list[int]:
        log = self.partitions.setdefault((topic, partition), [])
        log.extend((v, key) for v in values)
        return list(range(len(log) - len(values), len(log)))

    def publish(self, topic: str, events: list[DataArrival], partition: int = 0) -> list[int]:
        return self.append(topic, [e.to_bytes() for e in events], partition, key=b"k")

    def recreate(self, topic: str) -> None:
        for tp in [tp for tp in self.partitions if tp[0] == topic]:
            self.partitions[tp] = []


class ScriptedSource(EventSource):
    """An EventSource over a :class:`ScriptedLog`: positions, seek, commit, dead letters, watermarks."""

    def __init__(self, log: ScriptedLog, topics: list[str], group: str = "g", start_offsets: Offsets | None = None,
                 *, batch: int | None = None) -> None:
        self.log, self.topics, self.group, self.batch = log, topics, group, batch
        self.positions: Offsets = dict(log.committed.get(group, {}))
        self.positions.update(start_offsets or {})
        self.polls = 0

    def poll(self, timeout_s: float = 1.0, max_records: int | None = None) -> list[EventRecord]:
        self.polls += 1
        limit = min(x for x in (max_records, self.batch, 10**9) if x is not None)
        out: list[EventRecord] = []
        for tp in sorted(tp for tp in self.log.partitions if tp[0] in self.topics):
            log, pos = self.log.partitions[tp], self.positions.get(tp, 0)
            if pos > len(log):  # out of range: reset to the earliest, as auto_offset_reset=earliest does
                pos = 0
            while pos < len(log) and len(out) < limit:
                value, key = log[pos]
                out.append(EventRecord.decode(tp[0], tp[1], pos, value, key))
                pos += 1
            self.positions[tp] = pos
        return out

    def commit(self, offsets: Offsets) -> None:
        self.log.committed.setdefault(self.group, {}).update(offsets)

    def seek(self, offsets: Offsets) -> None:
        self.positions.update(offsets)

    def close(self) -> None:
        pass

    def dead_letter(self, letters) -> None:
        if not letters:
            return
        if self.log.fail_dead_letters > 0:
            self.log.fail_dead_letters -= 1
            raise ServiceError(f"could not dead-letter {len(letters)} record(s): broker refused (scripted)")
        self.log.dead.extend(letters)

    def watermarks(self, partitions) -> dict[tuple[str, int], tuple[int, int]]:
        return {tp: (0, len(self.log.partitions[tp])) for tp in partitions if tp in self.log.partitions}
