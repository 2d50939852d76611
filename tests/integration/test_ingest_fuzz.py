"""Fuzz: 1,200 malformed records (random bytes, wrong types, mixed-type rows, payloads over 1 MB, hostile URIs:
``..``, symlinks out of the root, ``file:///etc``, another dataset's root, object-store keys with ``..``) interleaved
with 400 valid events on the real broker, from a fixed seed. Every malformed one ends in the dead-letter topic with
a reason (read back from the broker and counted), none reaches a window, every valid one is in a run, and the
ingestor never raises."""

from __future__ import annotations

import json
import os
import random
import time
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

from streamtune.artifacts import ArtifactStore
from streamtune.config import JobSpec
from streamtune.controller.ingest import Ingestor
from streamtune.events import DataArrival, KafkaEventSource
from streamtune.events.dlq import PAYLOAD_HEADER
from streamtune.registry import SqliteRegistry

pytestmark = pytest.mark.integration
MALFORMED, VALID, HUGE = 1200, 400, 4


def _spec(name: str, dataset: str, topic: str, root: str) -> JobSpec:
    return JobSpec.parse({
        "name": name, "dataset": {"name": dataset, "label": "y", "uri_roots": [root],
                                  "schema": {"x": {"type": "double"}, "y": {"type": "double"}}},
        "trigger": {"topic": topic, "min_rows": 50, "max_wait": "1s"},
        "job": {"entrypoint": "jobs.tabular_gbdt:Job"},
        "sweep": {"metric": "rmse", "mode": "min", "space": {"a": {"type": "int", "low": 1, "high": 3}}},
        "serve": {"app": name},
    })


def _malformed(rng: random.Random, i: int, data: str, other: str, outside: str) -> bytes | None:
    eid = f"bad-{i}"
    kind = i % 16

    def ev(**kw) -> bytes:
        return json.dumps({"event_id": eid, "dataset": "sales", **kw}).encode()

    if kind == 0:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300)))
    if kind == 1:
        return ev(uris=[f"{data}/a{i}.parquet"], num_rows=rng.choice(["ten", -1, None, 1.5, [1]]))
    if kind == 2:
        return ev(uris=f"{data}/a{i}.parquet", num_rows=1)  # a string, not a list
    if kind == 3:
        return ev(rows=[{"x": 1.0, "y": 1.0}, {"x": "1.0", "y": 1.0}], num_rows=2)  # mixed types
    if kind == 4:
        return ev(rows=[{"x": {"nested": 1}, "y": 1.0}], num_rows=1)
    if kind == 5:
        return ev(rows=[{"x": 1.0, "y": 1.0, "surprise": 3}], num_rows=1)
    if kind == 6:
        return ev(rows=[{"x": 1.0, "y": 1.0}], num_rows=5)  # num_rows disagrees with the rows
    if kind == 7:
        return ev(uris=[f"{data}/../../etc/passwd"], num_rows=1)
    if kind == 8:
        return ev(uris=[f"{data}/link.parquet"], num_rows=1)  # a symlink pointing outside the root
    if kind == 9:
        return ev(uris=["file:///etc/shadow"], num_rows=1)
    if kind == 10:
        return ev(uris=[f"{other}/p{i}.parquet"], num_rows=1)  # another dataset's root
    if kind == 11:
        return ev(uris=[f"s3://lake/sales/../../secret/{i}.parquet"], num_rows=1)
    if kind == 12:
        return json.dumps({"event_id": eid, "dataset": "nobody", "uris": [f"{data}/n{i}.parquet"],
                           "num_rows": 1}).encode()
    if kind == 13:
        return rng.choice([b"null", b"[]", b'"str"', b"{}", b"42", None])  # None: a tombstone
    if kind == 14:
        return ev(uris=[], num_rows=0, extra_field=True)
    return ev(uris=[f"{outside}/p{i}.parquet", f"{data}/ok{i}.parquet"], num_rows=2)  # one good, one outside


