"""Embedded local services for the demo and the tests: a local Apache Kafka broker (KRaft)."""

from streamtune.dev.kafka import LocalKafka

__all__ = ["LocalKafka"]
