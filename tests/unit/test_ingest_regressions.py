"""Regression tests of issue 8's ingest half, one per way the promise broke, at unit level.

Every test drives the real :class:`Ingestor` over a :class:`ScriptedSource` (the in-memory EventSource that runs
the conformance suite) and a real SQLite registry. The same problems are checked against the real broker in
``tests/integration/test_ingest_regressions_kafka.py``.
"""

from __future__ import annotations

import os

import pyarrow.parquet as pq
import pytest

from conformance.event_source_suite import ScriptedLog, ScriptedSource
from streamtune.artifacts import ArtifactStore
from streamtune.config import JobSpec
from streamtune.controller.ingest import Ingestor
from streamtune.errors import RegistryError, ServiceError
from streamtune.events.dlq import DLQ_MAX_BYTES, PAYLOAD_HEADER
from streamtune.events.schema import DataArrival
from streamtune.registry import SqliteRegistry

TOPIC = "t"


def _spec(name="demo", dataset="sales", min_rows=100, roots=("/srv",), schema=None):
    ds = {"name": dataset, "label": "y", "uri_roots": list(roots)}
    if schema is not None:
        ds["schema"] = schema
    return JobSpec.parse({
        "name": name, "dataset": ds, "trigger": {"topic": TOPIC, "min_rows": min_rows, "max_wait": "1h"},
        "job": {"entrypoint": "jobs.tabular_gbdt:Job"},
        "sweep": {"metric": "rmse", "mode": "min", "space": {"a": {"type": "int", "low": 1, "high": 3}}},
        "serve": {"app": name},
    })


class Rig:
    """A scripted log, a real SQLite registry, an artifact store and an ingestor over them."""

    def __init__(self, tmp_path, specs, *, batch=None):
        self.tmp = tmp_path
        self.log = ScriptedLog()
        self.reg = SqliteRegistry(f"sqlite:///{tmp_path}/r.db")
        for spec in specs:
            self.reg.put_spec(spec)
        self.store = ArtifactStore(str(tmp_path / "store"))
        self.ing = Ingestor(self.reg, "g", self.store)
        self.source = ScriptedSource(self.log, [TOPIC], start_offsets=self.ing.offsets, batch=batch)

    def specs(self):
        return {r.name: r.spec for r in self.reg.list_specs()}

    def publish(self, events, partition=0):
        return self.log.publish(TOPIC, list(events), partition)

    def step(self):
        return self.ing.step(self.source, self.specs(), poll_s=0)

    def drain(self, steps=20):
        inserted = []
        for _ in range(steps):
            inserted += self.step()
        return inserted

    def runs(self, spec="demo"):
        return sorted(self.reg.list_runs(spec, limit=10_000), key=lambda r: min(o[0] for o in r.offsets.values()))

    def dead(self):
        return [(lt.record, dict(lt.headers())) for lt in self.log.dead]

    def reasons(self):
        return [h["streamtune.error"].decode() for _, h in self.dead()]


def _ev(eid, rows=10, uri=None, dataset="sales"):
    return DataArrival(event_id=eid, dataset=dataset, uris=[uri or f"/srv/{eid}.parquet"], num_rows=rows)


def _rows(eid, rows):
    return DataArrival(event_id=eid, dataset="sales", rows=rows, num_rows=len(rows))


def _file_spec(tmp_path, **kw):
    return _spec(roots=[str(tmp_path / "data")], **kw)


def _file_ev(tmp_path, eid, rows=10):
    return _ev(eid, rows, uri=str(tmp_path / "data" / f"{eid}.parquet"))


# -- 1: a failure inside a step loses nothing -------------------------------------------------------


