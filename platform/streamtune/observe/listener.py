"""The listener extension point: :class:`Listener` (inline, must not block) and :class:`QueuedListener` (I/O).

A :class:`Listener` takes each event in :meth:`Listener.handle`, on the emitting thread (the controller's loop),
so it must return at once. A listener that does I/O derives from :class:`QueuedListener`: ``handle`` only puts
the event on a bounded queue (full: the event is dropped and counted) and a worker thread of its own calls
:meth:`QueuedListener.process`; a receiver that hangs slows that thread only.

Example:
    >>> from streamtune.observe.events import DriftDetected
    >>> class Collect(QueuedListener):
    ...     seen = []
    ...     def process(self, event):
    ...         self.seen.append(event.spec)
    >>> listener = Collect("collect", queue_size=10)
    >>> listener.handle(DriftDetected(spec="sales", features={}, threshold=0.2))
    >>> listener.close(5.0)
    >>> listener.seen, listener.stats().handled
    (['sales'], 1)
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from abc import ABC, abstractmethod

from pydantic import BaseModel, ConfigDict, Field

from streamtune.observe.events import PlatformEvent

__all__ = ["Listener", "ListenerStats", "QueuedListener"]

log = logging.getLogger(__name__)


class ListenerStats(BaseModel):
    """What a listener did with the events it was given (exported as metrics)."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="The listener's name (a webhook's configured name, never its URL).")
    handled: int = Field(0, description="Events it finished (a webhook: delivered).")
    failed: int = Field(0, description="Events it gave up on (a webhook: after its last attempt).")
    dropped: int = Field(0, description="Events dropped because its queue was full or it was closing.")
    queued: int = Field(0, description="Events waiting in its queue now.")
    last_error: str | None = Field(None, description="Its latest failure.")
    last_error_at: float | None = Field(None, description="Unix time of that failure.")


class Listener(ABC):
    """Takes platform events. ``handle`` runs on the controller's loop thread: return at once, no I/O.

    Implementations: :class:`~streamtune.observe.counters.ControllerCounters` (in memory, inline) and
    :class:`QueuedListener` subclasses such as :class:`~streamtune.observe.webhooks.WebhookListener`. The
    conformance suite is ``tests/conformance/listener_suite.py``.
    """

    name: str = "listener"

    @abstractmethod
    def handle(self, event: PlatformEvent) -> None:
        """Take one event; must not block (queue it if it needs I/O)."""

    def stats(self) -> ListenerStats | None:
        """What it did so far, for the metrics; None when it keeps nothing worth exporting."""
        return None

    def close(self, timeout_s: float = 5.0) -> None:  # noqa: B027 -- optional hook, nothing to close by default
        """Stop taking events; a queued listener gets up to ``timeout_s`` to finish what it holds."""


_STOP = object()


class QueuedListener(Listener):
    """A listener doing I/O: ``handle`` queues (bounded), a daemon worker thread calls :meth:`process`.

    Args:
        name: For logs and metrics.
        queue_size: Most events waiting; past it new events are dropped (counted in :meth:`stats`).
    """

    def __init__(self, name: str, *, queue_size: int = 1000) -> None:
        self.name = name
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()  # set when closing ran out of time: waits (backoff) end at once
        self._closing = False
        self._lock = threading.Lock()
        self._handled = self._failed = self._dropped = 0
        self._last_error: tuple[str, float] | None = None
        self._thread = threading.Thread(target=self._work, name=f"streamtune-listener-{name}", daemon=True)
        self._thread.start()

    def wants(self, event: PlatformEvent) -> bool:
        """Whether to queue ``event`` at all (default: every event)."""
        return True

    @abstractmethod
    def process(self, event: PlatformEvent) -> None:
        """Do the I/O for one event, on the worker thread; raise to count it as failed (with the reason)."""

    def handle(self, event: PlatformEvent) -> None:
        if self._closing or not self.wants(event):
            return
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            with self._lock:
                self._dropped += 1
                dropped = self._dropped
            if dropped == 1 or dropped % 100 == 0:  # not once per event: the log would become the bottleneck
                log.warning("listener %s: queue full, %d event(s) dropped so far", self.name, dropped)

    def stopping(self, seconds: float) -> bool:
        """Wait ``seconds`` (a backoff) on the worker; True when the listener is being closed and should give up."""
        return self._stop.wait(seconds)

    def failed(self, reason: str) -> None:
        """Record a failure that is not the end of the event (e.g. one attempt of several)."""
        with self._lock:
            self._last_error = (reason, time.time())

    def stats(self) -> ListenerStats:
        with self._lock:
            last = self._last_error
            return ListenerStats(name=self.name, handled=self._handled, failed=self._failed, dropped=self._dropped,
                                 queued=self._queue.qsize(), last_error=last[0] if last else None,
                                 last_error_at=last[1] if last else None)

    def close(self, timeout_s: float = 5.0) -> None:
        if self._closing:
            return
        self._closing = True
        deadline = time.monotonic() + max(0.0, timeout_s)
        try:
            self._queue.put(_STOP, timeout=max(0.0, timeout_s))
        except queue.Full:
            pass
        self._thread.join(max(0.0, deadline - time.monotonic()))
        self._stop.set()  # out of time: a delivery waiting on its backoff gives up now, the rest are dropped
        self._thread.join(1.0)

    def _work(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=0.5)
            except queue.Empty:
                if self._closing:
                    return
                continue
            if item is _STOP:
                return
            if self._stop.is_set():
                with self._lock:
                    self._dropped += 1
                continue
            try:
                self.process(item)  # type: ignore[arg-type]  # only events are queued besides _STOP
            except Exception as exc:  # noqa: BLE001 -- a listener's failure is its own, never the controller's
                with self._lock:
                    self._failed += 1
                    self._last_error = (f"{type(exc).__name__}: {exc}", time.time())
                log.warning("listener %s gave up on an event: %s: %s", self.name, type(exc).__name__, exc)
            else:
                with self._lock:
                    self._handled += 1
