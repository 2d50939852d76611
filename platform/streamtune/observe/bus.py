"""The event bus the controller owns: emit never raises into the flow and never blocks it.

Every :class:`~streamtune.observe.listener.Listener` takes each event on the emitting thread (the controller's
loop) and returns at once; one that does I/O is a :class:`~streamtune.observe.listener.QueuedListener` with a
bounded queue and a worker thread of its own.

:class:`EventBus` calls every listener in turn, each inside a guard: an exception is logged and counted, never
raised. ``emit`` also takes a zero-argument callable that builds the event, called inside the same guard, so
reading the controller's records into an event cannot fail a run either.

Example:
    >>> from streamtune.observe.events import DriftDetected
    >>> class Printer(Listener):
    ...     def handle(self, event):
    ...         print(event.name, event.spec)
    >>> class Broken(Listener):
    ...     def handle(self, event):
    ...         raise RuntimeError("bug")
    >>> bus = EventBus([Broken(), Printer()])
    >>> bus.emit(DriftDetected(spec="sales", features={"price": 0.4}, threshold=0.2))
    drift_detected sales
    >>> bus.emit(lambda: 1 / 0)  # a builder that fails: logged, not raised
    >>> bus.listener_errors, bus.build_errors, bus.counters.snapshot().emitted
    (1, 1, {'drift_detected': 1})
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from streamtune.observe.counters import ControllerCounters
from streamtune.observe.events import PlatformEvent
from streamtune.observe.listener import Listener, ListenerStats

if TYPE_CHECKING:
    from streamtune.config.settings import Settings

__all__ = ["EventBus", "EventOrBuilder"]

log = logging.getLogger(__name__)

EventOrBuilder = PlatformEvent | Callable[[], PlatformEvent | None] | None
"""What :meth:`EventBus.emit` takes: an event, a callable that builds one (or None), or None (nothing)."""


class EventBus:
    """Hands each event to every listener, guarded: emitting never raises and never waits on I/O.

    Args:
        listeners: Listeners besides :attr:`counters`, which is always first.
        counters: The in-memory counters the metrics read (default: a fresh :class:`ControllerCounters`).
    """

    def __init__(self, listeners: Iterable[Listener] = (), *, counters: ControllerCounters | None = None) -> None:
        self.counters = counters or ControllerCounters()
        self.listeners: list[Listener] = [self.counters, *listeners]
        self.listener_errors = 0
        self.build_errors = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> EventBus:
        """The counters, plus one :class:`~streamtune.observe.webhooks.WebhookListener` per ``settings.webhooks``.

        Raises:
            ConfigError: a webhook's ``secret_env`` names a variable that is not set.

        Example:
            >>> from streamtune.config.settings import Settings
            >>> [type(x).__name__ for x in EventBus.from_settings(Settings(home="/tmp/st")).listeners]
            ['ControllerCounters']
        """
        if not settings.webhooks:
            return cls()
        from streamtune.observe.webhooks import WebhookListener

        return cls([WebhookListener(config) for config in settings.webhooks])

    def emit(self, event: EventOrBuilder) -> None:
        """Give ``event`` (or what the callable builds) to every listener; never raises, never blocks on I/O."""
        try:
            built = event() if callable(event) else event
        except Exception:  # noqa: BLE001 -- building an event must not fail the flow that emits it
            self.build_errors += 1
            log.warning("could not build a platform event", exc_info=True)
            return
        if built is None:
            return
        for listener in self.listeners:
            try:
                listener.handle(built)
            except Exception:  # noqa: BLE001 -- a listener's bug is logged, the flow goes on
                self.listener_errors += 1
                log.warning("listener %s failed on a %s event", listener.name, built.kind, exc_info=True)

    def stats(self) -> list[ListenerStats]:
        """Each listener's stats (those that keep any)."""
        return [s for s in (listener.stats() for listener in self.listeners) if s is not None]

    def close(self, timeout_s: float = 5.0) -> None:
        """Close every listener; queued ones get up to ``timeout_s`` in all to deliver what they hold."""
        deadline = time.monotonic() + timeout_s
        for listener in self.listeners:
            try:
                listener.close(max(0.0, deadline - time.monotonic()))
            except Exception:  # noqa: BLE001 -- closing is best effort
                log.warning("listener %s did not close cleanly", listener.name, exc_info=True)