def test_mixed_type_inline_rows_dead_letter_the_bad_event_and_train_the_valid_ones(tmp_path):
    rig = Rig(tmp_path, [_spec(min_rows=3)])
    rig.publish([
        _rows("a", [{"price": 7.5, "y": 1.0}]),
        _rows("bad", [{"price": "7.5", "y": 2.0}]),  # a string where the pinned schema says double
        _rows("b", [{"price": 8.0, "y": 3.0}]),
        _rows("mixed", [{"price": 7.5, "y": 1.0}, {"price": "7.5", "y": 1.0}]),  # mixed within one event
        _rows("c", [{"price": 9, "y": 4.0}]),  # an int fits double
    ])
    [run_id] = rig.drain(2)
    run = rig.reg.get_run(run_id)
    assert run.event_ids == ["a", "b", "c"] and run.num_rows == 3
    [parquet] = run.uris
    table = pq.read_table(parquet)
    assert table.column("price").to_pylist() == [7.5, 8.0, 9.0]
    bad = {rec.event.event_id: h["streamtune.error"].decode() for rec, h in rig.dead()}
    assert set(bad) == {"bad", "mixed"}
    assert bad["bad"] == 'Got "7.5" (str) for rows[0].price; the dataset schema says double'
    assert bad["mixed"] == 'Got "7.5" (str) for rows[1].price; the dataset schema says double'
    assert rig.reg.load_offsets("g") == {(TOPIC, 0): 5}


def test_schema_pinned_from_the_first_window_when_absent_is_stored_with_the_spec(tmp_path):
    rig = Rig(tmp_path, [_spec(min_rows=2)])
    assert rig.reg.get_spec("demo").spec.dataset.schema_ is None
    rig.publish([_rows("a", [{"price": 7.5, "n": 1, "tag": "x", "y": 1.0}])])
    rig.step()
    pinned = rig.reg.get_spec("demo").spec.dataset.schema_
    assert {k: (c.type, c.nullable) for k, c in pinned.items()} == {
        "price": ("double", True), "n": ("int64", True), "tag": ("string", True), "y": ("double", True)}
    # a fresh ingestor (a restarted controller) checks against the stored schema, not a new pin
    rig.ing = Ingestor(rig.reg, "g", rig.store)
    rig.publish([_rows("b", [{"price": "cheap", "n": 1, "tag": "x", "y": 1.0}]),
                 _rows("c", [{"price": 1.0, "n": 2, "tag": "z", "extra": 1, "y": 1.0}]),
                 _rows("d", [{"price": 2.0, "n": 3, "y": 2.0}])])  # tag missing: nullable
    [run_id] = rig.drain(2)
    assert rig.reg.get_run(run_id).event_ids == ["a", "d"]
    assert rig.reasons() == ['Got "cheap" (str) for rows[0].price; the dataset schema says double',
                             'Got unknown column "extra" in rows[0]; the dataset schema has n, price, tag, y']


def test_a_given_schema_is_not_replaced_and_nulls_in_required_columns_are_refused(tmp_path):
    schema = {"price": {"type": "double", "nullable": False}, "y": {"type": "double"}}
    rig = Rig(tmp_path, [_spec(min_rows=1, schema=schema)])
    rig.publish([_rows("a", [{"price": None, "y": 1.0}]), _rows("b", [{"price": 1, "y": 1.0}])])
    [run_id] = rig.drain(2)
    assert rig.reg.get_run(run_id).event_ids == ["b"]
    assert rig.reasons() == ["Got null for rows[0].price; the dataset schema says it is not nullable"]
    assert rig.reg.get_spec("demo").spec.dataset.schema_["price"].nullable is False


def test_a_registry_error_during_commit_loses_nothing_and_the_window_is_retried(tmp_path, monkeypatch):
    rig = Rig(tmp_path, [_spec(min_rows=30)])
    rig.publish([_ev(f"e{i}") for i in range(5)])
    real = rig.reg.commit_window
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] <= 2:
            raise RegistryError("database is locked (scripted)")
        return real(*args, **kwargs)

    monkeypatch.setattr(rig.reg, "commit_window", flaky)
    for _ in range(2):
        with pytest.raises(RegistryError):
            rig.step()
        assert rig.reg.load_offsets("g") == {} and rig.ing.offsets == {} and rig.ing.trigger.windows == {}
    inserted = rig.drain(2)
    assert [rig.reg.get_run(r).event_ids for r in inserted] == [["e0", "e1", "e2"]]
    assert [e["event_id"] for e in rig.reg.load_windows()["demo"]["events"]] == ["e3", "e4"]
    assert rig.reg.load_offsets("g") == {(TOPIC, 0): 5} and rig.ing.stats.failed_steps == 2


