"""Prometheus metrics of the platform, read at scrape time by one custom collector (``GET /metrics``).

The collector keeps no figures of its own (only a cache of each version's holdout histogram, which never
changes); every scrape reads the current state from three places. Where each figure comes from is a choice:

- **The registry**, for what it records: true whichever controller (active or standby) answers the scrape, and
  across restarts. Runs by spec and status (``Registry.count_runs``), model versions, the champion's version,
  alias changes, and the latest judged sweep's trials, seconds and trials per second (runs of the stored specs:
  a deleted spec's runs drop out).
- **The controller's process**, for what the registry does not keep: the counters of the
  :class:`~streamtune.observe.bus.EventBus` the controller owns (ingest counts, runs finished, gate verdicts,
  promotions, rollbacks, swap durations, drift detections, webhook deliveries). The API runs in every controller
  process (``python -m streamtune.controller``, ``streamtune up``, ``Client.local()``), so scrape every
  controller and ``sum()``: a standby reports zeros and a restart starts from zero, which ``rate()`` and
  ``increase()`` handle. Persisting them instead would add a registry write to every turn of the loop and a
  table to every registry backend, for numbers Prometheus is built to keep.
- **Serving**: each spec's version board (a Ray actor) already sums its replicas' live figures per version
  (:class:`~streamtune.serving.records.RequestCounts`: requests, model and client errors, latency histogram,
  prediction histogram), read only when this process has joined Ray (a scrape never joins it). They count from
  each replica's start: a replica that goes away takes its counts with it (a counter reset to Prometheus).
  Per version the collector also computes the PSI of its live predictions against its own gate-holdout
  predictions (:mod:`streamtune.observe.drift`).

:data:`METRICS` documents every family; a scrape always carries all of them (families without samples show
their HELP and TYPE), so dashboards and alerts never reference a name that is not there.

Example:
    >>> import tempfile
    >>> from streamtune.artifacts.store import ArtifactStore
    >>> from streamtune.registry import open_registry
    >>> reg = open_registry("sqlite:///:memory:")
    >>> _ = reg.register_model("sales", "r-1", "file:///a/1", {}, {}, {})
    >>> _ = reg.set_alias("sales", "champion", 1, reason="first")
    >>> text = render(StreamtuneCollector(reg, ArtifactStore(tempfile.mkdtemp()), serving=None)).decode()
    >>> [line for line in text.splitlines() if line.startswith("streamtune_champion_version")]
    ['streamtune_champion_version{model="sales"} 1.0']
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from streamtune.artifacts.store import ArtifactStore
from streamtune.observe.bus import EventBus
from streamtune.observe.counters import SWAP_BUCKETS_S, Histogram
from streamtune.observe.drift import PSI_GROUPS, holdout_histogram, psi
from streamtune.registry.base import Registry
from streamtune.registry.records import RunStatus, SpecRecord
from streamtune.serving.records import LATENCY_BUCKETS_MS, RequestCounts, Version

__all__ = ["METRICS", "MetricDef", "ServingReader", "StreamtuneCollector", "board_counts", "metrics_registry", "render"]

log = logging.getLogger(__name__)

PSI_MIN_PREDICTIONS = 20
"""Live predictions a version needs before its PSI is exported (fewer make it noise)."""
BOARD_TIMEOUT_S = 2.0
"""Longest a scrape waits for one version board's snapshot."""

ServingReader = Callable[[str], Mapping[Version, RequestCounts] | None]
"""Reads a Serve app's live per-version figures (None: not reachable from this process)."""


@dataclass(frozen=True)
class MetricDef:
    """One metric family: its name (counters get ``_total`` in the exposition), type, labels and meaning."""

    name: str
    kind: Literal["counter", "gauge", "histogram"]
    labels: tuple[str, ...]
    help: str
    source: Literal["registry", "process", "serving"]


