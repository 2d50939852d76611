"""Events: the DataArrival schema, a Kafka source (group or assigned), the dead-letter topic and a producer."""

from streamtune.events.dlq import DeadLetter
from streamtune.events.producer import EventProducer
from streamtune.events.schema import DataArrival
from streamtune.events.source import EventRecord, EventSource, KafkaEventSource

__all__ = ["DataArrival", "DeadLetter", "EventProducer", "EventRecord", "EventSource", "KafkaEventSource"]
