"""Events: the DataArrival schema, a Kafka consumer-group source and a producer helper."""

from streamtune.events.producer import EventProducer
from streamtune.events.schema import DataArrival
from streamtune.events.source import EventRecord, EventSource, KafkaEventSource

__all__ = ["DataArrival", "EventProducer", "EventRecord", "EventSource", "KafkaEventSource"]