def _m(name: str, kind: Literal["counter", "gauge", "histogram"], labels: str, source: Literal[
        "registry", "process", "serving"], help: str) -> MetricDef:
    return MetricDef(name, kind, tuple(labels.split()) if labels else (), help, source)


METRICS: tuple[MetricDef, ...] = (
    # the registry
    _m("streamtune_runs", "gauge", "spec status", "registry", "Runs in each status, per spec (the registry)."),
    _m("streamtune_model_versions", "gauge", "model", "registry", "Registered versions of each model."),
    _m("streamtune_champion_version", "gauge", "model", "registry", "The version the champion alias points at."),
    _m("streamtune_alias_changes", "counter", "model alias", "registry",
       "Alias moves recorded in the registry (promotions, rollbacks, challengers)."),
    _m("streamtune_sweep_trials", "gauge", "spec", "registry", "Trials of the spec's latest judged sweep."),
    _m("streamtune_sweep_seconds", "gauge", "spec", "registry", "Tune seconds of the spec's latest judged sweep."),
    _m("streamtune_sweep_trials_per_second", "gauge", "spec", "registry",
       "Trials per second of the spec's latest judged sweep (trials / sweep_s)."),
    # the controller's process
    _m("streamtune_records_consumed", "counter", "", "process", "Kafka records the controller polled and committed."),
    _m("streamtune_events_consumed", "counter", "", "process", "Data-arrival events decoded and routed to a spec."),
    _m("streamtune_events_accepted", "counter", "", "process", "Events staged into a trigger window."),
    _m("streamtune_events_duplicate", "counter", "", "process", "Events already seen (consumed, not counted)."),
    _m("streamtune_bad_events", "counter", "", "process", "Records that could not be decoded."),
    _m("streamtune_dead_letters", "counter", "", "process", "Records sent to the dead-letter topic (DLQ)."),
    _m("streamtune_windows_closed", "counter", "", "process", "Trigger windows closed."),
    _m("streamtune_runs_created", "counter", "", "process", "Runs the closed windows stored."),
    _m("streamtune_runs_finished", "counter", "spec status", "process",
       "Runs that ended (promoted, rejected, failed, cancelled) in this controller."),
    _m("streamtune_gate_verdicts", "counter", "spec verdict", "process", "Model-gate verdicts (passed, rejected)."),
    _m("streamtune_promotions", "counter", "spec", "process", "Versions promoted (runs and promote commands)."),
    _m("streamtune_rollbacks", "counter", "spec trigger", "process",
       "Rollbacks: trigger=command (rollback command) or automatic (canary, ack or live watch)."),
    _m("streamtune_drift_detections", "counter", "spec", "process", "Drift detected events."),
    _m("streamtune_platform_events", "counter", "kind", "process", "Platform events emitted, by kind."),
    _m("streamtune_swap_seconds", "histogram", "spec kind phase", "process",
       "Swap durations: kind promote|rollback; phase total (canary and watch included), load, flip."),
    _m("streamtune_listener_events", "counter", "listener outcome", "process",
       "Events per listener (webhook): outcome handled (delivered), failed (given up), dropped (queue full)."),
    _m("streamtune_listener_queue", "gauge", "listener", "process", "Events waiting in a listener's queue."),
    _m("streamtune_listener_last_failure_timestamp_seconds", "gauge", "listener", "process",
       "Unix time of a listener's latest failed attempt."),
    # serving
    _m("streamtune_serving_requests", "counter", "spec app version", "serving",
       "Requests each version's model ran on, summed over live replicas."),
    _m("streamtune_serving_model_errors", "counter", "spec app version", "serving",
       "Model errors (predict raised, NaN or inf) per version."),
    _m("streamtune_serving_client_errors", "counter", "spec app version", "serving",
       "Requests refused for the client's mistake (4xx) per version; not model errors."),
    _m("streamtune_serving_error_rate", "gauge", "spec app version", "serving", "model_errors / requests."),
    _m("streamtune_serving_p50_ms", "gauge", "spec app version", "serving", "Median predict latency, ms (bucket)."),
    _m("streamtune_serving_p99_ms", "gauge", "spec app version", "serving", "p99 predict latency, ms (bucket)."),
    _m("streamtune_serving_latency_seconds", "histogram", "spec app version", "serving",
       "Predict latency histogram per version (the replicas' LATENCY_BUCKETS_MS)."),
    _m("streamtune_serving_predictions", "counter", "spec app version", "serving",
       "Numeric predictions binned for drift per version."),
    _m("streamtune_prediction_psi", "gauge", "spec app version", "serving",
       f"PSI of the version's live predictions against its gate-holdout predictions ({PSI_GROUPS} groups; "
       f"<0.1 stable, >0.25 shifted); exported from {PSI_MIN_PREDICTIONS} predictions on."),
    # the scrape itself
    _m("streamtune_scrape_errors", "gauge", "part", "registry",
       "Parts of this scrape that failed (1), e.g. part=registry or part=serving:<app>."),
)
"""Every metric family ``/metrics`` exposes."""

