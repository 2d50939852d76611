"""Events through a real local Kafka broker: producer, consumer group, bad records, offsets, dead letters."""

from __future__ import annotations

import logging
import time
import uuid

import pytest
from kafka import KafkaConsumer, TopicPartition

from conformance.event_source_suite import EventSourceConformance
from conformance.event_source_suite import drain as _drain
from streamtune.events import DataArrival, EventProducer, KafkaEventSource
from streamtune.events.dlq import DeadLetter
from streamtune.events.source import ERROR_HEADER
from streamtune.runtime.kafka import ensure_topic

pytestmark = pytest.mark.integration

BAD_JSON = b'{"dataset": "sales", "num_rows": '
BAD_SCHEMA = b'{"dataset": "sales", "uris": ["/d/p.parquet"], "num_rows": -5}'


def _topic(bootstrap: str, partitions: int = 1) -> str:
    name = f"test.events.{uuid.uuid4().hex[:10]}"
    ensure_topic(bootstrap, name, partitions)
    return name


def _events(n: int, dataset: str = "sales") -> list[DataArrival]:
    return [
        DataArrival(dataset=dataset, uris=[f"/data/{dataset}/part-{i}.parquet"], num_rows=10 + i)
        for i in range(n)
    ]


def _group() -> str:
    return f"test-group-{uuid.uuid4().hex[:8]}"


def test_round_trip_keeps_going_past_bad_records(
    kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    topic = _topic(kafka_bootstrap)
    before, after = _events(2), _events(2)
    with EventProducer(kafka_bootstrap) as producer:
        assert producer.publish(before, topic) == [(0, 0), (0, 1)]
        assert producer.publish_raw(BAD_JSON, topic) == (0, 2)
        producer.publish_raw(BAD_SCHEMA, topic)
        producer.publish_raw(None, topic, key=b"sales")  # a tombstone
        assert producer.publish(after, topic) == [(0, 5), (0, 6)]

    caplog.set_level(logging.WARNING, logger="streamtune.events.source")
    with KafkaEventSource(kafka_bootstrap, [topic], _group()) as source:
        records = _drain(source, 7)

    assert [r.offset for r in records] == list(range(7))
    assert [r.ok for r in records] == [True, True, False, False, False, True, True]
    assert [r.event for r in records if r.ok] == before + after
    bad_json, bad_schema, tombstone = records[2:5]
    assert bad_json.error is not None and bad_json.error.startswith("event is not valid JSON")
    assert bad_json.raw == BAD_JSON and bad_json.event is None
    assert bad_schema.error == 'Got "-5" for event.num_rows; input should be greater than or equal to 0'
    assert tombstone.error is not None and "tombstone" in tombstone.error and tombstone.raw is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"{topic}[0] offset 3" in w and "event.num_rows" in w for w in warnings), warnings


def test_dead_letter_topic_gets_bad_records_with_reason(kafka_bootstrap: str) -> None:
    topic, dlq = _topic(kafka_bootstrap), _topic(kafka_bootstrap)
    with EventProducer(kafka_bootstrap) as producer:
        producer.publish(_events(1), topic)
        producer.publish_raw(BAD_JSON, topic, key=b"k1")
        producer.publish_raw(BAD_SCHEMA, topic)
    with KafkaEventSource(kafka_bootstrap, [topic], _group(), dead_letter_topic=dlq) as source:
        records = _drain(source, 3)
        reasons = [r.error for r in records if not r.ok]
        # the source only returns bad records; the caller dead-letters them and waits for the acks
        source.dead_letter([DeadLetter(r, r.error or "") for r in records if not r.ok])

    reader = KafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    try:
        reader.assign([TopicPartition(dlq, 0)])
        reader.seek_to_beginning()
        dead = []
        deadline = time.monotonic() + 20
        while len(dead) < 2 and time.monotonic() < deadline:
            for batch in reader.poll(timeout_ms=500).values():
                dead.extend(batch)
    finally:
        reader.close()

    assert [m.value for m in dead] == [BAD_JSON, BAD_SCHEMA]
    assert dead[0].key == b"k1"
    headers = [dict(m.headers) for m in dead]
    assert [h[ERROR_HEADER].decode() for h in headers] == reasons
    assert headers[1]["streamtune.source.topic"].decode() == topic
    assert headers[1]["streamtune.source.offset"] == b"2"


def test_commit_then_new_source_in_group_resumes_after_it(kafka_bootstrap: str) -> None:
    topic, group = _topic(kafka_bootstrap), _group()
    events = _events(5)
    with EventProducer(kafka_bootstrap) as producer:
        producer.publish(events, topic)
    with KafkaEventSource(kafka_bootstrap, [topic], group) as first:
        assert [r.event for r in _drain(first, 5)] == events
        first.commit({(topic, 0): 3})

    with KafkaEventSource(kafka_bootstrap, [topic], group) as second:
        resumed = _drain(second, 2)
        assert [r.offset for r in resumed] == [3, 4]
        assert second.poll(timeout_s=1.0) == []


