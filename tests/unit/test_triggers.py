"""Trigger windows and the exactly-once ingest path (a scripted EventSource; the registry is real SQLite)."""

import pytest

from streamtune.artifacts import ArtifactStore
from streamtune.config import JobSpec
from streamtune.controller.ingest import Ingestor
from streamtune.errors import RegistryError
from streamtune.events.schema import DataArrival
from streamtune.events.source import EventRecord, EventSource
from streamtune.registry import SqliteRegistry
from streamtune.triggers import WindowTrigger


def _spec(min_rows=100, max_wait="1m"):
    return JobSpec.parse({
        "name": "demo", "dataset": {"name": "sales", "label": "y"},
        "trigger": {"topic": "t", "min_rows": min_rows, "max_wait": max_wait},
        "job": {"entrypoint": "jobs.tabular_gbdt:Job"},
        "sweep": {"metric": "rmse", "mode": "min", "space": {"a": {"type": "int", "low": 1, "high": 3}}},
        "serve": {"app": "sales"},
    })


def _ev(rows, eid=None, dataset="sales"):
    kw = {"event_id": eid} if eid else {}
    return DataArrival(dataset=dataset, uris=[f"/d/{eid or rows}.parquet"], num_rows=rows, **kw)


def test_window_closes_on_min_rows():
    spec = _spec(min_rows=100)
    trig = WindowTrigger()
    assert trig.add(spec, _ev(60), topic="t", partition=0, offset=0, now=0)
    assert trig.due({"demo": spec}, now=1) == []
    trig.add(spec, _ev(50), topic="t", partition=0, offset=1, now=1)
    [(win, reason)] = trig.due({"demo": spec}, now=2)
    assert reason == "min_rows" and win.num_rows == 110 and win.offsets() == {"t:0": [0, 1]}
    assert trig.take_state() == {"demo": None}


def test_window_closes_on_max_wait():
    spec = _spec(min_rows=1000, max_wait="10s")
    trig = WindowTrigger()
    trig.add(spec, _ev(5), topic="t", partition=0, offset=3, now=100)
    assert trig.due({"demo": spec}, now=109) == []
    [(win, reason)] = trig.due({"demo": spec}, now=110.5)
    assert reason == "max_wait" and win.num_rows == 5


def test_duplicates_are_dropped_by_event_id_and_offset():
    spec = _spec()
    trig = WindowTrigger()
    assert trig.add(spec, _ev(10, "a"), topic="t", partition=0, offset=0, now=0)
    assert not trig.add(spec, _ev(10, "a"), topic="t", partition=0, offset=1, now=0)
    assert not trig.add(spec, _ev(10, "b"), topic="t", partition=0, offset=0, now=0)
    assert trig.windows["demo"].num_rows == 10


def test_state_round_trips():
    spec = _spec()
    trig = WindowTrigger()
    trig.add(spec, _ev(10), topic="t", partition=2, offset=7, now=5)
    state = trig.take_state()
    again = WindowTrigger(state)
    assert again.windows["demo"].offsets() == {"t:2": [7, 7]}


class ScriptedSource(EventSource):
    """Replays a fixed list of records, as a broker would after a seek."""

    def __init__(self, records):
        self.records = list(records)
        self.committed = {}

    def poll(self, timeout_s=1.0, max_records=None):
        out, self.records = self.records, []
        return out

    def commit(self, offsets):
        self.committed.update(offsets)

    def seek(self, offsets):
        pass

    def close(self):
        pass


def _rec(offset, event):
    return EventRecord(topic="t", partition=0, offset=offset, event=event, error=None, raw=None)


def test_ingest_stores_offsets_window_and_run_together_and_resumes(tmp_path):
    spec = _spec(min_rows=100)
    specs = {"demo": spec}
    reg = SqliteRegistry(f"sqlite:///{tmp_path}/r.db")
    ing = Ingestor(reg, "g", ArtifactStore(str(tmp_path)))
    assert ing.step(ScriptedSource([_rec(0, _ev(60, "a"))]), specs) == []
    assert reg.load_offsets("g") == {("t", 0): 1}
    assert reg.load_windows()["demo"]["events"][0]["event_id"] == "a"
    # a crash here, then a restart: the new ingestor resumes the window and drops the replayed record
    ing2 = Ingestor(reg, "g", ArtifactStore(str(tmp_path)))
    bad = EventRecord(topic="t", partition=0, offset=2, event=None, error="not JSON", raw=b"x")
    inserted = ing2.step(ScriptedSource([_rec(0, _ev(60, "a")), _rec(1, _ev(50, "b")), bad]), specs)
    assert len(inserted) == 1
    run = reg.get_run(inserted[0])
    assert run.event_ids == ["a", "b"] and run.num_rows == 110 and run.offsets == {"t:0": [0, 1]}
    assert reg.load_offsets("g") == {("t", 0): 3} and reg.load_windows() == {}
    assert ing2.bad_events == 1
    # an ingestor that forgot the stored offsets and replays the window cannot move them back, nor add a run
    ing3 = Ingestor(reg, "g", ArtifactStore(str(tmp_path)))
    ing3.offsets = {}
    with pytest.raises(RegistryError, match="only move forward"):
        ing3.step(ScriptedSource([_rec(0, _ev(60, "a")), _rec(1, _ev(50, "b"))]), specs)
    assert reg.load_offsets("g") == {("t", 0): 3} and len(reg.list_runs()) == 1


def test_inline_rows_become_a_parquet_file(tmp_path):
    spec = _spec(min_rows=2)
    reg = SqliteRegistry(f"sqlite:///{tmp_path}/r.db")
    ing = Ingestor(reg, "g", ArtifactStore(str(tmp_path)))
    ev = DataArrival(dataset="sales", rows=[{"x": 1.0, "y": 2.0}, {"x": 2.0, "y": 4.0}], num_rows=2)
    [run_id] = ing.step(ScriptedSource([_rec(0, ev)]), {"demo": spec})
    [uri] = reg.get_run(run_id).uris
    import pyarrow.parquet as pq

    assert pq.read_table(uri).num_rows == 2


def test_events_for_other_datasets_are_ignored(tmp_path):
    spec = _spec(min_rows=1)
    reg = SqliteRegistry(f"sqlite:///{tmp_path}/r.db")
    ing = Ingestor(reg, "g", ArtifactStore(str(tmp_path)))
    assert ing.step(ScriptedSource([_rec(0, _ev(5, dataset="other"))]), {"demo": spec}) == []
    assert reg.load_offsets("g") == {("t", 0): 1}
