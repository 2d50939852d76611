"""Replay and backfill against the real broker: the ``replay`` command rebuilds windows from retained history.

The live half runs the real :class:`Ingestor` over a :class:`KafkaEventSource`; the replay is carried out by
the real :class:`CommandExecutor` reading the topic with its own consumer
(:func:`~streamtune.events.history.read_history`), on a real SQLite registry.
"""

from __future__ import annotations

import time
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from streamtune.artifacts import ArtifactStore
from streamtune.config import JobSpec
from streamtune.controller.commands import CommandExecutor
from streamtune.controller.ingest import Ingestor
from streamtune.events import DataArrival, KafkaEventSource
from streamtune.events.history import read_history
from streamtune.registry import SqliteRegistry
from streamtune.registry.commands import CommandStatus, Replay

pytestmark = pytest.mark.integration


def _spec(topic: str) -> JobSpec:
    return JobSpec.parse({
        "name": "demo", "dataset": {"name": "sales", "label": "y", "uri_roots": ["/srv"]},
        "trigger": {"topic": topic, "min_rows": 20, "max_wait": "1h"},
        "job": {"entrypoint": "jobs.tabular_gbdt:Job"},
        "sweep": {"metric": "rmse", "mode": "min", "space": {"a": {"type": "int", "low": 1, "high": 3}}},
        "serve": {"app": "demo"},
    })


class Rig:
    def __init__(self, bootstrap, tmp_path):
        self.bootstrap, self.topic = bootstrap, f"replay-{uuid.uuid4().hex[:8]}"
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        admin.create_topics([NewTopic(self.topic, 1, 1)], wait_for_metadata=True)
        admin.close()
        self.reg = SqliteRegistry(f"sqlite:///{tmp_path}/r.db")
        self.reg.put_spec(_spec(self.topic))
        self.store = ArtifactStore(str(tmp_path / "store"))
        self.ing = Ingestor(self.reg, "live", self.store)
        self.source = KafkaEventSource(bootstrap, [self.topic], "live", start_offsets=self.ing.offsets, assign=True)
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
        self.executor = CommandExecutor(
            self.reg, None, None, "test-controller", self.store, platform_roots=["/srv"],
            history=lambda topic, cmd: read_history(bootstrap, topic, from_offset=cmd.from_offset,
                                                    from_time=cmd.from_time))

    def publish(self, ids):
        for eid in ids:
            event = DataArrival(event_id=eid, dataset="sales", uris=[f"/srv/{eid}.parquet"], num_rows=10)
            self.producer.send(self.topic, value=event.to_bytes(), partition=0)
        self.producer.flush()

    def live(self, offset: int) -> list[str]:
        inserted: list[str] = []
        deadline = time.monotonic() + 30
        while self.reg.load_offsets("live").get((self.topic, 0), 0) < offset:
            assert time.monotonic() < deadline, self.ing.stats
            inserted += self.ing.step(self.source, {r.name: r.spec for r in self.reg.list_specs()}, poll_s=0.3)
        return inserted

    def replay(self, **start):
        record = self.reg.append_command(Replay(spec="demo", **start), actor="ana", reason="backfill")
        [done] = self.executor.step()
        assert done.id == record.id
        return done

    def close(self):
        self.source.close()
        self.producer.close()
        self.reg.close()


@pytest.fixture
def rig(kafka_bootstrap, tmp_path):
    made = Rig(kafka_bootstrap, tmp_path)
    yield made
    made.close()


def test_a_replay_rebuilds_the_windows_as_runs_of_their_own_and_leaves_live_state_alone(rig):
    rig.publish(["a", "b", "c", "d", "e"])
    live = rig.live(5)
    assert [rig.reg.get_run(r).event_ids for r in live] == [["a", "b"], ["c", "d"]]  # "e" waits in the open window
    seen_before = rig.reg.seen_keys("demo", ["id:a", "id:c"])
    windows_before = rig.reg.load_windows()

    done = rig.replay(from_offset=0)
    assert done.status == CommandStatus.SUCCEEDED, done.error
    assert done.outcome.message == "replay of demo: 3 window(s), 50 rows, 3 run(s) queued"
    replays = [r for r in rig.reg.list_runs("demo", oldest_first=True) if r.reason == "replay"]
    assert [r.event_ids for r in replays] == [["a", "b"], ["c", "d"], ["e"]]  # the last, partial one closes too
    assert not {r.run_id for r in replays} & set(live)  # never the ids of live windows over the same offsets
    assert [r.offsets for r in replays[:2]] == [rig.reg.get_run(r).offsets for r in live]
    assert {(r.trigger_detail.kind, r.trigger_detail.replay_id, r.trigger_detail.from_offset, r.command_id)
            for r in replays} == {("replay", done.id, 0, done.id)}
    # live state did not move: offsets, the open window, the seen keys
    assert rig.reg.load_offsets("live") == {(rig.topic, 0): 5}
    assert rig.reg.load_windows() == windows_before
    assert rig.reg.seen_keys("demo", ["id:a", "id:c"]) == seen_before

    # live consumption goes on, with no collision: "f" joins "e" in the live window
    rig.publish(["f"])
    [third] = rig.live(6)
    assert rig.reg.get_run(third).event_ids == ["e", "f"] and third not in {r.run_id for r in replays}


def test_a_replay_from_an_offset_or_a_time_reads_from_there_to_the_end(rig):
    rig.publish(["a", "b", "c"])
    time.sleep(1.2)
    middle = time.time()
    time.sleep(0.2)
    rig.publish(["d", "e", "f"])
    rig.live(6)

    from_offset = rig.replay(from_offset=2)
    runs = {r.run_id: r for r in rig.reg.list_runs("demo", limit=100) if r.command_id == from_offset.id}
    assert sorted(r.event_ids for r in runs.values()) == [["c", "d"], ["e", "f"]]

    from_time = rig.replay(from_time=middle)
    runs = [r for r in rig.reg.list_runs("demo", limit=100) if r.command_id == from_time.id]
    assert sorted(r.event_ids for r in runs) == [["d", "e"], ["f"]]
    assert {r.trigger_detail.from_time for r in runs} == {middle}

    before = rig.reg.count_runs("demo")
    again = rig.executor.execute(rig.reg.get_command(from_time.id))  # carried out again (a failover): no new run
    assert again.status == CommandStatus.SUCCEEDED and rig.reg.count_runs("demo") == before


def test_a_replay_with_nothing_in_range_fails_with_the_reason(rig):
    rig.publish(["a"])
    rig.live(1)
    done = rig.replay(from_offset=5)
    assert done.status == CommandStatus.FAILED
    assert done.error == f"replay of demo found no events of dataset sales on {rig.topic} from offset 5"
