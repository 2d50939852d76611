"""Observing the platform: typed events, the controller's event bus, Prometheus metrics, webhooks.

- :mod:`~streamtune.observe.events`: the records the controller emits (run finished, gate verdict, promoted, rolled
  back, drift detected, ingest progress);
- :mod:`~streamtune.observe.listener` and :mod:`~streamtune.observe.bus`: the :class:`Listener` extension point and
  the :class:`EventBus` the controller owns (never raises into the flow, never blocks it);
- :mod:`~streamtune.observe.counters`: the in-memory counters ``/metrics`` reads;
- :mod:`~streamtune.observe.metrics`: the Prometheus collector (registry, controller process, serving boards);
- :mod:`~streamtune.observe.drift`: PSI of live predictions against the gate's holdout predictions;
- :mod:`~streamtune.observe.webhooks`: signed, retried webhook deliveries and :func:`verify_signature`.

Example:
    >>> from streamtune.observe import EventBus, Promoted
    >>> bus = EventBus()
    >>> bus.emit(Promoted(spec="sales", version=2, swap_s=1.2))
    >>> bus.counters.snapshot().promotions
    {'sales': 1}
"""

from streamtune.observe.bus import EventBus
from streamtune.observe.counters import ControllerCounters
from streamtune.observe.events import (
    DriftDetected,
    GateVerdict,
    IngestProgress,
    PlatformEvent,
    Promoted,
    RolledBack,
    RunFinished,
    parse_event,
)
from streamtune.observe.listener import Listener, ListenerStats, QueuedListener

__all__ = [
    "ControllerCounters", "DriftDetected", "EventBus", "GateVerdict", "IngestProgress", "Listener", "ListenerStats",
    "PlatformEvent", "Promoted", "QueuedListener", "RolledBack", "RunFinished", "parse_event",
]
