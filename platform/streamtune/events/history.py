"""Read a topic's retained history, with a consumer of its own: what a replay rebuilds windows from.

:func:`read_history` assigns every partition of the topic to a fresh consumer (no group membership, nothing
committed), seeks each to ``from_offset`` or to the first record at or after ``from_time`` (Kafka's
``offsets_for_times``), and reads until the end offsets taken when it started, so records that arrive during
the replay are left to the live consumer. Records come back decoded, in offset order per partition.

Example:
    >>> records = list(read_history("127.0.0.1:19092", "streamtune.data", from_offset=0))  # doctest: +SKIP
    >>> records[0].offset  # doctest: +SKIP
    0
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from streamtune.errors import ServiceError
from streamtune.events.schema import MAX_EVENT_BYTES
from streamtune.events.source import EventRecord

__all__ = ["read_history"]

IDLE_TIMEOUT_S = 10.0
"""How long a replay waits for the broker to return records it knows exist before it gives up."""


def _starts(consumer: KafkaConsumer, parts: list[TopicPartition], first: dict[TopicPartition, int],
            from_offset: int | None, from_time: float | None) -> dict[TopicPartition, int]:
    if from_offset is not None:
        return {tp: max(from_offset, first[tp]) for tp in parts}
    assert from_time is not None
    found = consumer.offsets_for_times({tp: int(from_time * 1000) for tp in parts})
    return {tp: (found[tp].offset if found.get(tp) is not None else -1) for tp in parts}


def read_history(bootstrap: str, topic: str, *, from_offset: int | None = None, from_time: float | None = None,
                 max_event_bytes: int = MAX_EVENT_BYTES) -> Iterator[EventRecord]:
    """Yield the topic's records from ``from_offset`` / ``from_time`` up to its end offsets at the start.

    Raises:
        ServiceError: the broker did not answer, or stopped returning records it holds.
    """
    try:
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                 auto_offset_reset="earliest", consumer_timeout_ms=1000)
    except KafkaError as exc:
        raise ServiceError(f"Kafka at {bootstrap} did not answer the replay of {topic}: {exc}") from None
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not parts:
            raise ServiceError(f"topic {topic} has no partitions at {bootstrap}; nothing to replay")
        consumer.assign(parts)
        first, end = consumer.beginning_offsets(parts), consumer.end_offsets(parts)
        starts = _starts(consumer, parts, first, from_offset, from_time)
        todo = {tp for tp in parts if 0 <= starts[tp] < end[tp]}
        for tp in todo:
            consumer.seek(tp, starts[tp])
        yield from _drain(consumer, todo, end, max_event_bytes)
    except KafkaError as exc:
        raise ServiceError(f"Kafka at {bootstrap} failed the replay of {topic}: {exc}") from None
    finally:
        consumer.close()


def _drain(consumer: KafkaConsumer, todo: set[TopicPartition], end: dict[TopicPartition, int],
           max_event_bytes: int) -> Iterator[EventRecord]:
    idle_since = time.monotonic()
    while todo:
        batches = consumer.poll(timeout_ms=500)
        if not batches:
            if time.monotonic() - idle_since > IDLE_TIMEOUT_S:
                raise ServiceError(f"the broker returned no records for {sorted(map(str, todo))} in "
                                   f"{IDLE_TIMEOUT_S:g} s, below their end offsets")
            continue
        idle_since = time.monotonic()
        for tp in sorted(batches, key=lambda t: t.partition):
            for msg in batches[tp]:
                if msg.offset >= end[tp]:
                    break
                yield EventRecord.decode(msg.topic, msg.partition, msg.offset, msg.value, msg.key,
                                         max_bytes=max_event_bytes)
            if consumer.position(tp) >= end[tp]:
                todo.discard(tp)
                consumer.pause(tp)
