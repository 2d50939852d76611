"""A cron schedule inside the real Ingestor, with an injected clock, a scripted log and a real SQLite registry."""

from __future__ import annotations

import datetime as dt

from conformance.event_source_suite import ScriptedLog, ScriptedSource
from streamtune.artifacts import ArtifactStore
from streamtune.config import JobSpec
from streamtune.controller.ingest import Ingestor
from streamtune.events.schema import DataArrival
from streamtune.registry import SqliteRegistry
from streamtune.registry.records import scheduled_run_id
from streamtune.triggers.base import RowsTrigger, ScheduleTrigger, WaitTrigger

TOPIC = "t"


def _utc(hour: int, minute: int = 0) -> float:
    return dt.datetime(2026, 11, 26, hour, minute, tzinfo=dt.UTC).timestamp()


def _spec() -> JobSpec:
    return JobSpec.parse({
        "name": "demo", "dataset": {"name": "sales", "label": "y", "uri_roots": ["/srv"]},
        "trigger": {"topic": TOPIC, "min_rows": 100, "max_wait": "1d", "schedule": "0 * * * *"},
        "job": {"entrypoint": "jobs.tabular_gbdt:Job"},
        "sweep": {"metric": "rmse", "mode": "min", "space": {"a": {"type": "int", "low": 1, "high": 3}}},
        "serve": {"app": "demo"},
    })


class Rig:
    def __init__(self, tmp_path):
        self.clock = {"now": _utc(9, 30)}
        self.log = ScriptedLog()
        self.reg = SqliteRegistry(f"sqlite:///{tmp_path}/r.db")
        self.reg.put_spec(_spec())
        self.store = ArtifactStore(str(tmp_path / "store"))
        self.restart()

    def restart(self):
        triggers = [RowsTrigger(), WaitTrigger(), ScheduleTrigger(clock=lambda: self.clock["now"])]
        self.ing = Ingestor(self.reg, "g", self.store, triggers=triggers)
        self.source = ScriptedSource(self.log, [TOPIC], start_offsets=self.ing.offsets)

    def step(self):
        return self.ing.step(self.source, {r.name: r.spec for r in self.reg.list_specs()}, poll_s=0)


def test_each_slot_closes_the_open_window_or_trains_the_latest_one_again_once(tmp_path):
    rig = Rig(tmp_path)
    rig.log.publish(TOPIC, [DataArrival(event_id="a", dataset="sales", uris=["/srv/a.parquet"], num_rows=10)], 0)
    assert rig.step() == []  # 10 of 100 rows, and 09:30 is after no new slot: the window stays open
    assert "demo" in rig.ing.trigger.windows

    rig.clock["now"] = _utc(10, 0)
    [first] = rig.step()  # the 10:00 slot closes the open window
    run = rig.reg.get_run(first)
    assert (run.reason, run.event_ids, run.num_rows) == ("schedule", ["a"], 10)
    assert (run.trigger_detail.schedule, run.trigger_detail.slot, run.trigger_detail.rows) == ("0 * * * *",
                                                                                            _utc(10), 10)
    assert rig.step() == []  # that slot is done

    rig.clock["now"] = _utc(11, 0)
    [again] = rig.step()  # 11:00, no open window: the latest window is trained again under the slot's id
    rerun = rig.reg.get_run(again)
    assert again == scheduled_run_id("demo", _utc(11)) and rerun.uris == run.uris and rerun.offsets == {}
    assert (rerun.reason, rerun.trigger_detail.rows) == ("schedule", 0)

    rig.restart()  # a new controller at 11:05 does not fire the 11:00 slot again, nor any earlier one
    rig.clock["now"] = _utc(11, 5)
    assert rig.step() == []
    rig.clock["now"] = _utc(12, 0)
    assert len(rig.step()) == 1
    assert [r.reason for r in rig.reg.list_runs("demo")] == ["schedule"] * 3


def test_a_schedule_with_nothing_ever_stored_queues_no_run(tmp_path):
    rig = Rig(tmp_path)
    rig.step()
    rig.clock["now"] = _utc(10, 0)
    assert rig.step() == [] and rig.reg.list_runs("demo") == []
