"""Regression tests of issue 8's ingest half against the real broker and a real SQLite registry.

Each test has topics of its own on the session broker and drives the real :class:`Ingestor` over a
:class:`KafkaEventSource` exactly as the controller does (``assign=True``, a dead-letter topic). The dead-letter
topic is read back with a plain kafka-python consumer: what a test asserts is what reached the broker.
"""

from __future__ import annotations

import os
import time
import uuid

import pyarrow.parquet as pq
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

from streamtune.artifacts import ArtifactStore
from streamtune.config import JobSpec
from streamtune.controller.ingest import Ingestor
from streamtune.errors import ServiceError, StreamtuneError
from streamtune.events import DataArrival, KafkaEventSource
from streamtune.events.dlq import PAYLOAD_HEADER
from streamtune.registry import SqliteRegistry

pytestmark = pytest.mark.integration


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _create(bootstrap: str, topic: str, partitions: int = 1, **configs: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1, topic_configs=configs or None)], wait_for_metadata=True)
    finally:
        admin.close()


def _spec(topic: str, *, min_rows: int, roots=("/srv",), name="demo", dataset="sales") -> JobSpec:
    return JobSpec.parse({
        "name": name, "dataset": {"name": dataset, "label": "y", "uri_roots": list(roots)},
        "trigger": {"topic": topic, "min_rows": min_rows, "max_wait": "1h"},
        "job": {"entrypoint": "jobs.tabular_gbdt:Job"},
        "sweep": {"metric": "rmse", "mode": "min", "space": {"a": {"type": "int", "low": 1, "high": 3}}},
        "serve": {"app": name},
    })


def _ev(eid: str, rows: int = 10, uri: str | None = None, dataset: str = "sales") -> DataArrival:
    return DataArrival(event_id=eid, dataset=dataset, uris=[uri or f"/srv/{eid}.parquet"], num_rows=rows)


class Rig:
    """A fresh topic and dead-letter topic, a SQLite registry with ``specs``, an ingestor and its source."""

    def __init__(self, bootstrap: str, tmp_path, spec_fn, *, dlq_configs: dict[str, str] | None = None,
                 topic_configs: dict[str, str] | None = None) -> None:
        self.bootstrap, self.tmp = bootstrap, tmp_path
        self.topic, self.dlq, self.group = _name("ing"), _name("ing-dlq"), _name("g")
        _create(bootstrap, self.topic, **(topic_configs or {}))
        _create(bootstrap, self.dlq, **(dlq_configs or {}))
        self.reg = SqliteRegistry(f"sqlite:///{tmp_path}/r.db")
        for spec in spec_fn(self.topic):
            self.reg.put_spec(spec)
        self.store = ArtifactStore(str(tmp_path / "store"))
        self.ing = Ingestor(self.reg, self.group, self.store)
        self.source = self.open_source()
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, max_request_size=3_000_000, acks="all")

    def open_source(self) -> KafkaEventSource:
        return KafkaEventSource(self.bootstrap, [self.topic], self.group, start_offsets=self.ing.offsets,
                                dead_letter_topic=self.dlq, assign=True)

    def specs(self):
        return {r.name: r.spec for r in self.reg.list_specs()}

    def send(self, values: list[bytes]) -> None:
        for value in values:
            self.producer.send(self.topic, value=value, key=b"k", partition=0)
        self.producer.flush()

    def publish(self, events: list[DataArrival]) -> None:
        self.send([e.to_bytes() for e in events])

    def until(self, cond, timeout: float = 30.0, *, errors: list[StreamtuneError] | None = None) -> list[str]:
        """Step like the controller loop (an error is logged and the step retried) until ``cond()``."""
        inserted: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                inserted += self.ing.step(self.source, self.specs(), poll_s=0.3)
            except StreamtuneError as exc:
                if errors is None:
                    raise
                errors.append(exc)
            if cond():
                return inserted
        raise AssertionError(f"not reached in {timeout}s: offsets {self.ing.offsets}, stats {self.ing.stats}")

    def offset(self) -> int:
        return self.reg.load_offsets(self.group).get((self.topic, 0), 0)

    def dead(self, want: int, timeout_s: float = 15.0) -> list[tuple[bytes, dict[str, bytes]]]:
        consumer = KafkaConsumer(self.dlq, bootstrap_servers=self.bootstrap, auto_offset_reset="earliest",
                                 consumer_timeout_ms=2000, fetch_max_bytes=5_000_000)
        out: list[tuple[bytes, dict[str, bytes]]] = []
        deadline = time.monotonic() + timeout_s
        try:
            while len(out) < want and time.monotonic() < deadline:
                out += [(m.value, dict(m.headers)) for m in consumer]
        finally:
            consumer.close()
        return out

    def close(self) -> None:
        self.source.close()
        self.producer.close()
        self.reg.close()


