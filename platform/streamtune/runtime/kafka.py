"""Kafka admin adapters: does a cluster answer, create a topic, list a topic's partitions.

Example:
    >>> answers("127.0.0.1:1", timeout_s=1)
    False
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamtune.errors import ServiceError

if TYPE_CHECKING:
    from kafka import KafkaAdminClient

__all__ = ["answers", "ensure_topic"]


def _admin(bootstrap: str, timeout_s: float) -> KafkaAdminClient:
    from kafka import KafkaAdminClient  # lazily: importing streamtune.runtime stays cheap

    ms = max(int(timeout_s * 1000), 1000)
    return KafkaAdminClient(bootstrap_servers=bootstrap, bootstrap_timeout_ms=ms, request_timeout_ms=ms)


def answers(bootstrap: str, timeout_s: float = 5.0) -> bool:
    """True when a Kafka cluster at ``bootstrap`` answers a list-topics request."""
    from kafka.errors import KafkaError

    try:
        admin = _admin(bootstrap, timeout_s)
    except (KafkaError, OSError, ValueError):
        return False
    try:
        admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def ensure_topic(
    bootstrap: str,
    name: str,
    partitions: int = 1,
    *,
    replication_factor: int | None = None,
    timeout_s: float = 30,
) -> None:
    """Create topic ``name`` unless it exists; wait until it has a leader.

    Args:
        bootstrap: ``host:port`` of the cluster.
        name: Topic name.
        partitions: Partition count of a new topic (an existing topic is left as it is).
        replication_factor: Replicas of a new topic; None uses the broker's default.
        timeout_s: How long to wait for the cluster.

    Raises:
        ServiceError: The cluster did not answer or refused the topic.

    Example:
        >>> ensure_topic("127.0.0.1:19092", "streamtune.data")  # doctest: +SKIP
    """
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    spec = {"num_partitions": partitions, "replication_factor": replication_factor or -1}
    try:
        admin = _admin(bootstrap, timeout_s)
    except KafkaError as exc:
        raise ServiceError(
            f"Kafka at {bootstrap} did not answer: {exc}",
            fix="start the broker (streamtune up), or check STREAMTUNE_KAFKA_BOOTSTRAP",
        ) from None
    try:
        admin.create_topics({name: spec}, timeout_ms=int(timeout_s * 1000))
    except TopicAlreadyExistsError:
        pass
    except KafkaError as exc:
        raise ServiceError(f'Could not create topic "{name}" at {bootstrap}: {exc}') from None
    try:
        admin.wait_for_topics([name], timeout_ms=int(timeout_s * 1000))
    except KafkaError as exc:
        raise ServiceError(f'Topic "{name}" at {bootstrap} has no leader yet: {exc}') from None
    finally:
        admin.close()
