"""A small producer helper that publishes DataArrival events to Kafka.

Example:
    >>> from streamtune.events.schema import DataArrival
    >>> event = DataArrival(dataset="sales", uris=["/d/p0.parquet"], num_rows=10)
    >>> with EventProducer("127.0.0.1:19092") as producer:  # doctest: +SKIP
    ...     producer.publish([event], "streamtune.data")
    [(0, 0)]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from streamtune.errors import ServiceError
from streamtune.events.schema import DataArrival

_SEND_TIMEOUT_S = 30


class EventProducer:
    """Publishes events with ``acks='all'``, keyed by dataset so one dataset's events stay in order.

    Args:
        bootstrap: ``host:port`` of the cluster.
        **producer_config: Extra ``KafkaProducer`` settings.

    Raises:
        ServiceError: The cluster did not answer.

    Example:
        >>> producer = EventProducer("127.0.0.1:19092")  # doctest: +SKIP
        >>> producer.publish_raw(b"not json", "streamtune.data")  # doctest: +SKIP
        (0, 1)
        >>> producer.close()  # doctest: +SKIP
    """

    def __init__(self, bootstrap: str, **producer_config: Any) -> None:
        self.bootstrap = bootstrap
        config = {"acks": "all", **producer_config}
        try:
            self._producer = KafkaProducer(bootstrap_servers=bootstrap, **config)
        except KafkaError as exc:
            raise ServiceError(
                f"Kafka at {bootstrap} did not answer the event producer: {exc}",
                fix="start the broker (streamtune up), or check STREAMTUNE_KAFKA_BOOTSTRAP",
            ) from None

    def publish(self, events: Iterable[DataArrival], topic: str) -> list[tuple[int, int]]:
        """Send ``events`` to ``topic``, wait until all are acknowledged, and return where they landed.

        Args:
            events: Events to send, in order.
            topic: Target topic.

        Returns:
            ``(partition, offset)`` of each event, in the order given.

        Raises:
            ServiceError: A send was not acknowledged.

        Example:
            >>> ev = DataArrival(dataset="sales", rows=[{"x": 1}], num_rows=1)
            >>> producer.publish([ev], "streamtune.data")  # doctest: +SKIP
            [(0, 3)]
        """
        sends = [(ev.to_bytes(), ev.dataset.encode()) for ev in events]
        return self._send_all(topic, sends)

    def publish_raw(self, value: bytes | None, topic: str, key: bytes | None = None) -> tuple[int, int]:
        """Send one raw value (maybe invalid, or None for a tombstone); for tests and replays.

        Example:
            >>> producer.publish_raw(b"{oops", "streamtune.data")  # doctest: +SKIP
            (0, 4)
        """
        return self._send_all(topic, [(value, key)])[0]

    def close(self) -> None:
        """Flush and close the connection; safe to call twice."""
        self._producer.close()

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _send_all(self, topic: str, sends: Sequence[tuple[bytes | None, bytes | None]]) -> list[tuple[int, int]]:
        try:
            futures = [self._producer.send(topic, value=value, key=key) for value, key in sends]
            self._producer.flush(timeout=_SEND_TIMEOUT_S)
            metadata = [f.get(timeout=_SEND_TIMEOUT_S) for f in futures]
        except KafkaError as exc:
            raise ServiceError(
                f"Could not publish {len(sends)} event(s) to topic {topic!r} at {self.bootstrap}: {exc}",
                fix="check that the broker is up and the topic exists",
            ) from None
        return [(md.partition, md.offset) for md in metadata]
