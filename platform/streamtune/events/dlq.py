"""The dead-letter topic: every record the platform will not train on goes there, with the reason.

A :class:`DeadLetter` is a record and why it was refused. Its copy on the dead-letter topic keeps the original
value and key, with the reason in the ``streamtune.error`` header and the origin in ``streamtune.source.*``
headers. A value too big for the topic (:data:`DLQ_MAX_BYTES`) is kept in the artifact store at
``<root>/dlq/<topic>-<partition>-<offset>.bin`` (:func:`letter_for`), and the topic gets a small JSON reference
to it, with its URI in the ``streamtune.payload.uri`` header.

:class:`DeadLetterWriter` sends letters and waits until every one is acknowledged, or raises: the caller must
not store its offsets past a record that did not reach the dead-letter topic.

Example:
    >>> from streamtune.events.source import EventRecord
    >>> rec = EventRecord("sales.events", 2, 41, None, "event is not valid JSON", b"{oops", b"k")
    >>> letter = DeadLetter(rec, rec.error)
    >>> letter.value, dict(letter.headers())["streamtune.source.offset"]
    (b'{oops', b'41')
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from streamtune.errors import ServiceError

if TYPE_CHECKING:
    from streamtune.events.source import EventRecord

log = logging.getLogger(__name__)

__all__ = ["DLQ_MAX_BYTES", "ERROR_HEADER", "PAYLOAD_HEADER", "DeadLetter", "DeadLetterWriter", "letter_for"]

ERROR_HEADER = "streamtune.error"
"""Header of a dead-lettered record that holds the reason it was rejected."""
PAYLOAD_HEADER = "streamtune.payload.uri"
"""Header of a dead letter whose value was too big for the topic: where its bytes are kept."""
DLQ_MAX_BYTES = 900_000
"""Largest value plus key sent to the dead-letter topic as is (Kafka's default limit is about 1 MB per record)."""
_SEND_TIMEOUT_S = 30.0


class BytesStore(Protocol):
    """Where oversized values are kept: an :class:`~streamtune.artifacts.store.ArtifactStore`."""

    def join(self, *parts: str) -> str: ...

    def put_bytes(self, uri: str, data: bytes) -> str: ...


@dataclass(frozen=True)
class DeadLetter:
    """A record refused by the platform, why, and where its bytes are when they were too big to send.

    Attributes:
        record: The record as read.
        reason: Why it was refused (one line naming the value and the rule).
        payload_uri: Where its value is kept when too big for the dead-letter topic; None when sent as is.
    """

    record: EventRecord
    reason: str
    payload_uri: str | None = None

    @property
    def value(self) -> bytes | None:
        """What the dead-letter topic gets: the original value, or a JSON reference to the kept bytes."""
        raw = self.record.raw
        if self.payload_uri is None:
            return raw
        body = {"payload_uri": self.payload_uri, "bytes": len(raw or b""),
                "sha256": hashlib.sha256(raw or b"").hexdigest(), "reason": self.reason}
        return json.dumps(body, sort_keys=True).encode()

    def headers(self) -> list[tuple[str, bytes]]:
        """The reason and the origin of the record, as Kafka headers."""
        rec = self.record
        headers = [
            (ERROR_HEADER, self.reason.encode()),
            ("streamtune.source.topic", rec.topic.encode()),
            ("streamtune.source.partition", str(rec.partition).encode()),
            ("streamtune.source.offset", str(rec.offset).encode()),
        ]
        if self.payload_uri is not None:
            headers.append((PAYLOAD_HEADER, self.payload_uri.encode()))
        return headers


def letter_for(record: EventRecord, reason: str, store: BytesStore | None) -> DeadLetter:
    """A dead letter for ``record``; a value too big for the topic is first kept in ``store``.

    Raises:
        ServiceError: the value is too big and there is no store to keep it in.

    Example:
        >>> import tempfile
        >>> from streamtune.artifacts import ArtifactStore
        >>> from streamtune.events.source import EventRecord
        >>> store = ArtifactStore(tempfile.mkdtemp())
        >>> big = EventRecord("t", 0, 9, None, "event is too big", b"x" * (DLQ_MAX_BYTES + 1))
        >>> letter_for(big, big.error, store).payload_uri.endswith("/dlq/t-0-9.bin")
        True
    """
    size = len(record.raw or b"") + len(record.key or b"")
    if size <= DLQ_MAX_BYTES:
        return DeadLetter(record, reason)
    if store is None:
        raise ServiceError(f"record {record.topic}[{record.partition}] offset {record.offset} is {size} bytes, too "
                           "big for the dead-letter topic, and there is no artifact store to keep it in")
    uri = store.put_bytes(store.join("dlq", f"{record.topic}-{record.partition}-{record.offset}.bin"),
                          record.raw or b"")
    return DeadLetter(record, reason, payload_uri=uri)


class DeadLetterWriter:
    """Sends dead letters to one topic and waits for every acknowledgement.

    Args:
        bootstrap: ``host:port`` of the cluster.
        topic: The dead-letter topic.

    Example:
        >>> writer = DeadLetterWriter("127.0.0.1:19092", "streamtune.data.dlq")  # doctest: +SKIP
        >>> writer.send([letter])  # doctest: +SKIP
    """

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self._producer: Any = None

    def send(self, letters: Sequence[DeadLetter]) -> None:
        """Send ``letters`` in order and wait until all are acknowledged.

        Raises:
            ServiceError: one was not acknowledged (its record must stay unconsumed and be retried).
        """
        if not letters:
            return
        from kafka.errors import KafkaError

        try:
            producer = self._open()
            futures = [producer.send(self.topic, value=lt.value, key=lt.record.key, headers=lt.headers())
                       for lt in letters]
            producer.flush(timeout=_SEND_TIMEOUT_S)
            for future in futures:
                future.get(timeout=_SEND_TIMEOUT_S)
        except (KafkaError, OSError) as exc:
            # a refused batch can leave the producer in a fatal state that fails every later send (kafka-python
            # aborts all batches after e.g. MessageSizeTooLarge): the retry gets a fresh producer
            self._discard()
            raise ServiceError(
                f"could not dead-letter {len(letters)} record(s) to {self.topic} at {self.bootstrap}: {exc}",
                fix="the records stay unconsumed and are retried; check the broker and the dead-letter topic",
            ) from None
        for lt in letters:
            log.warning("dead-lettered %s[%d] offset %d to %s: %s", lt.record.topic, lt.record.partition,
                        lt.record.offset, self.topic, lt.reason)

    def _open(self) -> Any:
        if self._producer is None:
            from kafka import KafkaProducer

            self._producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", retries=3,
                                           max_request_size=2 * DLQ_MAX_BYTES)
        return self._producer

    def _discard(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=1)
            except Exception as exc:  # already failed; closing is best effort
                log.debug("closing a failed dead-letter producer: %s", exc)

    def close(self) -> None:
        """Close the producer; safe to call twice."""
        if self._producer is not None:
            self._producer.close()
            self._producer = None