_INGEST = {"streamtune_records_consumed": "records", "streamtune_events_consumed": "events",
           "streamtune_events_accepted": "accepted", "streamtune_events_duplicate": "duplicates",
           "streamtune_bad_events": "bad_events", "streamtune_dead_letters": "dead_lettered",
           "streamtune_windows_closed": "windows_closed", "streamtune_runs_created": "runs_inserted"}
_JUDGED = [RunStatus.PROMOTED, RunStatus.REJECTED, RunStatus.AWAITING_APPROVAL, RunStatus.SUCCEEDED]


class _Families:
    """One empty family per :data:`METRICS` entry, filled by name during a scrape."""

    def __init__(self) -> None:
        self.by_name: dict[str, Metric] = {}
        for d in METRICS:
            kind = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily, "histogram": HistogramMetricFamily}
            self.by_name[d.name] = kind[d.kind](d.name, d.help, labels=d.labels)

    def add(self, name: str, labels: list[str], value: float) -> None:
        family = self.by_name[name]
        assert isinstance(family, CounterMetricFamily | GaugeMetricFamily), name
        family.add_metric(labels, value)

    def histogram(self, name: str, labels: list[str], buckets: list[tuple[str, float]], total: float) -> None:
        family = self.by_name[name]
        assert isinstance(family, HistogramMetricFamily), name
        family.add_metric(labels, buckets, total)


