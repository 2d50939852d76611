"""The event seam: typed records, the bus that never raises or blocks, the in-memory counters, queued listeners."""

from __future__ import annotations

import threading
import time

import pytest

from conformance.listener_suite import ListenerConformance, every_kind
from streamtune.observe import (
    ControllerCounters,
    EventBus,
    IngestProgress,
    Listener,
    Promoted,
    QueuedListener,
    RolledBack,
    RunFinished,
    parse_event,
)
from streamtune.observe.counters import SWAP_BUCKETS_S
from streamtune.observe.events import ingest_progress, run_finished, swap_outcome
from streamtune.registry.records import RunRecord, RunStatus
from streamtune.serving.records import SwapReport


class _Blocked(QueuedListener):
    """A queued listener whose I/O never ends until released (a receiver that hangs)."""

    def __init__(self, queue_size: int = 10) -> None:
        self.release = threading.Event()
        self.seen: list[str] = []
        super().__init__("blocked", queue_size=queue_size)

    def process(self, event) -> None:
        self.release.wait(10)
        self.seen.append(event.event_id)


class TestControllerCountersConformance(ListenerConformance):
    @pytest.fixture
    def listener(self):
        counters = ControllerCounters()
        yield counters
        counters.close()


class TestQueuedListenerConformance(ListenerConformance):
    @pytest.fixture
    def listener(self):
        blocked = _Blocked(queue_size=5)
        yield blocked
        blocked.release.set()
        blocked.close(1.0)


def test_every_kind_survives_json_and_keeps_its_name():
    for event in every_kind():
        back = parse_event(event.model_dump_json())
        assert back == event and type(back) is type(event)
    names = [e.name for e in every_kind()]
    assert names == ["run_finished", "gate_rejected", "promoted", "rolled_back", "drift_detected", "ingest_progress"]


def test_run_finished_is_built_only_for_a_final_status():
    base = RunRecord(run_id="r-1", spec_name="s", dataset="d", created_at=10.0, updated_at=40.0, model_version=3)
    built = {s: run_finished(base.model_copy(update={"status": s})) for s in RunStatus}
    ended = {s.value: (e.succeeded, e.seconds, e.model_version) for s, e in built.items() if e is not None}
    assert ended == {"promoted": (True, 30.0, 3), "rejected": (True, 30.0, 3), "failed": (False, 30.0, 3),
                     "cancelled": (False, 30.0, 3)}


def test_swap_outcomes_tell_a_promotion_from_a_rollback():
    report = SwapReport(version=2, previous=1, load_s=1.0, flip_s=0.02, total_s=1.5, replicas=2)
    promoted = swap_outcome("s", report, wanted=2, app="a", run_id="r")
    assert isinstance(promoted, Promoted) and (promoted.version, promoted.previous, promoted.swap_s) == (2, 1, 1.5)
    back = swap_outcome("s", report.model_copy(update={"version": 1, "previous": 2}), wanted=1, rollback=True)
    assert isinstance(back, RolledBack) and (back.from_version, back.to_version, back.automatic) == (2, 1, False)
    withdrawn = swap_outcome("s", report.model_copy(update={"version": 1, "candidate": 2, "reason": "canary"}),
                             wanted=2)
    assert isinstance(withdrawn, RolledBack) and (withdrawn.from_version, withdrawn.to_version) == (2, 1)
    assert withdrawn.automatic and withdrawn.reason == "canary"


def test_ingest_progress_is_the_difference_and_none_when_nothing_moved():
    before = {"records": 10, "events": 9, "dead_lettered": 1, "windows_closed": 0, "failed_steps": 0}
    after = {"records": 15, "events": 13, "dead_lettered": 2, "windows_closed": 1, "failed_steps": 3}
    progress = ingest_progress(before, after)
    assert progress is not None
    assert (progress.records, progress.events, progress.dead_lettered, progress.windows_closed) == (5, 4, 1, 1)
    assert ingest_progress(after, after) is None


def test_the_bus_never_raises_and_keeps_giving_events_to_the_other_listeners():
    class Raises(Listener):
        def handle(self, event):
            raise RuntimeError("a bug in a listener")

    class Keeps(Listener):
        def __init__(self):
            self.kinds = []

        def handle(self, event):
            self.kinds.append(event.kind)

    keeps = Keeps()
    bus = EventBus([Raises(), keeps])
    for event in every_kind():
        bus.emit(event)
    bus.emit(lambda: None)  # a builder with nothing to say
    bus.emit(None)

    def broken():
        raise KeyError("gate")

    bus.emit(broken)
    assert keeps.kinds == [e.kind for e in every_kind()]
    assert (bus.listener_errors, bus.build_errors) == (6, 1)
    assert bus.counters.snapshot().emitted == {e.kind: 1 for e in every_kind()}


def test_counters_add_up_across_events():
    counters = ControllerCounters()
    for _ in range(3):
        counters.handle(IngestProgress(records=4, events=4, accepted=3, duplicates=1, windows_closed=1))
    counters.handle(RunFinished(spec="s", run_id="r", status="failed", succeeded=False, seconds=1.0))
    counters.handle(Promoted(spec="s", version=1, swap_s=0.3, load_s=0.2, flip_s=0.01))
    counters.handle(RolledBack(spec="s", from_version=1, to_version=1, reason="x", automatic=True, swap_s=40.0))
    counters.handle(RolledBack(spec="s", from_version=2, to_version=1, reason="x", automatic=False, swap_s=0.2))
    snap = counters.snapshot()
    assert (snap.ingest["records"], snap.ingest["duplicates"], snap.ingest["windows_closed"]) == (12, 3, 3)
    assert snap.runs_finished == {("s", "failed"): 1}
    assert snap.rollbacks == {("s", "automatic"): 1, ("s", "command"): 1}
    total = snap.swaps[("s", "promote", "total")]  # the withdrawn candidate's swap is a promotion's swap
    assert (total.count, total.sum) == (2, 40.3)
    assert total.cumulative()[SWAP_BUCKETS_S.index(0.5)] == 1 and total.cumulative()[-1] == 2
    assert snap.swaps[("s", "rollback", "total")].count == 1


def test_a_queued_listener_drops_rather_than_blocks_when_its_receiver_hangs():
    blocked = _Blocked(queue_size=10)
    try:
        started = time.perf_counter()
        for _ in range(500):
            blocked.handle(every_kind()[0])
        assert time.perf_counter() - started < 0.05
        stats = blocked.stats()
        assert stats.queued <= 10 and stats.dropped >= 489  # one taken by the worker, ten queued, the rest dropped
    finally:
        blocked.release.set()
        blocked.close(5.0)
    stats = blocked.stats()
    assert stats.handled == len(blocked.seen) >= 10 and stats.handled + stats.dropped == 500
