"""Trigger windows: coalesce data-arrival events per JobSpec until ``min_rows`` or ``max_wait``.

The window state is a plain dict so the controller can store it in the registry in the same
transaction as the Kafka offsets (exactly-once triggering).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from streamtune.config.jobspec import JobSpec
from streamtune.events.schema import DataArrival


class WindowEvent(BaseModel):
    """One event held in a window, with where it came from."""

    event_id: str = Field(description="Event id (dedupe key).")
    topic: str = Field(description="Kafka topic.")
    partition: int = Field(description="Kafka partition.")
    offset: int = Field(description="Kafka offset.")
    num_rows: int = Field(description="Rows the event adds.")
    uris: list[str] = Field(default_factory=list, description="Files it names.")
    rows: list[dict[str, Any]] = Field(default_factory=list, description="Inline rows.")


class Window(BaseModel):
    """The open window of one JobSpec."""

    spec_name: str = Field(description="JobSpec the window belongs to.")
    dataset: str = Field(description="Dataset name.")
    opened_at: float = Field(description="Unix time its first event was added.")
    events: list[WindowEvent] = Field(default_factory=list, description="Events so far, in arrival order.")

    @property
    def num_rows(self) -> int:
        """Rows the window holds."""
        return sum(e.num_rows for e in self.events)

    def offsets(self) -> dict[str, list[int]]:
        """'topic:partition' -> [first, last] offset of the window."""
        out: dict[str, list[int]] = {}
        for e in self.events:
            key = f"{e.topic}:{e.partition}"
            lo, hi = out.get(key, [e.offset, e.offset])
            out[key] = [min(lo, e.offset), max(hi, e.offset)]
        return out


class WindowTrigger:
    """Per-spec windows with ``min_rows`` / ``max_wait`` closing and event-id dedupe.

    Example:
        >>> trig = WindowTrigger()
        >>> # trig.add(spec, event, topic="t", partition=0, offset=5, now=0.0)
        >>> trig.due({}, now=0.0)
        []
    """

    def __init__(self, state: dict[str, dict] | None = None) -> None:
        self.windows: dict[str, Window] = {k: Window.model_validate(v) for k, v in (state or {}).items() if v}
        self.dirty: set[str] = set()

    def add(self, spec: JobSpec, event: DataArrival, *, topic: str, partition: int, offset: int, now: float) -> bool:
        """Add an event to the spec's window; returns False for a duplicate event id or offset."""
        win = self.windows.get(spec.name)
        if win is None:
            win = self.windows[spec.name] = Window(spec_name=spec.name, dataset=spec.dataset.name, opened_at=now)
        seen = {(e.topic, e.partition, e.offset) for e in win.events}
        if (topic, partition, offset) in seen or any(e.event_id == event.event_id for e in win.events):
            return False
        win.events.append(WindowEvent(
            event_id=event.event_id, topic=topic, partition=partition, offset=offset,
            num_rows=event.num_rows, uris=list(event.uris), rows=list(event.rows or []),
        ))
        self.dirty.add(spec.name)
        return True

    def due(self, specs: dict[str, JobSpec], *, now: float) -> list[tuple[Window, str]]:
        """Close and return every window that reached ``min_rows`` or waited ``max_wait``, with the reason."""
        closed: list[tuple[Window, str]] = []
        for name, win in list(self.windows.items()):
            spec = specs.get(name)
            if spec is None or not win.events:
                continue
            reason = None
            if win.num_rows >= spec.trigger.min_rows:
                reason = "min_rows"
            elif now - win.opened_at >= spec.trigger.max_wait_s:
                reason = "max_wait"
            if reason:
                closed.append((win, reason))
                del self.windows[name]
                self.dirty.add(name)
        return closed

    def take_state(self) -> dict[str, dict[str, Any] | None]:
        """The windows changed since the last call, as dicts ({} for a closed window)."""
        out: dict[str, dict[str, Any] | None] = {
            k: (self.windows[k].model_dump() if k in self.windows else None) for k in self.dirty
        }
        self.dirty.clear()
        return out