def board_counts(app: str) -> Mapping[Version, RequestCounts] | None:
    """The live per-version figures of ``app``'s version board; None unless this process has joined Ray (a
    scrape never joins it) and the board exists."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    from streamtune.serving.board import NAMESPACE, board_name

    try:
        handle = ray.get_actor(board_name(app), namespace=NAMESPACE)
    except ValueError:  # no such board: the app is not deployed
        return None
    snapshot = ray.get(handle.snapshot.remote(), timeout=BOARD_TIMEOUT_S)
    return dict(snapshot.counters)


class StreamtuneCollector(Collector):
    """Reads the registry, the controller's event counters and the serving boards at each scrape.

    Args:
        registry: Where runs, models and aliases are read.
        store: The artifact store (each version's ``holdout_scores.parquet``, for PSI).
        events: The controller's bus in this process, if any (its counters and listeners' stats).
        serving: Reads a Serve app's live figures (default: :func:`board_counts`); None: no serving figures.
    """

    def __init__(self, registry: Registry, store: ArtifactStore, *, events: EventBus | None = None,
                 serving: ServingReader | None = board_counts) -> None:
        self.registry = registry
        self.store = store
        self.events = events
        self.serving = serving
        self._holdout: dict[tuple[str, int], dict[int, int] | None] = {}
        self._lock = threading.Lock()

    def describe(self) -> Iterator[Metric]:
        """Nothing up front: registering the collector must not read the registry or Ray."""
        return iter(())

    def collect(self) -> Iterator[Metric]:
        """Every family of :data:`METRICS`, each read now."""
        families = _Families()
        specs: list[SpecRecord] = []
        try:
            specs = self.registry.list_specs()
            self._registry(families, specs)
        except Exception as exc:  # noqa: BLE001 -- a scrape reports what it can, and says what failed
            log.warning("metrics: could not read the registry: %s", exc)
            families.add("streamtune_scrape_errors", ["registry"], 1)
        if self.events is not None:
            self._process(families, self.events)
        if self.serving is not None:
            for record in specs:
                try:
                    self._serving(families, record, self.serving)
                except Exception as exc:  # noqa: BLE001 -- one app's board must not hide the others
                    log.warning("metrics: could not read app %s's figures: %s", record.spec.serve.app, exc)
                    families.add("streamtune_scrape_errors", [f"serving:{record.spec.serve.app}"], 1)
        yield from families.by_name.values()

    # -- the registry ------------------------------------------------------------------------------

    def _registry(self, f: _Families, specs: list[SpecRecord]) -> None:
        reg = self.registry
        for record in specs:
            name = record.name
            for status in RunStatus:
                f.add("streamtune_runs", [name, status.value], reg.count_runs(name, status))
            latest = next((r for r in reg.list_runs(name, status=list(_JUDGED), limit=20) if r.sweep), None)
            if latest is not None and latest.sweep:  # (windows skipped or replaced are rejected with no sweep)
                trials = len(latest.sweep.get("trials") or [])
                seconds = float(latest.timings.get("sweep_s") or 0.0)
                f.add("streamtune_sweep_trials", [name], trials)
                f.add("streamtune_sweep_seconds", [name], seconds)
                if seconds > 0:
                    f.add("streamtune_sweep_trials_per_second", [name], round(trials / seconds, 6))
        versions: dict[str, int] = {}
        for model in reg.list_models():
            versions[model.name] = versions.get(model.name, 0) + 1
        for model_name, count in sorted(versions.items()):
            f.add("streamtune_model_versions", [model_name], count)
            champion = reg.get_alias(model_name, "champion")
            if champion is not None:
                f.add("streamtune_champion_version", [model_name], champion.version)
            moves: dict[str, int] = {}
            for event in reg.alias_history(model_name):
                moves[event.alias] = moves.get(event.alias, 0) + 1
            for alias, n in sorted(moves.items()):
                f.add("streamtune_alias_changes", [model_name, alias], n)

    # -- the controller's process ------------------------------------------------------------------

    @staticmethod
    def _process(f: _Families, events: EventBus) -> None:
        snap = events.counters.snapshot()
        for name, key in _INGEST.items():
            f.add(name, [], snap.ingest.get(key, 0))
        for (spec, status), n in sorted(snap.runs_finished.items()):
            f.add("streamtune_runs_finished", [spec, status], n)
        for (spec, verdict), n in sorted(snap.gate_verdicts.items()):
            f.add("streamtune_gate_verdicts", [spec, verdict], n)
        for spec, n in sorted(snap.promotions.items()):
            f.add("streamtune_promotions", [spec], n)
        for (spec, trigger), n in sorted(snap.rollbacks.items()):
            f.add("streamtune_rollbacks", [spec, trigger], n)
        for spec, n in sorted(snap.drift.items()):
            f.add("streamtune_drift_detections", [spec], n)
        for kind, n in sorted(snap.emitted.items()):
            f.add("streamtune_platform_events", [kind], n)
        for (spec, kind, phase), hist in sorted(snap.swaps.items()):
            _histogram(f, [spec, kind, phase], hist)
        for stats in events.stats():
            for outcome, n in (("handled", stats.handled), ("failed", stats.failed), ("dropped", stats.dropped)):
                f.add("streamtune_listener_events", [stats.name, outcome], n)
            f.add("streamtune_listener_queue", [stats.name], stats.queued)
            if stats.last_error_at is not None:
                f.add("streamtune_listener_last_failure_timestamp_seconds", [stats.name], stats.last_error_at)

    # -- serving -----------------------------------------------------------------------------------

    def _serving(self, f: _Families, record: SpecRecord, read: ServingReader) -> None:
        app = record.spec.serve.app
        counts = read(app)
        for version, c in sorted((counts or {}).items(), key=lambda kv: str(kv[0])):
            labels = [record.name, app, str(version)]
            f.add("streamtune_serving_requests", labels, c.requests)
            f.add("streamtune_serving_model_errors", labels, c.errors)
            f.add("streamtune_serving_client_errors", labels, c.client_errors)
            f.add("streamtune_serving_error_rate", labels, c.error_rate)
            if c.p50_ms is not None and c.p99_ms is not None:
                f.add("streamtune_serving_p50_ms", labels, c.p50_ms)
                f.add("streamtune_serving_p99_ms", labels, c.p99_ms)
            if c.latency_ms:
                _latency(f, labels, c.latency_ms)
            binned = sum(c.predictions.values())
            f.add("streamtune_serving_predictions", labels, binned)
            if binned >= PSI_MIN_PREDICTIONS and isinstance(version, int):
                reference = self._reference(record.name, version)
                value = psi(reference, c.predictions) if reference else None
                if value is not None:
                    f.add("streamtune_prediction_psi", labels, value)

    def _reference(self, model: str, version: int) -> dict[int, int] | None:
        """The version's gate-holdout predictions, binned (cached: they never change); None if unknown."""
        key = (model, version)
        with self._lock:
            if key in self._holdout:
                return self._holdout[key]
        found = self._read_reference(model, version)
        with self._lock:
            self._holdout[key] = found
        return found

    def _read_reference(self, model: str, version: int) -> dict[int, int] | None:
        from streamtune.sweeps.scoring import read_scores

        mv = self.registry.get_model(model, version)
        run = self.registry.get_run(mv.run_id) if mv is not None else None
        uri = ((run.sweep or {}).get("holdout") or {}).get("scores_uri") if run is not None else None
        if not uri or not self.store.exists(str(uri)):
            return None
        return holdout_histogram(read_scores(str(uri)))


