"""In-memory counters of what this process's controller did, fed by its events; the metrics read them at scrape.

They count since the controller process started (across lease terms and ingestor reloads), like any Prometheus
counter: a restarted process starts from zero and ``rate()``/``increase()`` handle that. A standby counts
nothing until it leads. Swap durations are a histogram over :data:`SWAP_BUCKETS_S`.

Example:
    >>> from streamtune.observe.events import GateVerdict, IngestProgress, Promoted
    >>> counters = ControllerCounters()
    >>> counters.handle(IngestProgress(records=10, events=10, dead_lettered=1, windows_closed=1))
    >>> counters.handle(GateVerdict(spec="s", run_id="r", passed=True, metric="rmse"))
    >>> counters.handle(Promoted(spec="s", version=1, swap_s=1.7, load_s=1.5, flip_s=0.01))
    >>> snap = counters.snapshot()
    >>> snap.ingest["records"], snap.gate_verdicts, snap.promotions
    (10, {('s', 'passed'): 1}, {'s': 1})
    >>> hist = snap.swaps[("s", "promote", "total")]
    >>> hist.count, hist.sum, hist.cumulative()[SWAP_BUCKETS_S.index(2.5)]
    (1, 1.7, 1)
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from streamtune.observe.events import (
    DriftDetected,
    GateVerdict,
    IngestProgress,
    PlatformEvent,
    Promoted,
    RolledBack,
    RunFinished,
)
from streamtune.observe.listener import Listener

__all__ = ["SWAP_BUCKETS_S", "ControllerCounters", "CountersSnapshot", "Histogram"]

SWAP_BUCKETS_S: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
"""Upper bounds (seconds) of the swap-duration histogram; a swap includes its canary and live watch."""

INGEST_FIELDS = ("records", "events", "accepted", "duplicates", "dead_lettered", "bad_events", "windows_closed",
                 "runs_inserted")
"""The :class:`IngestProgress` counts, totalled."""


@dataclass
class Histogram:
    """Counts per bucket (:data:`SWAP_BUCKETS_S`, plus one for slower), their sum and count."""

    buckets: list[int] = field(default_factory=lambda: [0] * (len(SWAP_BUCKETS_S) + 1))
    sum: float = 0.0
    count: int = 0

    def observe(self, seconds: float) -> None:
        """Add one observation."""
        self.buckets[bisect.bisect_left(SWAP_BUCKETS_S, seconds)] += 1
        self.sum = round(self.sum + seconds, 6)
        self.count += 1

    def cumulative(self) -> list[int]:
        """Observations at or below each bound of :data:`SWAP_BUCKETS_S` (Prometheus ``le`` buckets, no +Inf)."""
        out, total = [], 0
        for n in self.buckets[:-1]:
            total += n
            out.append(total)
        return out

    def copy(self) -> Histogram:
        """An independent copy."""
        return Histogram(list(self.buckets), self.sum, self.count)


@dataclass(frozen=True)
class CountersSnapshot:
    """The counters at one moment (copies: safe to read while the controller goes on)."""

    ingest: Mapping[str, int]
    """IngestProgress totals by field (records, events, dead_lettered, windows_closed, ...)."""
    emitted: Mapping[str, int]
    """Events emitted, by kind."""
    runs_finished: Mapping[tuple[str, str], int]
    """(spec, final status) -> runs."""
    gate_verdicts: Mapping[tuple[str, str], int]
    """(spec, passed|rejected) -> verdicts."""
    promotions: Mapping[str, int]
    """spec -> promotions (runs and promote commands)."""
    rollbacks: Mapping[tuple[str, str], int]
    """(spec, command|automatic) -> rollbacks."""
    drift: Mapping[str, int]
    """spec -> drift detections."""
    swaps: Mapping[tuple[str, str, str], Histogram]
    """(spec, promote|rollback, total|load|flip) -> seconds."""


class ControllerCounters(Listener):
    """Counts the controller's events in memory; thread-safe, never blocks for long (a lock around dict updates).

    :class:`~streamtune.observe.bus.EventBus` always has one, first; the metrics read :meth:`snapshot`.
    """

    name = "counters"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ingest: Counter[str] = Counter({k: 0 for k in INGEST_FIELDS})
        self._emitted: Counter[str] = Counter()
        self._runs: Counter[tuple[str, str]] = Counter()
        self._verdicts: Counter[tuple[str, str]] = Counter()
        self._promotions: Counter[str] = Counter()
        self._rollbacks: Counter[tuple[str, str]] = Counter()
        self._drift: Counter[str] = Counter()
        self._swaps: dict[tuple[str, str, str], Histogram] = {}

    def handle(self, event: PlatformEvent) -> None:
        """Count one event."""
        with self._lock:
            self._emitted[event.kind] += 1
            if isinstance(event, IngestProgress):
                self._ingest.update({k: getattr(event, k) for k in INGEST_FIELDS})
            elif isinstance(event, RunFinished):
                self._runs[(event.spec, event.status)] += 1
            elif isinstance(event, GateVerdict):
                self._verdicts[(event.spec, "passed" if event.passed else "rejected")] += 1
            elif isinstance(event, Promoted):
                self._promotions[event.spec] += 1
                self._swap(event.spec, "promote", total=event.swap_s, load=event.load_s, flip=event.flip_s)
            elif isinstance(event, RolledBack):
                self._rollbacks[(event.spec, "automatic" if event.automatic else "command")] += 1
                if not event.automatic:  # an automatic one is the failed promotion's swap: counted as promote
                    self._swap(event.spec, "rollback", total=event.swap_s)
                else:
                    self._swap(event.spec, "promote", total=event.swap_s)
            elif isinstance(event, DriftDetected):
                self._drift[event.spec] += 1

    def _swap(self, spec: str, kind: str, **phases: float) -> None:
        for phase, seconds in phases.items():
            self._swaps.setdefault((spec, kind, phase), Histogram()).observe(seconds)

    def snapshot(self) -> CountersSnapshot:
        """Copies of every counter."""
        with self._lock:
            return CountersSnapshot(
                ingest=dict(self._ingest), emitted=dict(self._emitted), runs_finished=dict(self._runs),
                gate_verdicts=dict(self._verdicts), promotions=dict(self._promotions),
                rollbacks=dict(self._rollbacks), drift=dict(self._drift),
                swaps={k: h.copy() for k, h in self._swaps.items()},
            )