def test_start_offsets_override_kafka_committed_offset(kafka_bootstrap: str) -> None:
    topic, group = _topic(kafka_bootstrap), _group()
    with EventProducer(kafka_bootstrap) as producer:
        producer.publish(_events(5), topic)
    with KafkaEventSource(kafka_bootstrap, [topic], group) as first:
        _drain(first, 5)
        first.commit({(topic, 0): 4})

    # The controller's DB says offset 1 is next: it wins over Kafka's committed 4.
    with KafkaEventSource(kafka_bootstrap, [topic], group, start_offsets={(topic, 0): 1}) as source:
        assert [r.offset for r in _drain(source, 4)] == [1, 2, 3, 4]
        source.seek({(topic, 0): 3})  # and an explicit seek rewinds an assigned partition
        assert [r.offset for r in _drain(source, 2)] == [3, 4]


def test_events_are_keyed_by_dataset_across_partitions(kafka_bootstrap: str) -> None:
    topic = _topic(kafka_bootstrap, partitions=2)
    sales, stock = _events(3, "sales"), _events(3, "stock")
    with EventProducer(kafka_bootstrap) as producer:
        placed = producer.publish([e for pair in zip(sales, stock, strict=True) for e in pair], topic)
    assert len({p for p, _ in placed[0::2]}) == 1 and len({p for p, _ in placed[1::2]}) == 1

    with KafkaEventSource(kafka_bootstrap, [topic], _group()) as source:
        records = _drain(source, 6)
        assert source.assignment() == {(topic, 0), (topic, 1)}
    by_dataset: dict[str, list[DataArrival]] = {}
    for r in records:
        assert r.event is not None
        by_dataset.setdefault(r.event.dataset, []).append(r.event)
    assert by_dataset == {"sales": sales, "stock": stock}


class _KafkaStream:
    def __init__(self, bootstrap: str, assign: bool = False) -> None:
        self.bootstrap, self.topic = bootstrap, _topic(bootstrap)
        self.prefix = _group()
        self.assign = assign
        self.dlq = _topic(bootstrap)

    def dead_letters(self) -> list[tuple[bytes | None, dict[str, bytes]]]:
        """Everything on the dead-letter topic so far: value and headers, in order."""
        reader = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        try:
            tp = TopicPartition(self.dlq, 0)
            reader.assign([tp])
            end = reader.end_offsets([tp])[tp]
            reader.seek_to_beginning()
            out: list[tuple[bytes | None, dict[str, bytes]]] = []
            deadline = time.monotonic() + 20
            while len(out) < end and time.monotonic() < deadline:
                for batch in reader.poll(timeout_ms=500).values():
                    out.extend((m.value, dict(m.headers)) for m in batch)
            return out
        finally:
            reader.close()

    def append(self, values: list[bytes | None]) -> None:
        with EventProducer(self.bootstrap) as producer:
            for value in values:
                producer.publish_raw(value, self.topic, key=b"sales")

    def open(self, start_offsets=None, group=None) -> KafkaEventSource:
        return KafkaEventSource(self.bootstrap, [self.topic], f"{self.prefix}-{group or uuid.uuid4().hex[:6]}",
                                start_offsets=start_offsets, assign=self.assign, dead_letter_topic=self.dlq)


class TestKafkaEventSourceConformance(EventSourceConformance):
    @pytest.fixture
    def stream(self, kafka_bootstrap: str) -> _KafkaStream:
        return _KafkaStream(kafka_bootstrap)


class TestAssignedKafkaEventSourceConformance(EventSourceConformance):
    """The controller's mode: partitions taken directly under its lease, no group membership."""

    @pytest.fixture
    def stream(self, kafka_bootstrap: str) -> _KafkaStream:
        return _KafkaStream(kafka_bootstrap, assign=True)


def test_an_assigned_source_reads_at_once_while_a_dead_group_member_would_hold_the_partitions(
    kafka_bootstrap: str,
) -> None:
    topic, group = _topic(kafka_bootstrap, partitions=2), _group()
    with EventProducer(kafka_bootstrap) as producer:
        producer.publish(_events(4), topic)
    # A member that joined the group and vanished without leaving: a subscriber of the group would wait for
    # its session to expire; the assigned source does not join the group at all.
    stale = KafkaEventSource(kafka_bootstrap, [topic], group, session_timeout_ms=30000)
    _drain(stale, 4)
    started = time.monotonic()
    with KafkaEventSource(kafka_bootstrap, [topic], group, assign=True) as source:
        records = _drain(source, 4, timeout_s=10)
        assert source.assignment() == {(topic, 0), (topic, 1)}
        source.commit({(r.topic, r.partition): r.next_offset for r in records})  # refused by Kafka: logged only
    assert time.monotonic() - started < 5
    stale._consumer.close(autocommit=False)
