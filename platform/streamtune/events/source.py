"""Event sources: where DataArrival events come from, behind one small ABC.

:class:`KafkaEventSource` reads a Kafka consumer group. Offsets are the caller's to keep: the controller
stores them in its DB with the window state and passes them back as ``start_offsets`` on restart, so
Kafka's committed offsets are only a hint for a group with no stored state.

Example:
    >>> with KafkaEventSource("127.0.0.1:19092", ["streamtune.data"], "ctl") as source:  # doctest: +SKIP
    ...     for record in source.poll(timeout_s=1.0):
    ...         print(record.offset, record.event or record.error)
"""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.errors import KafkaError

from streamtune.errors import EventError, ServiceError
from streamtune.events.dlq import ERROR_HEADER, DeadLetter, DeadLetterWriter

__all__ = ["ERROR_HEADER", "EventRecord", "EventSource", "KafkaEventSource", "Offsets", "Watermarks"]
from streamtune.events.schema import MAX_EVENT_BYTES, DataArrival

log = logging.getLogger(__name__)

Offsets = dict[tuple[str, int], int]
"""``{(topic, partition): offset}``; an offset is always the NEXT one to read."""

ASSIGN_REFRESH_S = 30.0
"""How often a source with ``assign=True`` looks for new partitions of its topics."""

Watermarks = dict[tuple[str, int], tuple[int, int]]
"""``{(topic, partition): (earliest offset, end offset)}``: the end offset is the NEXT one to be written."""


@dataclass(frozen=True)
class EventRecord:
    """One record read from a source: a decoded event, or the reason it could not be decoded.

    Attributes:
        topic: Topic it was read from.
        partition: Partition it was read from.
        offset: Its offset; resume after it with ``{(topic, partition): offset + 1}``.
        event: The decoded event, or None for a bad record.
        error: Why the record is bad (an :class:`EventError` headline), or None.
        raw: The record's value as read (None for a tombstone).
        key: The record's key as read.

    Example:
        >>> ev = DataArrival(dataset="sales", rows=[{"x": 1}], num_rows=1)
        >>> rec = EventRecord("streamtune.data", 0, 41, ev, None, ev.to_bytes())
        >>> rec.ok, rec.next_offset
        (True, 42)
    """

    topic: str
    partition: int
    offset: int
    event: DataArrival | None
    error: str | None = None
    raw: bytes | None = None
    key: bytes | None = None

    @property
    def ok(self) -> bool:
        """True when the record decoded to an event."""
        return self.event is not None

    @property
    def next_offset(self) -> int:
        """The offset to commit or store once this record is handled."""
        return self.offset + 1

    @classmethod
    def decode(cls, topic: str, partition: int, offset: int, raw: bytes | None, key: bytes | None = None, *,
               max_bytes: int = MAX_EVENT_BYTES) -> EventRecord:
        """Decode a raw value into a good or a bad record (bigger than ``max_bytes`` is bad); never raises.

        Example:
            >>> EventRecord.decode("t", 0, 7, b"{oops").error.startswith("event is not valid JSON")
            True
        """
        try:
            return cls(topic, partition, offset, DataArrival.from_bytes(raw, max_bytes=max_bytes), None, raw, key)
        except EventError as exc:
            return cls(topic, partition, offset, None, exc.headline, raw, key)


class EventSource(abc.ABC):
    """Where events come from. Every implementation runs the same conformance tests.

    Offsets (in :meth:`commit` and :meth:`seek`) map ``(topic, partition)`` to the NEXT offset to read.

    Example:
        >>> class Empty(EventSource):
        ...     def poll(self, timeout_s=1.0, max_records=None): return []
        ...     def commit(self, offsets): pass
        ...     def seek(self, offsets): pass
        ...     def close(self): pass
        >>> with Empty() as source:
        ...     source.poll()
        []
    """

    @abc.abstractmethod
    def poll(self, timeout_s: float = 1.0, max_records: int | None = None) -> list[EventRecord]:
        """Return the records that arrived within ``timeout_s`` (maybe none), in offset order per partition.

        Bad records come back with ``event=None`` and ``error`` set; they never raise.
        """

    @abc.abstractmethod
    def commit(self, offsets: Offsets) -> None:
        """Record ``offsets`` (next offset to read) as processed, as a hint for the next reader."""

    @abc.abstractmethod
    def seek(self, offsets: Offsets) -> None:
        """Make the next :meth:`poll` read from ``offsets`` (next offset to read)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the source's connections; safe to call twice."""

    def dead_letter(self, letters: Sequence[DeadLetter]) -> None:
        """Copy ``letters`` to the dead-letter topic with their reasons and wait until each is acknowledged.

        The caller stores its offsets past a refused record only after this returns.

        Raises:
            ServiceError: a letter was not acknowledged, or this source has no dead-letter topic (the
                default): the records stay unconsumed.
        """
        if letters:
            raise ServiceError(f"{type(self).__name__} has no dead-letter topic; {len(letters)} refused record(s) "
                               "stay unconsumed", fix="give the source a dead_letter_topic")

    def watermarks(self, partitions: Iterable[tuple[str, int]]) -> Watermarks:
        """Return the earliest and end offsets of ``partitions``; empty when the source cannot tell (the default)."""
        return {}

    def __enter__(self) -> EventSource:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class _SeekOnAssign(ConsumerRebalanceListener):
    """Seeks newly assigned partitions to the positions the source knows, over Kafka's committed offsets."""

    def __init__(self, source: KafkaEventSource) -> None:
        self._source = source

    def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    def on_partitions_assigned(self, assigned: Any) -> None:
        self._source._apply_positions(assigned)


