"""Drift and degradation triggers, and the monitor that measures open windows off the ingest loop.

Reading a window's files and comparing them with the champion's reference (or scoring the champion on the
window's labels) takes I/O and CPU, so it never happens inside the ingestor's step. The triggers only read the
latest :class:`WindowReading` of the :class:`WindowMonitor`, and ask it for a fresh one when the window has
grown; the monitor measures in a thread of its own and keeps one reading per open window. A window whose
reading passes the spec's threshold closes on the next step (reason ``drift`` or ``degradation``), with the
numbers in the run's :class:`~streamtune.registry.records.TriggerDetail`.

- **Drift** (``trigger.drift``): per-feature PSI or KS (:mod:`streamtune.data.stats`) of the window's rows
  against the reference statistics stored with the champion (``lineage.reference_uri``). No champion, or one
  registered before references were stored: no drift is measured.
- **Degradation** (``trigger.degradation``): when the window's rows carry the label, the champion is scored on
  them (by a :data:`Scorer`: in the controller, a Ray task with the job's code, never an import of user code in
  the controller) and compared with its gate holdout metric (``metrics.holdout_<metric>``).

Example:
    >>> from streamtune.registry.records import TriggerDetail
    >>> r = WindowReading(events=3, rows=900, drift={"temp": 0.31, "price": 0.02})
    >>> r.worst_drift
    0.31
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.dataset as pads

from streamtune.artifacts.store import ArtifactStore, group_by_filesystem
from streamtune.config.jobspec import JobSpec
from streamtune.data.stats import ReferenceStats, drift_values
from streamtune.registry.base import Registry
from streamtune.registry.records import Degradation, ModelVersion, TriggerDetail
from streamtune.triggers.base import Trigger
from streamtune.triggers.window import Window, WindowEvent

log = logging.getLogger(__name__)

__all__ = ["DegradationTrigger", "DriftTrigger", "Scorer", "WindowMonitor", "WindowReading", "read_events"]

Scorer = Callable[[JobSpec, ModelVersion, pa.Table], float]
"""``scorer(spec, champion, rows) -> the spec's metric of the champion on rows`` (rows include the label)."""

MIN_INTERVAL_S = 1.0
"""Least time between two readings of one window."""


@dataclass
class WindowReading:
    """What the monitor measured on an open window (its first ``events`` events)."""

    events: int
    rows: int
    drift: dict[str, float] = field(default_factory=dict)
    champion: int | None = None
    degradation: Degradation | None = None
    error: str | None = None
    at: float = field(default_factory=time.time)

    @property
    def worst_drift(self) -> float:
        """The largest per-feature drift (0 if none measured)."""
        return max(self.drift.values(), default=0.0)


def read_events(events: list[WindowEvent]) -> pa.Table:
    """The rows of a window's events: their Parquet files and inline rows, as one table."""
    tables = [pads.dataset(paths, format="parquet", filesystem=fs).to_table()
              for fs, paths in group_by_filesystem(sorted({u for e in events for u in e.uris}))]
    rows = [row for e in events for row in e.rows]
    if rows:
        tables.append(pa.Table.from_pylist(rows))
    if not tables:
        return pa.table({})
    return pa.concat_tables(tables, promote_options="permissive")