def test_a_registry_error_while_reloading_after_a_failed_step_is_retried_next_step(tmp_path, monkeypatch):
    rig = Rig(tmp_path, [_spec(min_rows=20)])
    rig.publish([_ev("e0"), _ev("e1")])
    real_commit, real_load = rig.reg.commit_window, rig.reg.load_offsets
    monkeypatch.setattr(rig.reg, "commit_window", lambda *a, **k: (_ for _ in ()).throw(RegistryError("disk full")))
    monkeypatch.setattr(rig.reg, "load_offsets", lambda *a, **k: (_ for _ in ()).throw(RegistryError("disk full")))
    with pytest.raises(RegistryError):
        rig.step()
    monkeypatch.setattr(rig.reg, "commit_window", real_commit)
    monkeypatch.setattr(rig.reg, "load_offsets", real_load)
    [run_id] = rig.drain(2)
    assert rig.reg.get_run(run_id).event_ids == ["e0", "e1"]


def test_dlq_produce_failure_commits_no_offsets(tmp_path):
    rig = Rig(tmp_path, [_spec(min_rows=20)])
    rig.publish([_ev("e0")])
    rig.log.append(TOPIC, [b"{not json"])
    rig.publish([_ev("e1")])
    rig.log.fail_dead_letters = 2
    for _ in range(2):
        with pytest.raises(ServiceError, match="could not dead-letter"):
            rig.step()
        assert rig.reg.load_offsets("g") == {} and rig.reg.list_runs() == [] and rig.log.dead == []
    [run_id] = rig.drain(2)
    assert rig.reg.get_run(run_id).event_ids == ["e0", "e1"]
    assert [rec.offset for rec, _ in rig.dead()] == [1] and rig.reasons()[0].startswith("event is not valid JSON")
    assert rig.reg.load_offsets("g") == {(TOPIC, 0): 3}


# -- 6: dedupe across windows by event id and by URI -------------------------------------------------


def test_duplicate_event_id_and_duplicate_uri_after_the_window_closed_are_not_trained_twice(tmp_path):
    rig = Rig(tmp_path, [_spec(min_rows=20)])
    rig.publish([_ev("a", uri="/srv/a.parquet"), _ev("b", uri="/srv/b.parquet")])
    [first] = rig.drain(1)
    assert rig.reg.get_run(first).event_ids == ["a", "b"]
    rig.publish([
        _ev("a", uri="/srv/a.parquet"),  # a producer retry: same id
        _ev("b2", uri="/srv/b.parquet"),  # the same file announced again under a new id
        _ev("b3", uri="/srv/./x/../b.parquet"),  # ... and spelled differently
        _ev("c", uri="/srv/c.parquet"),
        _ev("d", uri="/srv/d.parquet"),
    ])
    [second] = rig.drain(2)
    run = rig.reg.get_run(second)
    assert run.event_ids == ["c", "d"] and run.num_rows == 20, "a duplicate was counted into num_rows"
    assert rig.ing.stats.duplicates == 3 and rig.log.dead == []
    # and a restarted controller (fresh ingestor, replaying from 0 in a new group) still knows them
    rig.ing = Ingestor(rig.reg, "g2", rig.store)
    rig.source = ScriptedSource(rig.log, [TOPIC], group="g2")
    assert rig.drain(2) == [] and rig.ing.stats.duplicates == 7 and "demo" not in rig.reg.load_windows()