@pytest.fixture
def rig_factory(kafka_bootstrap, tmp_path):
    made: list[Rig] = []

    def make(spec_fn, **kw) -> Rig:
        made.append(Rig(kafka_bootstrap, tmp_path, spec_fn, **kw))
        return made[-1]

    yield make
    for rig in made:
        rig.close()


def _reasons(letters) -> list[str]:
    return [h["streamtune.error"].decode() for _, h in letters]


def test_mixed_type_inline_rows_dead_letter_the_bad_event_and_train_the_valid_ones(rig_factory):
    rig = rig_factory(lambda t: [_spec(t, min_rows=3)])
    events = [DataArrival(event_id=e, dataset="sales", rows=[{"price": p, "y": 1.0}], num_rows=1)
              for e, p in [("a", 7.5), ("bad", "7.5"), ("b", 8.0), ("c", 9.5)]]
    rig.publish(events)
    [run_id] = rig.until(lambda: rig.offset() == 4)
    run = rig.reg.get_run(run_id)
    assert run.event_ids == ["a", "b", "c"] and run.num_rows == 3
    assert pq.read_table(run.uris[0]).column("price").to_pylist() == [7.5, 8.0, 9.5]
    [(value, headers)] = rig.dead(1)
    assert value == events[1].to_bytes()
    assert headers["streamtune.error"] == b'Got "7.5" (str) for rows[0].price; the dataset schema says double'
    assert headers["streamtune.source.offset"] == b"1"
    assert rig.reg.get_spec("demo").spec.dataset.schema_["price"].type == "double", "the pinned schema is stored"


def test_dlq_produce_failure_commits_no_offsets(rig_factory):
    # the dead-letter topic refuses records over 200 bytes: a real broker refusal (MessageSizeTooLarge)
    rig = rig_factory(lambda t: [_spec(t, min_rows=20)], dlq_configs={"max.message.bytes": "200"})
    rig.publish([_ev("e0")])
    rig.send([b"{not json" + b" " * 600])
    rig.publish([_ev("e1")])
    errors: list[StreamtuneError] = []
    with pytest.raises(AssertionError, match="not reached"):
        rig.until(lambda: rig.offset() > 0, timeout=4, errors=errors)
    assert errors and all(isinstance(e, ServiceError) and "could not dead-letter" in e.headline for e in errors)
    assert rig.reg.load_offsets(rig.group) == {} and rig.reg.list_runs() == []
    admin = KafkaAdminClient(bootstrap_servers=rig.bootstrap)
    admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, rig.dlq, configs={"max.message.bytes": "1048588"})])
    admin.close()
    [run_id] = rig.until(lambda: rig.offset() == 3)
    assert rig.reg.get_run(run_id).event_ids == ["e0", "e1"]
    letters = rig.dead(1)
    assert len(letters) == 1 and _reasons(letters)[0].startswith("event is not valid JSON")


def test_duplicate_event_id_and_duplicate_uri_after_the_window_closed_are_not_trained_twice(rig_factory):
    rig = rig_factory(lambda t: [_spec(t, min_rows=20)])
    rig.publish([_ev("a"), _ev("b")])
    [first] = rig.until(lambda: rig.offset() == 2)
    rig.publish([_ev("a"), _ev("b2", uri="/srv/b.parquet"), _ev("c"), _ev("d")])
    [second] = rig.until(lambda: rig.offset() == 6)
    assert rig.reg.get_run(first).event_ids == ["a", "b"]
    run = rig.reg.get_run(second)
    assert run.event_ids == ["c", "d"] and run.num_rows == 20
    assert rig.ing.stats.duplicates == 2 and rig.dead(0, timeout_s=0) == []


