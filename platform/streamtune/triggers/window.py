"""Trigger windows: coalesce data-arrival events per JobSpec until a trigger closes them.

The triggers (:mod:`streamtune.triggers.base`) decide: by default ``min_rows``, ``max_wait`` and the spec's
schedule; the controller adds drift and degradation (:mod:`streamtune.triggers.drift`).

A window closes on the event that brings it to ``trigger.min_rows``; the events after it open the next one,
so a poll that brings many events closes as many windows as they fill. A window that waited ``max_wait``
closes before the next event is added, or at the end of a poll.

Changes are staged: :meth:`WindowTrigger.stage` returns a :class:`TriggerStage`, a copy-on-write view of the
windows that the ingestor fills from one poll. Only after the registry stored the poll's offsets, windows and
runs does it :meth:`~WindowTrigger.adopt` the stage; a failed poll just drops it, and the windows in memory are
still the stored ones. :meth:`TriggerStage.changes` says what to store: the state of each new window, and
only the events appended to a window that was already stored.

Example:
    >>> from streamtune.config import JobSpec
    >>> spec = JobSpec.model_validate({"name": "demo", "dataset": {"name": "sales", "label": "y"},
    ...     "trigger": {"min_rows": 100}, "job": {"entrypoint": "jobs.x:Job"}, "serve": {"app": "sales"},
    ...     "sweep": {"metric": "rmse", "mode": "min", "space": {"a": {"type": "int", "low": 1, "high": 3}}}})
    >>> trig = WindowTrigger()
    >>> stage = trig.stage()
    >>> for offset in range(3):
    ...     _ = stage.add(spec, WindowEvent(f"e{offset}", "t", 0, offset, 60, [f"/d/{offset}.parquet"]), now=0.0)
    >>> [(w.offsets(), detail.kind, detail.rows) for w, detail in stage.closed]
    [({'t:0': [0, 1]}, 'min_rows', 120)]
    >>> trig.adopt(stage)
    >>> trig.windows["demo"].offsets(), trig.windows["demo"].num_rows
    ({'t:0': [2, 2]}, 60)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from streamtune.config.jobspec import JobSpec
from streamtune.registry.records import TriggerDetail
from streamtune.triggers.base import Fired, Trigger, default_triggers

__all__ = ["TriggerStage", "Window", "WindowEvent", "WindowTrigger", "event_keys"]


def event_keys(event_id: str, uris: Iterable[str]) -> list[str]:
    """The dedupe keys of an event: ``id:<event id>`` and ``uri:<normalized uri>`` for each file.

    Example:
        >>> event_keys("e1", ["/d/a.parquet"])
        ['id:e1', 'uri:/d/a.parquet']
    """
    return [f"id:{event_id}", *(f"uri:{u}" for u in uris)]


@dataclass(slots=True)
class WindowEvent:
    """One event held in a window, with where it came from (its URIs normalized)."""

    event_id: str
    topic: str
    partition: int
    offset: int
    num_rows: int
    uris: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def keys(self) -> list[str]:
        """Its dedupe keys (see :func:`event_keys`)."""
        return event_keys(self.event_id, self.uris)

    def to_state(self) -> dict[str, Any]:
        """As stored in the registry."""
        return {"event_id": self.event_id, "topic": self.topic, "partition": self.partition, "offset": self.offset,
                "num_rows": self.num_rows, "uris": self.uris, "rows": self.rows}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> WindowEvent:
        """Back from :meth:`to_state`."""
        return cls(state["event_id"], state["topic"], int(state["partition"]), int(state["offset"]),
                   int(state["num_rows"]), list(state.get("uris") or []), list(state.get("rows") or []))


class Window:
    """The open window of one JobSpec: its events in arrival order, their rows and dedupe keys."""

    __slots__ = ("dataset", "events", "keys", "num_rows", "opened_at", "spec_name")

    def __init__(self, spec_name: str, dataset: str, opened_at: float, events: Iterable[WindowEvent] = ()) -> None:
        self.spec_name = spec_name
        self.dataset = dataset
        self.opened_at = opened_at
        self.events: list[WindowEvent] = []
        self.keys: set[str] = set()
        self.num_rows = 0
        for ev in events:
            self.append(ev)

    def __repr__(self) -> str:
        return f"Window({self.spec_name!r}, {len(self.events)} events, {self.num_rows} rows)"

    def append(self, ev: WindowEvent) -> None:
        """Add an event (the caller has deduplicated it)."""
        self.events.append(ev)
        self.keys.update(ev.keys())
        self.num_rows += ev.num_rows

    def copy(self) -> Window:
        """A copy whose events can be appended to without changing this one."""
        twin = Window.__new__(Window)
        twin.spec_name, twin.dataset, twin.opened_at = self.spec_name, self.dataset, self.opened_at
        twin.events, twin.keys, twin.num_rows = list(self.events), set(self.keys), self.num_rows
        return twin

    def offsets(self) -> dict[str, list[int]]:
        """'topic:partition' -> [first, last] offset of the window."""
        spans: dict[tuple[str, int], list[int]] = {}
        for e in self.events:
            off = e.offset
            span = spans.get((e.topic, e.partition))
            if span is None:
                spans[(e.topic, e.partition)] = [off, off]
            elif off > span[1]:
                span[1] = off
            elif off < span[0]:
                span[0] = off
        return {f"{t}:{p}": span for (t, p), span in spans.items()}

    def to_state(self) -> dict[str, Any]:
        """As stored in the registry (see :meth:`from_state`)."""
        return {"spec_name": self.spec_name, "dataset": self.dataset, "opened_at": self.opened_at,
                "events": [e.to_state() for e in self.events]}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Window:
        """A window from its stored state."""
        return cls(state["spec_name"], state["dataset"], float(state["opened_at"]),
                   (WindowEvent.from_state(e) for e in state.get("events") or []))


class TriggerStage:
    """One poll's changes to the windows, made on copies; see :meth:`WindowTrigger.stage`."""

    def __init__(self, base: dict[str, Window], triggers: Sequence[Trigger]) -> None:
        self._base = base
        self._triggers = list(triggers)
        self.windows: dict[str, Window] = dict(base)
        self.closed: list[tuple[Window, TriggerDetail]] = []
        self.scheduled: list[Fired] = []
        """Specs whose schedule fired with no open window: the ingestor trains their latest window again."""
        self._appended_from: dict[str, int] = {}  # key -> events already stored; -1: a new (or no) window
        self._closed_keys: dict[str, set[str]] = {}

    @property
    def fired(self) -> list[Fired]:
        """Every trigger that fired in this stage: closed windows and scheduled runs."""
        return [(w.spec_name, d) for w, d in self.closed] + self.scheduled

    def has_key(self, spec_name: str, key: str) -> bool:
        """True when ``key`` is in the spec's open window or in one of its windows closed in this stage."""
        win = self.windows.get(spec_name)
        return (win is not None and key in win.keys) or key in self._closed_keys.get(spec_name, ())

    def add(self, spec: JobSpec, ev: WindowEvent, *, now: float) -> Window | None:
        """Add ``ev`` to the spec's window; return the window if this event closed it (e.g. ``min_rows``)."""
        win = self._writable(spec, now)
        win.append(ev)
        for trigger in self._triggers:
            detail = trigger.on_event(spec, win, now)
            if detail is not None:
                self._close(spec.name, detail)
                return win
        return None

    def tick(self, specs: dict[str, JobSpec], *, now: float) -> list[tuple[Window, TriggerDetail]]:
        """Ask every trigger about every known spec once; close the windows they fire on and return them."""
        done = []
        for name, spec in specs.items():
            win = self.windows.get(name)
            detail = self._ask(spec, win, now)
            if detail is None:
                continue
            if win is not None and win.events:
                done.append(self._close(name, detail))
            elif detail.kind == "schedule":
                self.scheduled.append((name, detail))
        return done

    expire = tick

    def changes(self) -> tuple[dict[str, dict[str, Any] | None], dict[str, list[dict[str, Any]]]]:
        """What to store: ``(window states to replace or delete, events to append to stored windows)``."""
        states: dict[str, dict[str, Any] | None] = {}
        appends: dict[str, list[dict[str, Any]]] = {}
        for key, stored in self._appended_from.items():
            win = self.windows.get(key)
            if stored >= 0 and win is not None:
                if len(win.events) > stored:
                    appends[key] = [e.to_state() for e in win.events[stored:]]
            elif win is not None:
                states[key] = win.to_state()
            elif key in self._base:
                states[key] = None
        return states, appends

    def _ask(self, spec: JobSpec, win: Window | None, now: float) -> TriggerDetail | None:
        for trigger in self._triggers:
            detail = trigger.on_tick(spec, win, now)
            if detail is not None:
                return detail
        return None

    def _writable(self, spec: JobSpec, now: float) -> Window:
        key = spec.name
        win = self.windows.get(key)
        if win is not None and win.events:
            detail = self._ask(spec, win, now)  # e.g. it waited max_wait: it closes before this event joins
            if detail is not None:
                self._close(key, detail)
                win = None
        if win is None:
            win = self.windows[key] = Window(key, spec.dataset.name, now)
            self._appended_from[key] = -1
        elif key not in self._appended_from:
            win = self.windows[key] = win.copy()
            self._appended_from[key] = len(win.events)
        return win

    def _close(self, key: str, detail: TriggerDetail) -> tuple[Window, TriggerDetail]:
        win = self.windows.pop(key)
        self._closed_keys.setdefault(key, set()).update(win.keys)
        self._appended_from[key] = -1
        self.closed.append((win, detail))
        return win, detail