def _histogram(f: _Families, labels: list[str], hist: Histogram) -> None:
    buckets: list[tuple[str, float]] = [(str(float(b)), n) for b, n in zip(SWAP_BUCKETS_S, hist.cumulative(),
                                                                            strict=True)]
    f.histogram("streamtune_swap_seconds", labels, [*buckets, ("+Inf", hist.count)], hist.sum)


def _latency(f: _Families, labels: list[str], latency_ms: tuple[int, ...]) -> None:
    """Bucket counts of the replicas' latency histogram as a Prometheus histogram in seconds (sum estimated
    from each bucket's upper bound, the slowest at twice the last)."""
    bounds = [*LATENCY_BUCKETS_MS, 2 * LATENCY_BUCKETS_MS[-1]]
    cumulative: list[tuple[str, float]] = []
    total, estimate = 0, 0.0
    for index, (bound, n) in enumerate(zip(bounds, latency_ms, strict=False)):
        total += n
        estimate += n * bound / 1000
        if index < len(LATENCY_BUCKETS_MS):
            cumulative.append((str(bound / 1000), total))
    f.histogram("streamtune_serving_latency_seconds", labels, [*cumulative, ("+Inf", total)], round(estimate, 6))


def metrics_registry(collector: StreamtuneCollector, *, process: bool = True) -> CollectorRegistry:
    """A Prometheus registry of its own with ``collector`` (and this process's CPU, memory and Python figures)."""
    from prometheus_client import PlatformCollector, ProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    if process:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
    return registry


def render(collector: StreamtuneCollector) -> bytes:
    """One scrape of ``collector`` alone, in the Prometheus text format."""
    return generate_latest(metrics_registry(collector, process=False))