def test_recreated_topic_resets_the_recorded_offset_and_consumes_new_records(rig_factory):
    rig = rig_factory(lambda t: [_spec(t, min_rows=20)])
    rig.publish([_ev(f"old{i}") for i in range(6)])
    old = rig.until(lambda: rig.offset() == 6)
    assert len(old) == 3
    admin = KafkaAdminClient(bootstrap_servers=rig.bootstrap)
    admin.delete_topics([rig.topic])
    deadline = time.monotonic() + 30
    while rig.topic in admin.list_topics():
        assert time.monotonic() < deadline, "the topic was not deleted"
        time.sleep(0.2)
    while True:  # the broker may still be removing the old log
        try:
            admin.create_topics([NewTopic(rig.topic, 1, 1)], wait_for_metadata=True)
            break
        except Exception:
            assert time.monotonic() < deadline, "the topic could not be created again"
            time.sleep(0.5)
    admin.close()
    rig.publish([_ev(f"new{i}") for i in range(4)])
    new = rig.until(lambda: len(rig.reg.list_runs(limit=100)) == 5, errors=[])
    [reset] = rig.reg.offset_resets(rig.group)
    assert (reset.topic, reset.partition, reset.previous, reset.offset, reset.actor) == (rig.topic, 0, 6, 0,
                                                                                          "controller")
    assert reset.reason.startswith(f"topic recreated: {rig.topic}[0] now ends at offset 4")
    assert rig.reg.load_offsets(rig.group) == {(rig.topic, 0): 4}
    assert [rig.reg.get_run(r).event_ids for r in new] == [["new0", "new1"], ["new2", "new3"]]
    assert not set(new) & set(old)


def test_malformed_message_over_1mb_is_dead_lettered_as_a_reference_to_its_bytes(rig_factory):
    rig = rig_factory(lambda t: [_spec(t, min_rows=10)], topic_configs={"max.message.bytes": "3000000"})
    huge = b'{"dataset": "sales", "rows": [' + b"1," * 700_000 + b"1]}"
    rig.send([huge])
    rig.publish([_ev("ok")])
    [run_id] = rig.until(lambda: rig.offset() == 2)
    assert rig.reg.get_run(run_id).event_ids == ["ok"]
    [(value, headers)] = rig.dead(1)
    uri = headers[PAYLOAD_HEADER].decode()
    assert rig.store.get_bytes(uri) == huge
    assert b'"payload_uri"' in value and len(value) < 2000
    assert headers["streamtune.error"].decode().startswith(f"event is {len(huge)} bytes")


def test_unsafe_uris_are_dead_lettered_with_the_reason(rig_factory, tmp_path):
    data, other, outside = tmp_path / "data", tmp_path / "other", tmp_path / "outside"
    for d in (data, other, outside):
        d.mkdir()
    os.symlink(outside / "secret.parquet", data / "link.parquet")
    rig = rig_factory(lambda t: [_spec(t, min_rows=10, roots=[str(data)]),
                                 _spec(t, min_rows=10, roots=[str(other)], name="other", dataset="clicks")])
    hostile = ["../../etc/passwd", "file:///etc/shadow", f"{data}/../../outside/x.parquet",
               str(data / "link.parquet"), str(other / "p.parquet"), "s3://lake/sales/../x.parquet"]
    rig.publish([_ev(f"h{i}", uri=u) for i, u in enumerate(hostile)] + [_ev("ok", uri=str(data / "ok.parquet"))])
    [run_id] = rig.until(lambda: rig.offset() == len(hostile) + 1)
    assert rig.reg.get_run(run_id).event_ids == ["ok"]
    reasons = _reasons(rig.dead(len(hostile)))
    assert len(reasons) == len(hostile)
    for uri, reason in zip(hostile, reasons, strict=True):
        assert f'Got "{uri}" for a data URI' in reason, reason
    assert "(it resolves to /etc/shadow); it must lie under" in reasons[1]
    assert f"(it resolves to {outside}/secret.parquet)" in reasons[3]


def test_windows_close_exactly_at_min_rows(rig_factory):
    rig = rig_factory(lambda t: [_spec(t, min_rows=1000)])
    rig.publish([_ev(f"e{i}", rows=100) for i in range(300)])
    runs = rig.until(lambda: rig.offset() == 300)
    sizes = [len(rig.reg.get_run(r).event_ids) for r in runs]
    assert sizes == [10] * 30, sizes
    assert all(rig.reg.get_run(r).num_rows == 1000 for r in runs)


def test_events_for_a_dataset_with_no_spec_are_dead_lettered_with_the_reason(rig_factory):
    rig = rig_factory(lambda t: [_spec(t, min_rows=10)])
    rig.publish([_ev("lost", dataset="nobody"), _ev("ok")])
    [run_id] = rig.until(lambda: rig.offset() == 2)
    assert rig.reg.get_run(run_id).event_ids == ["ok"]
    [(value, headers)] = rig.dead(1)
    assert b'"lost"' in value
    assert headers["streamtune.error"].decode().startswith('Got dataset "nobody" on topic')