def test_fuzz_malformed_events_all_dead_lettered_with_a_reason_and_valid_ones_all_trained(kafka_bootstrap, tmp_path):
    rng = random.Random(20261126)
    data, other, outside = tmp_path / "data", tmp_path / "other", tmp_path / "outside"
    for d in (data, other, outside):
        d.mkdir()
    os.symlink(outside, data / "dirlink")
    os.symlink(outside / "secret.parquet", data / "link.parquet")
    topic, dlq, group = f"fuzz-{uuid.uuid4().hex[:6]}", f"fuzz-dlq-{uuid.uuid4().hex[:6]}", "g"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics([NewTopic(topic, 3, 1, topic_configs={"max.message.bytes": "3000000"}),
                         NewTopic(dlq, 1, 1)], wait_for_metadata=True)
    admin.close()

    records: list[tuple[bytes | None, bool]] = []  # (value, valid)
    valid_ids = []
    bad_left, good_left = MALFORMED, VALID
    while bad_left or good_left:
        if good_left and (not bad_left or rng.random() < VALID / (VALID + MALFORMED)):
            i = VALID - good_left
            if i % 2:
                ev = DataArrival(event_id=f"ok-{i}", dataset="sales", uris=[f"{data}/ok-{i}.parquet"], num_rows=5)
            else:
                ev = DataArrival(event_id=f"ok-{i}", dataset="sales", num_rows=2,
                                 rows=[{"x": rng.random(), "y": rng.random()}, {"x": 1, "y": None}])
            records.append((ev.to_bytes(), True))
            valid_ids.append(ev.event_id)
            good_left -= 1
        else:
            i = MALFORMED - bad_left
            if i < HUGE:
                value: bytes | None = b'{"dataset": "sales", "rows": [' + b"1," * 650_000 + b"1]}"
            else:
                value = _malformed(rng, i, str(data), str(other), str(outside))
            records.append((value, False))
            bad_left -= 1

    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, max_request_size=3_000_000, linger_ms=5)
    for n, (value, _) in enumerate(records):
        producer.send(topic, value=value, key=b"k", partition=n % 3)
    producer.flush()
    producer.close()

    reg = SqliteRegistry(f"sqlite:///{tmp_path}/r.db")
    specs = {"demo": _spec("demo", "sales", topic, str(data)), "other": _spec("other", "clicks", topic, str(other))}
    for spec in specs.values():
        reg.put_spec(spec)
    store = ArtifactStore(str(tmp_path / "store"))
    ing = Ingestor(reg, group, store, max_records=300)
    source = KafkaEventSource(kafka_bootstrap, [topic], group, dead_letter_topic=dlq, assign=True,
                              max_partition_fetch_bytes=4_000_000, fetch_max_bytes=8_000_000)
    deadline = time.monotonic() + 90
    while sum(reg.load_offsets(group).values()) < len(records) or reg.load_windows():
        assert time.monotonic() < deadline, f"not drained: {reg.load_offsets(group)}, {ing.stats}"
        ing.step(source, specs, poll_s=0.2)  # never raises: a bad record is a dead letter, not an error
    source.close()

    runs = reg.list_runs(limit=10_000)
    trained = [e for r in runs for e in r.event_ids]
    assert sorted(trained) == sorted(valid_ids), "a valid event was lost, doubled, or a malformed one trained on"
    assert all(r.spec_name == "demo" for r in runs)
    assert ing.stats.failed_steps == 0 and ing.stats.dead_lettered == MALFORMED

    consumer = KafkaConsumer(dlq, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=3000)
    letters = [dict(m.headers) for m in consumer]
    consumer.close()
    assert len(letters) == MALFORMED
    assert all(h.get("streamtune.error") for h in letters), "a dead letter without a reason"
    where = {(int(h["streamtune.source.partition"]), int(h["streamtune.source.offset"])) for h in letters}
    assert len(where) == MALFORMED
    kept = [h[PAYLOAD_HEADER].decode() for h in letters if PAYLOAD_HEADER in h]
    assert len(kept) == HUGE and all(len(store.get_bytes(u)) > 1_000_000 for u in kept)
    print(f"\n[fuzz] {MALFORMED} malformed all dead-lettered with a reason ({HUGE} kept in the store), "
          f"{len(valid_ids)} valid in {len(runs)} runs, 0 failed steps")