class WindowMonitor:
    """Measures open windows in a background thread; the triggers read its latest reading per window.

    Args:
        registry: Where the champion and its lineage are read.
        scorer: Scores the champion on labelled rows (degradation); None: degradation is not measured.
        interval_s: Least time between two readings of one window.

    Example:
        >>> from streamtune.registry import open_registry
        >>> mon = WindowMonitor(open_registry("sqlite:///:memory:"))
        >>> mon.reading("sales", 0.0) is None
        True
        >>> mon.close()
    """

    def __init__(self, registry: Registry, *, scorer: Scorer | None = None,
                 interval_s: float = MIN_INTERVAL_S) -> None:
        self.registry = registry
        self.scorer = scorer
        self.interval_s = interval_s
        self._readings: dict[tuple[str, float], WindowReading] = {}
        self._asked: dict[tuple[str, float], float] = {}
        self._queue: queue.Queue[tuple[JobSpec, float, list[WindowEvent]] | None] = queue.Queue(maxsize=256)
        self._references: dict[tuple[str, int], ReferenceStats | None] = {}
        self._lock = threading.Lock()
        self.measured = 0
        """Readings made so far (for benchmarks and status)."""
        self._thread = threading.Thread(target=self._work, name="streamtune-window-monitor", daemon=True)
        self._thread.start()

    def reading(self, spec_name: str, opened_at: float) -> WindowReading | None:
        """The latest reading of the spec's window opened at ``opened_at``, if any."""
        with self._lock:
            return self._readings.get((spec_name, opened_at))

    def request(self, spec: JobSpec, window: Window) -> None:
        """Ask for a reading of ``window`` as it is now (never blocks; throttled per window)."""
        key = (spec.name, window.opened_at)
        now = time.monotonic()
        with self._lock:
            if now - self._asked.get(key, float("-inf")) < self.interval_s:
                return
            self._asked[key] = now
            self._forget_closed(spec.name, window.opened_at)
        try:
            self._queue.put_nowait((spec, window.opened_at, list(window.events)))
        except queue.Full:
            log.warning("window monitor is behind; the reading of %s's window waits for the next ask", spec.name)

    def close(self) -> None:
        """Stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _forget_closed(self, spec_name: str, opened_at: float) -> None:
        for key in [k for k in self._readings if k[0] == spec_name and k[1] != opened_at]:
            del self._readings[key]

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            spec, opened_at, events = item
            try:
                reading = self.measure(spec, events)
            except Exception as exc:  # a reading that fails is reported, never fatal to the monitor
                reading = WindowReading(len(events), sum(e.num_rows for e in events),
                                        error=f"{type(exc).__name__}: {exc}")
                log.warning("could not measure the open window of %s: %s", spec.name, reading.error)
            with self._lock:
                self._readings[(spec.name, opened_at)] = reading
                self.measured += 1

    def measure(self, spec: JobSpec, events: list[WindowEvent]) -> WindowReading:
        """Measure ``events`` now (in the caller's thread): drift and degradation against the champion."""
        reading = WindowReading(len(events), sum(e.num_rows for e in events))
        champion = self.registry.get_alias(spec.name, "champion")
        if champion is None:
            return reading
        reading.champion = champion.version
        table = read_events(events)
        drift = spec.trigger.drift
        if drift is not None:
            reference = self._reference(spec.name, champion)
            if reference is not None:
                reading.drift = drift_values(reference, table, drift.method, drift.features)
        labelled = spec.dataset.label in table.column_names
        if spec.trigger.degradation is not None and self.scorer is not None and labelled:
            reading.degradation = self._degradation(spec, champion, table)
        return reading

    def _reference(self, name: str, champion: ModelVersion) -> ReferenceStats | None:
        key = (name, champion.version)
        if key not in self._references:
            uri = champion.lineage.get("reference_uri")
            self._references[key] = (ReferenceStats.model_validate_json(ArtifactStore(uri).get_text(uri))
                                     if uri else None)
        return self._references[key]

    def _degradation(self, spec: JobSpec, champion: ModelVersion, table: pa.Table) -> Degradation | None:
        metric = spec.sweep.metric
        reference = champion.metrics.get(f"holdout_{metric}")
        labelled = table.filter(table[spec.dataset.label].is_valid())
        if not isinstance(reference, (int, float)) or labelled.num_rows == 0 or self.scorer is None:
            return None
        live = float(self.scorer(spec, champion, labelled))
        worse = (live - reference) if spec.sweep.mode == "min" else (reference - live)
        return Degradation(metric=metric, live=round(live, 6), reference=float(reference),
                           relative=round(worse / max(abs(reference), 1e-12), 6), rows=labelled.num_rows,
                           version=champion.version)


class DriftTrigger(Trigger):
    """Closes a window whose drift against the champion's training data passes ``trigger.drift.threshold``."""

    kind = "drift"

    def __init__(self, monitor: WindowMonitor) -> None:
        self.monitor = monitor

    def on_tick(self, spec: JobSpec, window: Window | None, now: float) -> TriggerDetail | None:
        cfg = spec.trigger.drift
        if cfg is None or window is None or not window.events or window.num_rows < cfg.min_rows:
            return None
        reading = _fresh_reading(self.monitor, spec, window)
        if reading is None or reading.rows < cfg.min_rows or reading.worst_drift <= cfg.threshold:
            return None
        return TriggerDetail(kind="drift", rows=window.num_rows, waited_s=round(now - window.opened_at, 3),
                             drift=reading.drift, drift_method=cfg.method, threshold=cfg.threshold)


class DegradationTrigger(Trigger):
    """Closes a labelled window on which the champion scores past ``trigger.degradation.threshold`` worse than
    on its gate holdout."""

    kind = "degradation"

    def __init__(self, monitor: WindowMonitor) -> None:
        self.monitor = monitor

    def on_tick(self, spec: JobSpec, window: Window | None, now: float) -> TriggerDetail | None:
        cfg = spec.trigger.degradation
        if cfg is None or window is None or not window.events or window.num_rows < cfg.min_rows:
            return None
        reading = _fresh_reading(self.monitor, spec, window)
        found = reading.degradation if reading is not None else None
        if found is None or found.rows < cfg.min_rows or found.relative <= cfg.threshold:
            return None
        return TriggerDetail(kind="degradation", rows=window.num_rows, waited_s=round(now - window.opened_at, 3),
                             degradation=found, threshold=cfg.threshold)


def _fresh_reading(monitor: WindowMonitor, spec: JobSpec, window: Window) -> WindowReading | None:
    """The window's latest reading; asks for a new one when the window has grown since."""
    reading = monitor.reading(spec.name, window.opened_at)
    if reading is None or reading.events < len(window.events):
        monitor.request(spec, window)
    return reading