def test_an_event_mixing_trained_and_new_files_is_dead_lettered_with_the_reason(tmp_path):
    rig = Rig(tmp_path, [_spec(min_rows=10)])
    rig.publish([_ev("a", uri="/srv/a.parquet")])
    rig.drain(1)
    rig.publish([DataArrival(event_id="ab", dataset="sales", uris=["/srv/a.parquet", "/srv/b.parquet"],
                             num_rows=20)])
    assert rig.drain(1) == []
    assert rig.reasons() == ["Got files spec demo already trained on (/srv/a.parquet) beside new ones in one event; "
                             "its num_rows cannot be split between them (send the new files in an event of their own)"]


# -- 7: a recreated topic is a recorded reset --------------------------------------------------------


def test_recreated_topic_resets_the_recorded_offset_and_consumes_the_new_records(tmp_path):
    rig = Rig(tmp_path, [_spec(min_rows=20)])
    rig.publish([_ev(f"old{i}") for i in range(6)])
    old = rig.drain(1)
    assert len(old) == 3 and rig.reg.load_offsets("g") == {(TOPIC, 0): 6}
    rig.log.recreate(TOPIC)
    rig.publish([_ev(f"new{i}") for i in range(4)])  # offsets 0..3, below the stored 6
    new = rig.drain(2)
    [reset] = rig.reg.offset_resets("g")
    assert (reset.topic, reset.partition, reset.actor) == (TOPIC, 0, "controller")
    assert reset.reason.startswith(f"topic recreated: {TOPIC}[0] now ends at offset 4")
    assert rig.reg.load_offsets("g") == {(TOPIC, 0): 4}
    assert [rig.reg.get_run(r).event_ids for r in new] == [["new0", "new1"], ["new2", "new3"]]
    assert not set(new) & set(old), "a window of the recreated topic took the run id of an old one"


# -- 10: a malformed message over 1 MB --------------------------------------------------------------


def test_malformed_message_over_1mb_is_dead_lettered_as_a_reference_to_its_bytes_in_the_artifact_store(tmp_path):
    rig = Rig(tmp_path, [_spec(min_rows=10)])
    huge = b'{"dataset": "sales", "rows": [' + b"1," * 700_000 + b"1]}"
    assert len(huge) > 1_000_000
    rig.log.append(TOPIC, [huge])
    rig.publish([_ev("ok")])
    [run_id] = rig.drain(1)
    assert rig.reg.get_run(run_id).event_ids == ["ok"]
    [(rec, headers)] = rig.dead()
    letter = rig.log.dead[0]
    uri = headers[PAYLOAD_HEADER].decode()
    assert letter.value is not None and len(letter.value) < DLQ_MAX_BYTES
    assert rig.store.get_bytes(uri) == huge and uri.endswith(f"/dlq/{TOPIC}-0-0.bin")
    assert headers["streamtune.error"].decode().startswith(f"event is {len(huge)} bytes")


# -- 11: unsafe URIs --------------------------------------------------------------------------------


