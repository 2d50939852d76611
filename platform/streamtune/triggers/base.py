"""The trigger extension point: what decides that a spec's open window becomes a run, and why.

A :class:`Trigger` is asked at two moments, inside the ingestor's staged step (so it must be quick and must
not do I/O: anything slow, such as drift statistics, is computed elsewhere and only read here):

- :meth:`Trigger.on_event`: right after an event joined the window (``min_rows`` closes on that very event);
- :meth:`Trigger.on_tick`: once per step for every spec, and before an event joins an open window
  (``max_wait``, drift, degradation, schedule). ``window`` is None when the spec has no open window: only a
  schedule fires then, and the ingestor trains the latest window again.

Each returns a :class:`~streamtune.registry.records.TriggerDetail` (what fired, with its numbers) or None. The
first trigger to fire closes the window; the run records the detail. :meth:`Trigger.adopt` is told which
details were stored, once the registry committed them (a failed step adopts nothing, so a trigger that keeps
state, like the schedule's last slot, fires again on the retried step).

Example:
    >>> from streamtune.config import JobSpec
    >>> spec = JobSpec.model_validate({"name": "demo", "dataset": {"name": "sales", "label": "y"},
    ...     "trigger": {"min_rows": 100, "max_wait": "1m"}, "job": {"entrypoint": "jobs.x:Job"},
    ...     "serve": {"app": "sales"}, "sweep": {"metric": "rmse", "mode": "min",
    ...     "space": {"a": {"type": "int", "low": 1, "high": 3}}}})
    >>> from streamtune.triggers.window import Window, WindowEvent
    >>> win = Window("demo", "sales", opened_at=0.0, events=[WindowEvent("e1", "t", 0, 0, 150)])
    >>> RowsTrigger().on_event(spec, win, now=1.0).kind, WaitTrigger().on_tick(spec, win, now=1.0)
    ('min_rows', None)
    >>> WaitTrigger().on_tick(spec, win, now=61.0).waited_s
    61.0
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, ClassVar

from streamtune.config.jobspec import JobSpec
from streamtune.registry.records import TriggerDetail, TriggerKind
from streamtune.triggers.cron import Cron

if TYPE_CHECKING:
    from streamtune.triggers.window import Window

__all__ = ["Fired", "RowsTrigger", "ScheduleTrigger", "Trigger", "WaitTrigger", "default_triggers"]

Fired = tuple[str, TriggerDetail]
"""``(spec name, detail)`` of a trigger that fired in a step."""


class Trigger(ABC):
    """Decides when a spec's window closes. Implementations must be quick and side-effect free when asked."""

    kind: ClassVar[TriggerKind]

    def on_event(self, spec: JobSpec, window: Window, now: float) -> TriggerDetail | None:
        """After an event joined ``window``: close it now? Default: no."""
        return None

    def on_tick(self, spec: JobSpec, window: Window | None, now: float) -> TriggerDetail | None:
        """Once per step (and before an event joins an open window): close it now? Default: no."""
        return None

    def adopt(self, fired: Sequence[Fired]) -> None:  # noqa: B027 -- an optional hook, not abstract
        """The details (of every trigger) that the registry stored in this step. Default: nothing to keep."""


class RowsTrigger(Trigger):
    """Closes a window on the event that brings it to ``trigger.min_rows``."""

    kind = "min_rows"

    def on_event(self, spec: JobSpec, window: Window, now: float) -> TriggerDetail | None:
        if window.num_rows >= spec.trigger.min_rows:
            return TriggerDetail(kind="min_rows", rows=window.num_rows, waited_s=round(now - window.opened_at, 3))
        return None


class WaitTrigger(Trigger):
    """Closes a non-empty window that has been open ``trigger.max_wait``."""

    kind = "max_wait"

    def on_tick(self, spec: JobSpec, window: Window | None, now: float) -> TriggerDetail | None:
        if window is not None and window.events and now - window.opened_at >= spec.trigger.max_wait_s:
            return TriggerDetail(kind="max_wait", rows=window.num_rows, waited_s=round(now - window.opened_at, 3))
        return None


class ScheduleTrigger(Trigger):
    """Fires at each slot of ``trigger.schedule`` (cron, UTC): whatever happened, the spec retrains.

    A slot fires once: the latest slot at or before now, if it is after the time this trigger first saw the spec
    (a slot missed while no controller ran is not made up) and after the last slot stored. The run id derives
    from the spec and the slot, so a slot fired again after a restart inserts nothing new.

    Args:
        clock: Seconds since the epoch; injected in tests. Default: the ``now`` of each call.

    Example:
        >>> import datetime as dt
        >>> from streamtune.config import JobSpec
        >>> spec = JobSpec.model_validate({"name": "demo", "dataset": {"name": "sales", "label": "y"},
        ...     "trigger": {"schedule": "0 2 * * *"}, "job": {"entrypoint": "jobs.x:Job"},
        ...     "serve": {"app": "sales"}, "sweep": {"metric": "rmse", "mode": "min",
        ...     "space": {"a": {"type": "int", "low": 1, "high": 3}}}})
        >>> t = lambda h, m=0: dt.datetime(2026, 11, 26, h, m, tzinfo=dt.timezone.utc).timestamp()
        >>> sched = ScheduleTrigger()
        >>> sched.on_tick(spec, None, now=t(1)) is None   # first seen at 01:00; next slot 02:00
        True
        >>> fired = sched.on_tick(spec, None, now=t(2, 5))
        >>> fired.kind, fired.schedule, fired.slot == t(2)
        ('schedule', '0 2 * * *', True)
        >>> sched.adopt([("demo", fired)])
        >>> sched.on_tick(spec, None, now=t(2, 6)) is None   # that slot is done
        True
    """

    kind = "schedule"

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock
        self._first_seen: dict[str, float] = {}
        self._done: dict[str, float] = {}
        self._crons: dict[str, Cron] = {}

    def _cron(self, expression: str) -> Cron:
        if expression not in self._crons:
            self._crons[expression] = Cron.parse(expression)
        return self._crons[expression]

    def on_tick(self, spec: JobSpec, window: Window | None, now: float) -> TriggerDetail | None:
        expression = spec.trigger.schedule
        if expression is None:
            return None
        now = self._clock() if self._clock is not None else now
        first = self._first_seen.setdefault(spec.name, now)
        slot = self._cron(expression).latest(now)
        if slot is None or slot <= first or slot <= self._done.get(spec.name, float("-inf")):
            return None
        rows = window.num_rows if window is not None else 0
        return TriggerDetail(kind="schedule", schedule=expression, slot=slot, rows=rows)

    def adopt(self, fired: Sequence[Fired]) -> None:  # noqa: B027 -- an optional hook, not abstract
        for name, detail in fired:
            if detail.kind == "schedule" and detail.slot is not None:
                self._done[name] = max(detail.slot, self._done.get(name, float("-inf")))


def default_triggers(*extra: Trigger) -> list[Trigger]:
    """The built-in triggers in the order they are asked: rows, wait, schedule, then ``extra`` (drift, ...).

    Example:
        >>> [t.kind for t in default_triggers()]
        ['min_rows', 'max_wait', 'schedule']
    """
    return [RowsTrigger(), WaitTrigger(), ScheduleTrigger(), *extra]