class KafkaEventSource(EventSource):
    """A Kafka consumer-group source of DataArrival events.

    Auto-commit is off: offsets move in Kafka only through :meth:`commit`. Whenever partitions are assigned,
    they are sought to ``start_offsets``, then to the position after the last record :meth:`poll` returned,
    so a rebalance neither repeats nor skips records. Partitions with no known position start at Kafka's
    committed offset, or at the earliest offset for a new group.

    With ``assign=True`` the source takes every partition of its topics itself instead of joining the
    group: no rebalance, so it reads at once. The controller does this under its lease, which already
    guarantees a single reader; new partitions are picked up within ``ASSIGN_REFRESH_S``.

    Args:
        bootstrap: ``host:port`` of the cluster.
        topics: Topics to subscribe to.
        group_id: Consumer group.
        start_offsets: ``{(topic, partition): next offset}`` to start from (e.g. from the controller's DB).
        dead_letter_topic: Where :meth:`dead_letter` sends refused records, with the reason in the
            ``streamtune.error`` header and their origin in ``streamtune.source.*`` headers. Bad records are
            returned by :meth:`poll` with ``error`` set; the caller decides and dead-letters them.
        assign: Take all partitions directly (no group membership); commits still go to ``group_id``.
        max_event_bytes: Records with a bigger value come back bad ("event is N bytes ...").
        **consumer_config: Extra ``KafkaConsumer`` settings (e.g. ``session_timeout_ms``).

    Raises:
        ServiceError: The cluster did not answer.

    Example:
        >>> source = KafkaEventSource(  # doctest: +SKIP
        ...     "127.0.0.1:19092", ["streamtune.data"], "streamtune-controller",
        ...     start_offsets={("streamtune.data", 0): 42}, dead_letter_topic="streamtune.data.dlq")
        >>> records = source.poll(timeout_s=2.0)  # doctest: +SKIP
        >>> source.commit({(r.topic, r.partition): r.next_offset for r in records})  # doctest: +SKIP
    """

    def __init__(
        self,
        bootstrap: str,
        topics: Sequence[str],
        group_id: str,
        start_offsets: Offsets | None = None,
        *,
        dead_letter_topic: str | None = None,
        assign: bool = False,
        max_event_bytes: int = MAX_EVENT_BYTES,
        **consumer_config: Any,
    ) -> None:
        self.bootstrap = bootstrap
        self.topics = list(topics)
        self.group_id = group_id
        self.dead_letter_topic = dead_letter_topic
        self.max_event_bytes = max_event_bytes
        self._positions: Offsets = dict(start_offsets or {})
        self._dlq = DeadLetterWriter(bootstrap, dead_letter_topic) if dead_letter_topic else None
        self._closed = False
        config = {"enable_auto_commit": False, "auto_offset_reset": "earliest", **consumer_config}
        try:
            self._consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, **config)
        except KafkaError as exc:
            raise ServiceError(
                f"Kafka at {bootstrap} did not answer the consumer of group {group_id!r}: {exc}",
                fix="start the broker (streamtune up), or check STREAMTUNE_KAFKA_BOOTSTRAP",
            ) from None
        self._assign = assign
        self._assigned_at = 0.0
        if assign:
            self._assign_all()
        else:
            self._consumer.subscribe(topics=self.topics, listener=_SeekOnAssign(self))

    def poll(self, timeout_s: float = 1.0, max_records: int | None = None) -> list[EventRecord]:
        """Return the records that arrived within ``timeout_s``; bad ones have ``error`` set.

        Example:
            >>> [r.offset for r in source.poll(timeout_s=2.0)]  # doctest: +SKIP
            [0, 1, 2]
        """
        if self._assign and time.monotonic() - self._assigned_at > ASSIGN_REFRESH_S:
            self._assign_all()
        try:
            batches = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        except KafkaError as exc:
            raise ServiceError(f"Kafka at {self.bootstrap} failed a poll of {self.topics}: {exc}") from None
        records: list[EventRecord] = []
        decode, limit = EventRecord.decode, self.max_event_bytes
        for tp in sorted(batches):
            msgs = batches[tp]
            for msg in msgs:
                records.append(decode(msg.topic, msg.partition, msg.offset, msg.value, msg.key, max_bytes=limit))
            if msgs:
                self._positions[(tp.topic, tp.partition)] = msgs[-1].offset + 1
        for record in records:
            if not record.ok:
                log.warning("Bad event at %s[%d] offset %d: %s", *_where(record), record.error)
        return records

    def dead_letter(self, letters: Sequence[DeadLetter]) -> None:
        """Send ``letters`` to the dead-letter topic and wait for every acknowledgement.

        Raises:
            ServiceError: one was not acknowledged, or the source has no dead-letter topic.

        Example:
            >>> source.dead_letter([DeadLetter(record, "no spec for dataset sales")])  # doctest: +SKIP
        """
        if not letters:
            return
        if self._dlq is None:
            super().dead_letter(letters)
            return
        self._dlq.send(letters)

    def watermarks(self, partitions: Iterable[tuple[str, int]]) -> Watermarks:
        """Earliest and end offsets of ``partitions``, asked of the broker.

        Raises:
            ServiceError: the broker did not answer.

        Example:
            >>> source.watermarks([("streamtune.data", 0)])  # doctest: +SKIP
            {('streamtune.data', 0): (0, 42)}
        """
        tps = [TopicPartition(t, p) for t, p in partitions]
        if not tps:
            return {}
        try:
            first = self._consumer.beginning_offsets(tps)
            end = self._consumer.end_offsets(tps)
        except KafkaError as exc:
            raise ServiceError(f"Kafka at {self.bootstrap} did not give the offsets of {tps}: {exc}") from None
        return {(tp.topic, tp.partition): (int(first[tp]), int(end[tp])) for tp in tps if tp in first and tp in end}

    def commit(self, offsets: Offsets) -> None:
        """Commit ``offsets`` (next offset to read) to the group in Kafka.

        Example:
            >>> source.commit({("streamtune.data", 0): 3})  # doctest: +SKIP
        """
        if not offsets:
            return
        payload = {TopicPartition(t, p): OffsetAndMetadata(off, "", -1) for (t, p), off in offsets.items()}
        try:
            self._consumer.commit(payload)
        except KafkaError as exc:
            if self._assign:  # a hint only; a member of the group that has not expired yet refuses it
                log.warning("Kafka did not take the offset hint %s for group %r: %s", offsets, self.group_id, exc)
                return
            raise ServiceError(f"Could not commit {offsets} for group {self.group_id!r}: {exc}") from None

    def seek(self, offsets: Offsets) -> None:
        """Read from ``offsets`` next: now for assigned partitions, on assignment for the others.

        Example:
            >>> source.seek({("streamtune.data", 0): 0})  # doctest: +SKIP
        """
        self._positions.update(offsets)
        self._apply_positions(self._consumer.assignment())

    def close(self) -> None:
        """Leave the group and close connections, without committing anything."""
        if self._closed:
            return
        self._closed = True
        self._consumer.close(autocommit=False)
        if self._dlq is not None:
            self._dlq.close()

    def assignment(self) -> set[tuple[str, int]]:
        """The ``(topic, partition)`` pairs this member holds now (empty until the group is joined)."""
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def _assign_all(self) -> None:
        """Assign every partition of the topics (waiting briefly for metadata) and seek the new ones."""
        deadline = time.monotonic() + 10
        wanted: set[TopicPartition] = set()
        for topic in self.topics:
            parts = self._consumer.partitions_for_topic(topic)
            while not parts and time.monotonic() < deadline:
                self._consumer.topics()  # forces a metadata refresh
                parts = self._consumer.partitions_for_topic(topic)
            if not parts:
                raise ServiceError(f"Kafka at {self.bootstrap} has no partitions for topic {topic!r}",
                                   fix="create the topic first (the controller does with ensure_topic)")
            wanted |= {TopicPartition(topic, p) for p in parts}
        current = set(self._consumer.assignment())
        if wanted != current:
            self._consumer.assign(sorted(wanted))
            self._apply_positions(wanted - current)
        self._assigned_at = time.monotonic()

    def _apply_positions(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            offset = self._positions.get((tp.topic, tp.partition))
            if offset is not None:
                log.debug("Seeking %s[%d] to offset %d", tp.topic, tp.partition, offset)
                self._consumer.seek(tp, offset)


def _where(record: EventRecord) -> tuple[str, int, int]:
    return record.topic, record.partition, record.offset
