"""Broker restart: the Kafka broker is stopped and started again mid-stream (a broker of this test's own, not the
session's); the same consumer and dead-letter producer recover, and every event lands in exactly one run."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer

from fixtures_kafka import _free_port_pair
from streamtune.artifacts import ArtifactStore
from streamtune.config import JobSpec
from streamtune.config.settings import Settings
from streamtune.controller.ingest import Ingestor
from streamtune.embedded.kafka import LocalKafka
from streamtune.errors import StreamtuneError
from streamtune.events import DataArrival, KafkaEventSource
from streamtune.registry import SqliteRegistry
from streamtune.runtime.kafka import ensure_topic

pytestmark = pytest.mark.integration


def _spec(topic: str) -> JobSpec:
    return JobSpec.parse({
        "name": "demo", "dataset": {"name": "sales", "label": "y", "uri_roots": ["/srv"]},
        "trigger": {"topic": topic, "min_rows": 100, "max_wait": "1h"},
        "job": {"entrypoint": "jobs.tabular_gbdt:Job"},
        "sweep": {"metric": "rmse", "mode": "min", "space": {"a": {"type": "int", "low": 1, "high": 3}}},
        "serve": {"app": "demo"},
    })


class Loop(threading.Thread):
    """The controller's ingest turn in a thread: step, log an error and go on, like ``Controller._turn``."""

    def __init__(self, ing: Ingestor, source: KafkaEventSource, specs) -> None:
        super().__init__(daemon=True)
        self.ing, self.source, self.specs = ing, source, specs
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.ing.step(self.source, self.specs, poll_s=0.2)
            except StreamtuneError as exc:
                self.errors.append(exc.headline)
                self.stop.wait(0.2)


def _publish(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for v in values:
        producer.send(topic, value=v, key=b"k")
    producer.flush()
    producer.close()


def _wait(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_broker_restart_mid_stream_the_consumer_recovers_and_nothing_is_lost(tmp_path):
    kafka = LocalKafka(Settings(home=tmp_path / "kafka-home", kafka_port=_free_port_pair()))
    bootstrap = kafka.start(timeout=120)
    loop = None
    try:
        topic, dlq, group = f"t-{uuid.uuid4().hex[:6]}", f"dlq-{uuid.uuid4().hex[:6]}", "g"
        ensure_topic(bootstrap, topic)
        ensure_topic(bootstrap, dlq)
        reg = SqliteRegistry(f"sqlite:///{tmp_path}/r.db")
        specs = {"demo": _spec(topic)}
        reg.put_spec(specs["demo"])
        ing = Ingestor(reg, group, ArtifactStore(str(tmp_path / "store")))
        source = KafkaEventSource(bootstrap, [topic], group, start_offsets=ing.offsets, dead_letter_topic=dlq,
                                  assign=True, request_timeout_ms=5000, reconnect_backoff_max_ms=500)
        loop = Loop(ing, source, specs)
        loop.start()
        events = [DataArrival(event_id=f"e{i}", dataset="sales", uris=[f"/srv/p{i}.parquet"], num_rows=10)
                  for i in range(50)]
        stored = lambda: reg.load_offsets(group).get((topic, 0), 0)  # noqa: E731

        _publish(bootstrap, topic, [e.to_bytes() for e in events[:25]])
        _wait(lambda: stored() == 25, 30, "the first half was not consumed")
        assert len(reg.list_runs()) == 2 and len(reg.load_windows()["demo"]["events"]) == 5

        kafka.stop()  # mid-stream: a window is open, the consumer and the DLQ producer are connected
        time.sleep(3)  # the loop polls a dead broker for a while
        assert loop.is_alive()
        assert kafka.start(timeout=120) == bootstrap

        _publish(bootstrap, topic, [e.to_bytes() for e in events[25:40]] + [b"{not json"]
                 + [e.to_bytes() for e in events[40:]])
        _wait(lambda: stored() == 51, 60, f"not consumed after the restart: {stored()}; errors {loop.errors[-3:]}")
        loop.stop.set()
        loop.join(timeout=10)

        runs = reg.list_runs(limit=100)
        ids = [i for r in runs for i in r.event_ids]
        assert sorted(ids) == sorted(e.event_id for e in events), "an event was lost or counted twice"
        assert len(runs) == 5 and all(r.num_rows == 100 for r in runs) and reg.load_windows() == {}
        consumer = KafkaConsumer(dlq, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                 consumer_timeout_ms=3000)
        letters = [m.value for m in consumer]
        consumer.close()
        assert letters == [b"{not json"]
        source.close()
        reg.close()
        print(f"\n[broker restart] {len(loop.errors)} failed steps while the broker was down: {loop.errors[:2]}")
    finally:
        if loop is not None:
            loop.stop.set()
        kafka.stop()
