"""Embedded local services for the laptop mode (``Client.local()``, ``streamtune up``) and the tests.

A local Apache Kafka broker (KRaft) and a local Ray. Production deployments point ``STREAMTUNE_KAFKA_BOOTSTRAP``
and ``STREAMTUNE_RAY_ADDRESS`` at their own clusters instead.
"""

from streamtune.embedded.kafka import LocalKafka
from streamtune.embedded.ray import LocalRay

__all__ = ["LocalKafka", "LocalRay"]