def test_unsafe_uris_are_dead_lettered_with_the_reason(tmp_path):
    data, other, outside = tmp_path / "data", tmp_path / "other", tmp_path / "outside"
    for d in (data, other, outside):
        d.mkdir()
    (outside / "secret.parquet").write_bytes(b"PAR1")
    os.symlink(outside / "secret.parquet", data / "link.parquet")
    os.symlink(outside, data / "dirlink")
    specs = [_spec(min_rows=10, roots=[str(data)]),
             _spec(name="other", dataset="clicks", min_rows=10, roots=[str(other)])]
    rig = Rig(tmp_path, specs)
    hostile = {
        "rel": "../../etc/passwd",
        "file": "file:///etc/shadow",
        "dotdot": f"{data}/../outside/secret.parquet",  # an existing file beside the root
        "dotdot2": f"{data}/../../outside/x.parquet",
        "link": str(data / "link.parquet"),
        "dirlink": str(data / "dirlink" / "secret.parquet"),
        "otherroot": str(other / "p.parquet"),
        "prefix": f"{data}-secret/p.parquet",
        "s3": "s3://lake/sales/../secrets/p.parquet",
        "http": "http://example.com/p.parquet",
        "nul": f"{data}/a\x00.parquet",
    }
    rig.publish([_ev(k, uri=v) for k, v in hostile.items()])
    rig.publish([_ev("good", uri=str(data / "ok.parquet"))])
    [run_id] = rig.drain(1)
    assert rig.reg.get_run(run_id).event_ids == ["good"]
    reasons = {rec.event.event_id: h["streamtune.error"].decode() for rec, h in rig.dead()}
    assert set(reasons) == set(hostile)
    assert "a local path must be absolute" in reasons["rel"]
    assert reasons["file"] == (f'Got "file:///etc/shadow" for a data URI (it resolves to /etc/shadow); it must lie '
                               f"under {data}")
    assert f"(it resolves to {outside}/secret.parquet)" in reasons["dotdot"]
    assert f"(it resolves to {tmp_path.parent}/outside/x.parquet)" in reasons["dotdot2"]
    assert f"(it resolves to {outside}/secret.parquet)" in reasons["link"]
    assert f"(it resolves to {outside}/secret.parquet)" in reasons["dirlink"]
    assert reasons["otherroot"] == f'Got "{other}/p.parquet" for a data URI; it must lie under {data}'
    assert "it must lie under" in reasons["prefix"]
    assert "may not contain '.' or '..' segments" in reasons["s3"]
    assert "it must be an absolute path, file://, s3:// or gs://" in reasons["http"]
    assert "NUL" in reasons["nul"]


def test_empty_uri_roots_admit_only_the_platforms_own_data_folder(tmp_path):
    rig = Rig(tmp_path, [_spec(min_rows=10, roots=())])
    inside = rig.store.join("inline", "x.parquet")
    rig.publish([_ev("out", uri="/data/sales/p.parquet"), _ev("in", uri=inside)])
    [run_id] = rig.drain(1)
    assert rig.reg.get_run(run_id).event_ids == ["in"]
    assert rig.reasons() == [f'Got "/data/sales/p.parquet" for a data URI; it must lie under {rig.store.root}']


# -- 12: windows close exactly at min_rows ----------------------------------------------------------


@pytest.mark.parametrize("batch", [None, 7, 1])
def test_windows_close_exactly_at_min_rows(tmp_path, batch):
    rig = Rig(tmp_path, [_spec(min_rows=1000)], batch=batch)
    rig.publish([_ev(f"e{i}", rows=100) for i in range(105)])
    inserted = rig.drain(120 if batch else 2)
    runs = [rig.reg.get_run(r) for r in inserted]
    assert [len(r.event_ids) for r in runs] == [10] * 10
    assert all(r.num_rows == 1000 and r.reason == "min_rows" for r in runs)
    assert [e for r in runs for e in r.event_ids] == [f"e{i}" for i in range(100)]
    assert len(rig.reg.load_windows()["demo"]["events"]) == 5


# -- 9: events for a dataset with no spec -----------------------------------------------------------


def test_events_for_a_dataset_with_no_spec_are_dead_lettered_with_the_reason(tmp_path):
    rig = Rig(tmp_path, [_spec(min_rows=10)])
    rig.publish([_ev("lost", dataset="nobody"), _ev("ok")])
    [run_id] = rig.drain(1)
    assert rig.reg.get_run(run_id).event_ids == ["ok"]
    assert rig.reasons() == [f'Got dataset "nobody" on topic {TOPIC}; no submitted spec trains on it there (submit '
                             "its spec, then replay this record from the dead-letter topic)"]
    assert rig.reg.load_offsets("g") == {(TOPIC, 0): 2}


def test_a_paused_spec_still_takes_its_events(tmp_path):
    rig = Rig(tmp_path, [_spec(min_rows=10)])
    rig.reg.set_spec_paused("demo", True)
    assert rig.reg.get_spec("demo").paused
    rig.publish([_ev("ok")])
    assert len(rig.drain(1)) == 1 and rig.log.dead == []