class WindowTrigger:
    """The open windows of every spec, as stored; changed only by adopting a :class:`TriggerStage`.

    Args:
        state: The stored windows (:meth:`Registry.load_windows`).
        triggers: What closes windows, asked in order (default: :func:`~streamtune.triggers.base.default_triggers`).

    Example:
        >>> trig = WindowTrigger({"demo": {"spec_name": "demo", "dataset": "sales", "opened_at": 5.0,
        ...     "events": [{"event_id": "a", "topic": "t", "partition": 2, "offset": 7, "num_rows": 10}]}})
        >>> trig.windows["demo"].offsets(), sorted(trig.windows["demo"].keys)
        ({'t:2': [7, 7]}, ['id:a'])
    """

    def __init__(self, state: dict[str, dict[str, Any]] | None = None,
                 triggers: Sequence[Trigger] | None = None) -> None:
        self.windows: dict[str, Window] = {k: Window.from_state(v) for k, v in (state or {}).items() if v}
        self.triggers: list[Trigger] = list(triggers) if triggers is not None else default_triggers()

    def __iter__(self) -> Iterator[Window]:
        return iter(self.windows.values())

    def stage(self) -> TriggerStage:
        """A staged copy of the windows for one poll."""
        return TriggerStage(self.windows, self.triggers)

    def adopt(self, stage: TriggerStage) -> None:
        """Make a stage's windows the current ones (after the registry stored them), and tell the triggers."""
        self.windows = stage.windows
        fired = stage.fired
        if fired:
            for trigger in self.triggers:
                trigger.adopt(fired)
