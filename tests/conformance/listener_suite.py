"""Conformance suite for ``Listener`` implementations: handle never raises and never blocks, close is safe.

Subclass :class:`ListenerConformance` and provide a ``listener`` fixture (a fresh listener, closed by the fixture).
A listener that does I/O may point it at a receiver that hangs: ``handle`` must return at once all the same.
"""

from __future__ import annotations

import time

from streamtune.observe.events import (
    DriftDetected,
    GateVerdict,
    IngestProgress,
    Promoted,
    RolledBack,
    RunFinished,
)
from streamtune.observe.listener import ListenerStats

HANDLE_BUDGET_S = 0.005
"""Average caller time one ``handle`` may take: it runs on the controller's loop thread."""


def every_kind():
    """One event of each kind."""
    return [
        RunFinished(spec="s", run_id="r-1", status="promoted", succeeded=True, seconds=12.5, model_version=1),
        GateVerdict(spec="s", run_id="r-1", passed=False, metric="rmse", challenger=9.0, champion=8.0,
                    reasons=["does not beat the champion"]),
        Promoted(spec="s", version=2, previous=1, app="a", run_id="r-2", swap_s=1.5, load_s=1.2, flip_s=0.01),
        RolledBack(spec="s", from_version=2, to_version=1, reason="p99", automatic=False, swap_s=0.3),
        DriftDetected(spec="s", version=2, features={"price": 0.31}, threshold=0.2),
        IngestProgress(records=5, events=5, accepted=4, dead_lettered=1, windows_closed=1, runs_inserted=1),
    ]


class ListenerConformance:
    """Subclass and provide a ``listener`` fixture."""

    def test_handles_every_kind_of_event_without_raising(self, listener):
        for event in every_kind():
            listener.handle(event)

    def test_handle_returns_at_once(self, listener):
        events = every_kind() * 50
        started = time.perf_counter()
        for event in events:
            listener.handle(event)
        assert (time.perf_counter() - started) / len(events) < HANDLE_BUDGET_S

    def test_stats_are_typed_and_never_negative(self, listener):
        listener.handle(every_kind()[0])
        stats = listener.stats()
        assert stats is None or isinstance(stats, ListenerStats)
        if stats is not None:
            assert min(stats.handled, stats.failed, stats.dropped, stats.queued) >= 0 and stats.name

    def test_close_is_safe_twice_and_handle_after_close_does_not_raise(self, listener):
        listener.handle(every_kind()[1])
        started = time.perf_counter()
        listener.close(0.5)
        listener.close(0.5)
        listener.handle(every_kind()[2])
        assert time.perf_counter() - started < 5.0
