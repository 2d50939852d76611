"""Exactly-once triggering against the real broker: offsets, windows and runs are stored together, a
restarted controller resumes from the registry's offsets, and bad events are dead-lettered, not fatal."""

import time
import uuid

import pytest
from kafka import KafkaConsumer

from streamtune.artifacts import ArtifactStore
from streamtune.config import JobSpec
from streamtune.controller.ingest import Ingestor
from streamtune.events import DataArrival, EventProducer, KafkaEventSource
from streamtune.registry import SqliteRegistry
from streamtune.runtime.kafka import ensure_topic

pytestmark = pytest.mark.integration


def _spec(topic):
    return JobSpec.parse({
        "name": "demo", "dataset": {"name": "sales", "label": "y", "uri_roots": ["/d"]},
        "trigger": {"topic": topic, "min_rows": 300, "max_wait": "10m"},
        "job": {"entrypoint": "jobs.tabular_gbdt:Job"},
        "sweep": {"metric": "rmse", "mode": "min", "space": {"a": {"type": "int", "low": 1, "high": 3}}},
        "serve": {"app": "sales"},
    })


def _steps(ing, source, specs, until, timeout=30):
    deadline = time.monotonic() + timeout
    inserted = []
    while time.monotonic() < deadline:
        inserted += ing.step(source, specs, poll_s=0.5)
        if until(inserted):
            return inserted
    raise AssertionError(f"condition not met; inserted={inserted}, offsets={ing.offsets}")


def test_restart_resumes_window_from_registry_offsets_and_dead_letters_bad_events(kafka_bootstrap, tmp_path):
    topic, dlq, group = f"t-{uuid.uuid4().hex[:8]}", f"dlq-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    ensure_topic(kafka_bootstrap, topic)
    ensure_topic(kafka_bootstrap, dlq)
    specs = {"demo": _spec(topic)}
    reg = SqliteRegistry(f"sqlite:///{tmp_path}/r.db")
    ev = [DataArrival(dataset="sales", uris=[f"/d/{i}.parquet"], num_rows=100) for i in range(3)]
    with EventProducer(kafka_bootstrap) as prod:
        prod.publish(ev[:2], topic)
        prod.publish_raw(b"{not json", topic)

    # first controller: consumes two good events and one bad one, window stays open (200 < 300 rows)
    ing = Ingestor(reg, group, ArtifactStore(str(tmp_path)))
    src = KafkaEventSource(kafka_bootstrap, [topic], group, start_offsets=ing.offsets, dead_letter_topic=dlq)
    _steps(ing, src, specs, until=lambda _: ing.offsets.get((topic, 0)) == 3)
    src.close()  # "crash": Kafka's committed offsets may lag, the registry's are the truth
    assert reg.load_offsets(group) == {(topic, 0): 3}
    assert [e["event_id"] for e in reg.load_windows()["demo"]["events"]] == [e.event_id for e in ev[:2]]
    assert ing.bad_events == 1

    with EventProducer(kafka_bootstrap) as prod:
        prod.publish(ev[2:], topic)
    # second controller in a NEW group (no Kafka commits at all): it seeks to the registry's offsets
    ing2 = Ingestor(reg, group, ArtifactStore(str(tmp_path)))
    src2 = KafkaEventSource(kafka_bootstrap, [topic], f"{group}-new", start_offsets=ing2.offsets)
    inserted = _steps(ing2, src2, specs, until=lambda ins: len(ins) == 1)
    src2.close()
    run = reg.get_run(inserted[0])
    assert run.event_ids == [e.event_id for e in ev[:3]], "the replayed events were not counted twice"
    assert run.num_rows == 300 and run.offsets == {f"{topic}:0": [0, 3]}
    assert reg.load_windows() == {}

    consumer = KafkaConsumer(dlq, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=10000)
    bad = next(iter(consumer))
    consumer.close()
    assert bad.value == b"{not json"
    assert b"not valid JSON" in dict(bad.headers)["streamtune.error"]
