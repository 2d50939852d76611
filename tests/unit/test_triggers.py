"""Trigger windows and the exactly-once ingest path (a scripted EventSource; the registry is real SQLite)."""

import pyarrow.parquet as pq

from conformance.event_source_suite import ScriptedLog, ScriptedSource
from streamtune.artifacts import ArtifactStore
from streamtune.config import JobSpec
from streamtune.controller.ingest import Ingestor
from streamtune.events.schema import DataArrival
from streamtune.registry import SqliteRegistry
from streamtune.triggers import WindowEvent, WindowTrigger


def _spec(min_rows=100, max_wait="1m", roots=("/d",)):
    return JobSpec.parse({
        "name": "demo", "dataset": {"name": "sales", "label": "y", "uri_roots": list(roots)},
        "trigger": {"topic": "t", "min_rows": min_rows, "max_wait": max_wait},
        "job": {"entrypoint": "jobs.tabular_gbdt:Job"},
        "sweep": {"metric": "rmse", "mode": "min", "space": {"a": {"type": "int", "low": 1, "high": 3}}},
        "serve": {"app": "sales"},
    })


def _we(offset, rows=10, eid=None, partition=0):
    return WindowEvent(eid or f"e{offset}", "t", partition, offset, rows, [f"/d/{eid or offset}.parquet"])


def _ev(rows, eid=None, dataset="sales"):
    kw = {"event_id": eid} if eid else {}
    return DataArrival(dataset=dataset, uris=[f"/d/{eid or rows}.parquet"], num_rows=rows, **kw)


def test_window_closes_on_min_rows_at_the_event_that_reaches_it():
    spec = _spec(min_rows=100)
    trig = WindowTrigger()
    stage = trig.stage()
    assert stage.add(spec, _we(0, 60), now=0) is None
    closed = stage.add(spec, _we(1, 50), now=1)
    assert closed is not None and closed.num_rows == 110 and closed.offsets() == {"t:0": [0, 1]}
    [(win, detail)] = stage.closed
    assert win is closed and (detail.kind, detail.rows) == ("min_rows", 110) and "demo" not in stage.windows
    assert stage.changes() == ({}, {})  # nothing was stored before, and nothing stays open


def test_window_closes_on_max_wait_before_a_late_event_and_at_the_end_of_a_poll():
    spec = _spec(min_rows=1000, max_wait="10s")
    trig = WindowTrigger()
    stage = trig.stage()
    stage.add(spec, _we(3, 5), now=100)
    assert stage.tick({"demo": spec}, now=109) == []
    [(win, detail)] = stage.tick({"demo": spec}, now=110.5)
    assert (detail.kind, detail.rows, detail.waited_s) == ("max_wait", 5, 10.5) and win.num_rows == 5
    late = trig.stage()
    late.add(spec, _we(4, 5), now=100)
    late.add(spec, _we(5, 5), now=200)  # the window waited long enough: the late event opens the next one
    assert [(w.offsets(), d.kind) for w, d in late.closed] == [({"t:0": [4, 4]}, "max_wait")]
    assert late.windows["demo"].offsets() == {"t:0": [5, 5]}


def test_a_stage_changes_nothing_until_adopted_and_stores_only_new_events_of_a_stored_window():
    spec = _spec(min_rows=1000)
    trig = WindowTrigger()
    stage = trig.stage()
    stage.add(spec, _we(0), now=0)
    states, appends = stage.changes()
    assert list(states) == ["demo"] and states["demo"]["events"][0]["offset"] == 0 and appends == {}
    assert trig.windows == {}  # not adopted: a failed commit leaves memory as stored
    trig.adopt(stage)
    nxt = trig.stage()
    nxt.add(spec, _we(1), now=1)
    nxt.add(spec, _we(2), now=1)
    assert nxt.changes() == ({}, {"demo": [_we(1).to_state(), _we(2).to_state()]})
    assert len(trig.windows["demo"].events) == 1  # the stored window was copied, not changed


def test_dedupe_keys_cover_the_open_window_and_windows_closed_in_the_stage():
    spec = _spec(min_rows=20)
    stage = WindowTrigger().stage()
    stage.add(spec, _we(0, eid="a"), now=0)
    assert stage.has_key("demo", "id:a") and stage.has_key("demo", "uri:/d/a.parquet")
    stage.add(spec, _we(1, eid="b"), now=0)  # closes at 20 rows
    assert stage.has_key("demo", "id:a") and not stage.has_key("other", "id:a")


def test_state_round_trips():
    spec = _spec()
    trig = WindowTrigger()
    stage = trig.stage()
    stage.add(spec, _we(7, partition=2), now=5)
    states, _ = stage.changes()
    again = WindowTrigger(states)
    assert again.windows["demo"].offsets() == {"t:2": [7, 7]} and again.windows["demo"].opened_at == 5


def _ingestor(tmp_path, reg=None):
    reg = reg or SqliteRegistry(f"sqlite:///{tmp_path}/r.db")
    return reg, Ingestor(reg, "g", ArtifactStore(str(tmp_path / "store")))


def test_ingest_stores_offsets_window_and_run_together_and_resumes(tmp_path):
    specs = {"demo": _spec(min_rows=100)}
    log = ScriptedLog()
    reg, ing = _ingestor(tmp_path)
    log.publish("t", [_ev(60, "a")])
    assert ing.step(ScriptedSource(log, ["t"]), specs) == []
    assert reg.load_offsets("g") == {("t", 0): 1}
    assert reg.load_windows()["demo"]["events"][0]["event_id"] == "a"
    # a crash here, then a restart: the new ingestor resumes the window and its source starts at the stored offset
    log.publish("t", [_ev(50, "b")])
    log.append("t", [b"x"])
    _, ing2 = _ingestor(tmp_path, reg)
    source = ScriptedSource(log, ["t"], start_offsets=ing2.offsets)
    inserted = ing2.step(source, specs)
    assert len(inserted) == 1
    run = reg.get_run(inserted[0])
    assert run.event_ids == ["a", "b"] and run.num_rows == 110 and run.offsets == {"t:0": [0, 1]}
    assert reg.load_offsets("g") == {("t", 0): 3} and reg.load_windows() == {}
    assert ing2.bad_events == 1 and [lt.record.offset for lt in log.dead] == [2]
    # an ingestor that forgot the stored offsets and replays the window cannot move them back, nor add a run
    _, ing3 = _ingestor(tmp_path, reg)
    ing3.offsets = {}
    ing3.step(ScriptedSource(log, ["t"], start_offsets={("t", 0): 0}), specs)
    assert reg.load_offsets("g") == {("t", 0): 3} and len(reg.list_runs()) == 1
    assert ing3.stats.duplicates == 2 and reg.load_windows() == {}


def test_inline_rows_become_a_parquet_file(tmp_path):
    log = ScriptedLog()
    reg, ing = _ingestor(tmp_path)
    log.publish("t", [DataArrival(dataset="sales", rows=[{"x": 1.0, "y": 2.0}, {"x": 2.0, "y": 4.0}], num_rows=2)])
    [run_id] = ing.step(ScriptedSource(log, ["t"]), {"demo": _spec(min_rows=2)})
    [uri] = reg.get_run(run_id).uris
    assert uri.startswith(str(tmp_path / "store" / "inline")) and pq.read_table(uri).num_rows == 2
